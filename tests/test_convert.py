"""Upstream checkpoints: known buffers skipped, coverage checked, and convert_checkpoint.py at full size."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_backbones import save_backbone
from transformers import LlamaConfig

import convert_checkpoint
from minigpt4.data.run_config import load_config
from minigpt4.models.build import build_model
from minigpt4.models.checkpoint import WEIGHTS
from minigpt4.models.convert import PROJECTOR_MAP, load_upstream_checkpoint

KEYS = json.loads((Path(__file__).resolve().parent / "data" / "upstream" / "emotion_llama_checkpoint_keys.json")
                  .read_text())
OTHER_ENTRIES = {"optimizer": {"state": {0: {"step": torch.tensor(9.0), "exp_avg": torch.zeros(4)}},
                               "param_groups": [{"lr": 1e-5, "weight_decay": 0.05, "params": [0]}]},
                 "config": {"model": {"arch": "minigpt_v2", "lora_r": 64}, "run": {"max_epoch": 30}},
                 "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                            "_growth_tracker": 17},
                 "epoch": 29}
OURS = {v: k for k, v in PROJECTOR_MAP.items()}


def ours_of(upstream_key: str) -> str:
    """Our name for an upstream parameter key (written out here, independently of the converter's regexes)."""
    head, leaf = upstream_key.rsplit(".", 1)
    if head in PROJECTOR_MAP:
        return f"projectors.{PROJECTOR_MAP[head]}.{leaf}"
    return "llm." + head.removeprefix("llama_model.").removesuffix(".default") + ".default.weight"


@pytest.fixture(scope="module")
def llama7b_config(tmp_path_factory) -> Path:
    """LLaMA-2-7B's config.json alone: the converter needs no weights."""
    folder = tmp_path_factory.mktemp("llama2_7b_config")
    LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
                bos_token_id=1, eos_token_id=2).save_pretrained(str(folder))
    assert {p.name for p in folder.iterdir()} == {"config.json"}
    return folder


@pytest.fixture(scope="module")
def full_size_pth(tmp_path_factory) -> Path:
    """checkpoint_best.pth as upstream saves it under transformers 4.30; parameter i is filled with i."""
    state = {k: torch.full(shape, float(i), dtype=torch.bfloat16) for i, (k, shape) in enumerate(KEYS["parameters"].items())}
    buffers = KEYS["buffers_when_saved_under_transformers_4.30"]
    assert len(buffers) == 32
    state.update({k: torch.ones(shape) for k, shape in buffers.items()})
    path = tmp_path_factory.mktemp("upstream") / "checkpoint_best.pth"
    torch.save({"model": state, **OTHER_ENTRIES}, path)
    return path


def test_full_size_upstream_checkpoint_converts_with_full_coverage(full_size_pth, llama7b_config, tmp_path, capsys):
    out = tmp_path / "converted"
    code = convert_checkpoint.main(["--upstream", str(full_size_pth), "--llm-config", str(llama7b_config),
                                    "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    coverage = [line for line in printed.splitlines() if line.startswith("coverage:")]
    assert coverage == ["coverage: mapped 138, skipped buffers 32, unknown keys 0, missing parameters 0, "
                        "wrong shapes 0, initialised (no upstream counterpart) 2"]
    assert {p.name for p in out.iterdir()} == {WEIGHTS, "config.yaml"}
    weights = load_file(str(out / WEIGHTS))
    expected = {ours_of(k): i for i, k in enumerate(KEYS["parameters"])}
    norms = {k for k in weights if k.startswith("feature_norm.")}
    assert {k.split(".")[1] for k in norms} == {"face", "video", "audio", "text"}
    assert all(bool((weights[k] == (1.0 if k.endswith(".std") else 0.0)).all()) for k in norms)  # identity
    assert set(weights) - norms == set(expected) | {"projectors.text.weight", "projectors.text.bias"}
    for name, i in expected.items():
        assert weights[name].dtype == torch.float32
        assert weights[name].shape == tuple(KEYS["parameters"][next(k for k in KEYS["parameters"]
                                                                    if ours_of(k) == name)])
        assert bool((weights[name] == i).all()), name
    assert weights["projectors.text.weight"].shape == (4096, 384) and weights["projectors.text.weight"].std() > 0
    saved = load_config(out / "config.yaml", allow_missing=True)
    assert saved.model.preset == "llama2_7b" and saved.model.vision.kind == "eva_upstream"


def test_full_size_stray_key_fails_naming_it(full_size_pth, llama7b_config, tmp_path, capsys):
    blob = torch.load(full_size_pth, weights_only=True)
    blob["model"]["llama_model.base_model.model.model.layers.3.self_attn.rotary_emb.cos_cached"] = torch.ones(2)
    del blob["model"]["feats_llama_proj2.bias"]
    bad = tmp_path / "stray.pth"
    torch.save(blob, bad)
    out = tmp_path / "converted"
    code = convert_checkpoint.main(["--upstream", str(bad), "--llm-config", str(llama7b_config), "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "unknown keys 1, missing parameters 1" in captured.out
    assert "layers.3.self_attn.rotary_emb.cos_cached" in captured.err
    assert "projectors.video.bias" in captured.err
    assert not out.exists() and not list(tmp_path.glob(".converted*"))


def upstream_state(model, layers: int) -> dict[str, torch.Tensor]:
    """An upstream-named state dict (old PEFT names) for ``model``'s trainable parameters, plus inv_freq buffers."""
    state = {}
    for name, value in model.trainable_state_dict().items():
        if name.startswith("feature_norm."):  # our feature standardisation: upstream has no counterpart
            continue
        if name.startswith("projectors."):
            _, slot, leaf = name.split(".")
            if slot in OURS:
                state[f"{OURS[slot]}.{leaf}"] = torch.randn_like(value)
        else:
            state["llama_model." + name.removeprefix("llm.").replace(".default.weight", ".weight")] = torch.randn_like(
                value)
    for i in range(layers):
        state[f"llama_model.base_model.model.model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    return state


def test_converted_folder_loads_with_model_checkpoint(tmp_path, capsys, caplog):
    llm = save_backbone("llama", tmp_path / "llama")
    # Upstream's setup: MERR-layout features, 1024 wide (what the converter assumes without --cfg-path).
    overrides = [f"model.llm.path={llm}", "model.lora.r=4", "data.corpus=merr"]
    cfg = load_config(None, overrides)
    state = upstream_state(build_model(cfg), layers=2)
    torch.save({"model": state, **OTHER_ENTRIES}, tmp_path / "checkpoint_best.pth")
    # Loading the .pth directly skips the buffers by name, with a log line.
    with caplog.at_level(logging.INFO, logger="minigpt4.models.convert"):
        direct = build_model(load_config(None, [*overrides, f"model.upstream_checkpoint={tmp_path / 'checkpoint_best.pth'}"]))
    assert "skipped 2 known non-parameter buffers" in caplog.text
    out = tmp_path / "converted"
    assert convert_checkpoint.main(["--upstream", str(tmp_path / "checkpoint_best.pth"), "--llm-config", str(llm),
                                    "--output", str(out), "model.preset=tiny", *overrides]) == 0
    assert "skipped buffers 2, unknown keys 0, missing parameters 0" in capsys.readouterr().out
    loaded = build_model(load_config(out / "config.yaml", [f"model.checkpoint={out}"]))
    params = dict(loaded.named_parameters())
    for key, value in state.items():
        if "inv_freq" not in key:
            torch.testing.assert_close(params[ours_of(key)], value)
    loaded_state = loaded.trainable_state_dict()  # feature statistics included: identity on both paths
    for name, value in direct.trainable_state_dict().items():
        if not name.startswith("projectors.text"):
            torch.testing.assert_close(loaded_state[name], value)
    # A buffer-looking key that is not a known buffer is still an error naming it.
    state["llama_model.base_model.model.model.layers.0.self_attn.rotary_emb.sin_cached"] = torch.ones(2)
    torch.save({"model": state}, tmp_path / "other.pth")
    with pytest.raises(KeyError, match="rotary_emb.sin_cached"):
        load_upstream_checkpoint(direct, tmp_path / "other.pth")
