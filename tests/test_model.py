"""EmotionLLaMA on the tiny preset: gradients, slot checks, generation, scoring, the upstream key map."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_backbones import check_score_equals_forward

from minigpt4.data.collate import Collator
from minigpt4.data.prompts import PromptBuilder
from minigpt4.data.run_config import load_config
from minigpt4.modalities import SLOTS
from minigpt4.models.build import build_model
from minigpt4.models.convert import load_upstream_checkpoint
from minigpt4.models.model import SlotCountError

ANSWERS = ["happy", "sad", "neutral", "angry"]


@pytest.fixture(scope="module")
def cfg():
    return load_config(None, ["model.lora.dropout=0.0"])


def fresh_model(cfg):
    return build_model(cfg)


def examples(model, cfg, n=4, seed=0):
    """One sample per answer, each with its own random features, so answers are learnable from features."""
    rng = np.random.default_rng(seed)
    builder = PromptBuilder(model.tokenizer, model.slot_tokens, cfg.model.llm.prompt_template)
    slots = [s for s in SLOTS if s in model.slot_tokens]
    out = []
    for i in range(n):
        # Transcripts of different lengths: batched prompts are left-padded, so padding and position ids matter.
        prompt = builder.build("emotion", "Which emotion is it?", slots, f"line number {i}" + " and then" * i)
        out.append({
            "id": f"s{i}", "gold": [ANSWERS[i % 4]], "ids": prompt.ids, "slots": prompt.slots,
            "answer": builder.encode_answer(ANSWERS[i % 4]),
            "features": {k: rng.standard_normal((1, m.dim)).astype(np.float32) * 3
                         for k, m in cfg.model.features.items()},
            "image": rng.standard_normal((3, cfg.model.vision.image_size, cfg.model.vision.image_size)).astype(
                np.float32),
            "weight": None,
        })
    return builder, out


def overfit(model, batch, steps=80):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = model(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss)


def test_gradients_only_on_lora_and_projectors(cfg):
    model = fresh_model(cfg)
    _, exs = examples(model, cfg)
    model(Collator(model.tokenizer.pad_token_id)(exs)).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad, "no gradient reached any parameter"
    assert all(".lora_" in n or n.startswith("projectors.") for n in with_grad), with_grad
    assert {n.split(".")[1] for n in with_grad if n.startswith("projectors.")} == set(SLOTS)
    frozen = [n for n, p in model.named_parameters() if p.requires_grad and not (".lora_" in n or
                                                                                n.startswith("projectors."))]
    assert frozen == []


def test_loss_only_on_answer_tokens(cfg):
    model = fresh_model(cfg)
    _, exs = examples(model, cfg)
    batch = Collator(model.tokenizer.pad_token_id)(exs)
    base = float(model(batch).loss)
    batch2 = dict(batch, input_ids=batch["input_ids"].clone())
    answer_start = (batch["labels"][0] != -100).nonzero()[0, 0]
    text_positions = ((batch["slots"][0] == 0) & (torch.arange(batch["slots"].shape[1]) < answer_start)).nonzero()
    # Changing a prompt token changes the loss (context) but labels there are never targets.
    assert (batch["labels"][0, : answer_start] == -100).all()
    assert batch["labels"][0, answer_start:].ne(-100).sum() == len(exs[0]["answer"])
    batch2["input_ids"][0, text_positions[-1, 0]] = 5
    assert float(model(batch2).loss) != pytest.approx(base)


def test_slot_count_mismatch_is_a_clear_error(cfg):
    model = fresh_model(cfg)
    _, exs = examples(model, cfg)
    batch = Collator(model.tokenizer.pad_token_id)(exs)
    batch["features"]["audio"] = torch.zeros(len(exs), 2, model.projectors["audio"].in_features)
    with pytest.raises(SlotCountError, match="audio: the prompt holds \\[1, 1, 1, 1\\] placeholder positions"):
        model(batch)
    del batch["features"]["audio"]
    with pytest.raises(SlotCountError, match="audio positions but the batch carries no audio"):
        model(batch)


def test_overfit_then_generate_stops_at_eos_and_score_ranks_truth(cfg):
    model = fresh_model(cfg)
    _, exs = examples(model, cfg)
    assert overfit(model, Collator(model.tokenizer.pad_token_id)(exs)) < 0.05
    model.eval()
    prompts = Collator(model.tokenizer.pad_token_id, "prompt")(exs)
    assert len({len(e["ids"]) for e in exs}) == 4 and (prompts["attention_mask"] == 0).any()
    texts = model.generate(prompts, max_new_tokens=12)
    assert texts == ANSWERS  # one string per sample, nothing after EOS although 12 tokens were allowed
    builder, _ = examples(model, cfg)
    scores = model.score(prompts, [builder.encode_answer(a) for a in ANSWERS])
    assert scores.shape == (4, 4)
    assert scores.argmax(1).tolist() == [0, 1, 2, 3]
    # Batched generation equals one-by-one generation (left padding + position ids are right).
    single = [model.generate(Collator(model.tokenizer.pad_token_id, "prompt")([e]), 12)[0] for e in exs]
    assert single == texts


def test_score_equals_full_forward_loglikelihood(cfg):
    model = fresh_model(cfg).eval()
    builder, exs = examples(model, cfg, n=3)
    assert len({len(e["ids"]) for e in exs}) == 3  # left padding in score, right padding in the reference
    candidates = [builder.encode_answer(a) for a in ["happy", "sad, angry", "neutral"]]
    check_score_equals_forward(model, exs, candidates)


UPSTREAM_KEYS = json.loads((Path(__file__).resolve().parent / "data" / "upstream" /
                            "emotion_llama_checkpoint_keys.json").read_text())
"""Upstream Emotion-LLaMA's real checkpoint keys (LLaMA-2-7B, 32 layers, peft 0.2.0 names; see its README)."""
UPSTREAM_PROJECTORS = {"llama_proj": "image", "cls_tk_llama_proj": "cls", "feats_llama_proj1": "face",
                       "feats_llama_proj2": "video", "feats_llama_proj3": "audio"}


def _upstream_state(model, old_peft: bool) -> dict[str, torch.Tensor]:
    """Upstream's own key names for the tiny model's layers (random values in our shapes); with old PEFT also
    the rotary buffers that transformers 4.30 saved. New PEFT names LoRA weights ``lora_A.default.weight``."""
    params = dict(model.named_parameters())
    layers = model.llm.config.num_hidden_layers
    state = {}
    for key in UPSTREAM_KEYS["parameters"]:
        layer = re.search(r"\.layers\.(\d+)\.", key)
        if layer and int(layer.group(1)) >= layers:
            continue
        if key.startswith("llama_model."):
            ours = "llm." + key.removeprefix("llama_model.").replace(".weight", ".default.weight")
            key = key if old_peft else key.replace(".weight", ".default.weight")
        else:
            prefix, leaf = key.rsplit(".", 1)
            ours = f"projectors.{UPSTREAM_PROJECTORS[prefix]}.{leaf}"
        state[key] = torch.randn_like(params[ours])
    if old_peft:
        head = model.llm.config.hidden_size // model.llm.config.num_attention_heads
        state |= {k: torch.ones(head // 2) for k in UPSTREAM_KEYS["buffers_when_saved_under_transformers_4.30"]
                  if int(re.search(r"\.layers\.(\d+)\.", k).group(1)) < layers}
    return state


@pytest.mark.parametrize("old_peft", [True, False])
def test_upstream_checkpoint_loads_through_key_map(cfg, tmp_path, old_peft):
    model = fresh_model(cfg)
    state = _upstream_state(model, old_peft)
    torch.save({"model": state, "epoch": 3}, tmp_path / "checkpoint_best.pth")
    text_before = model.projectors["text"].weight.clone()
    load_upstream_checkpoint(model, tmp_path / "checkpoint_best.pth")
    torch.testing.assert_close(model.projectors["image"].weight, state["llama_proj.weight"])
    torch.testing.assert_close(model.projectors["audio"].bias, state["feats_llama_proj3.bias"])
    lora = [k for k in state if "layers.1.self_attn.v_proj.lora_B" in k][0]
    params = dict(model.named_parameters())
    torch.testing.assert_close(params["llm.base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight"],
                               state[lora])
    assert len([k for k in state if "lora_" in k]) == 2 * 2 * 2  # 2 layers x q/v x A/B, all loaded
    torch.testing.assert_close(model.projectors["text"].weight, text_before)  # no upstream counterpart


def test_upstream_checkpoint_reports_missing_key_by_name(cfg, tmp_path):
    model = fresh_model(cfg)
    state = _upstream_state(model, old_peft=True)
    del state["feats_llama_proj2.weight"]
    state["llama_model.base_model.model.model.embed_tokens.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "ckpt.pth")
    with pytest.raises(KeyError) as err:
        load_upstream_checkpoint(model, tmp_path / "ckpt.pth")
    assert "projectors.video.weight" in str(err.value)
    assert "model.embed_tokens.weight" in str(err.value)


def test_tiny_model_is_deterministic(cfg):
    a, b = fresh_model(cfg), fresh_model(cfg)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb)


def test_timm_frame_encoder_loads_local_weights(tmp_path):
    """The real-weights path (``kind: timm``, e.g. EVA ViT-g) reads a local file and never the hub."""
    import timm
    from safetensors.torch import save_file

    from minigpt4.models.vision import FrameEncoder

    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=0)
    save_file(reference.state_dict(), tmp_path / "vit.safetensors")
    vcfg = load_config(None, ["model.vision.kind=timm", f"model.vision.checkpoint={tmp_path / 'vit.safetensors'}",
                              "model.vision.patch_size=16"]).model.vision
    encoder = FrameEncoder(vcfg)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(encoder.vit.state_dict()[name], value)
    patches, cls = encoder(torch.randn(2, 3, 32, 32))
    assert patches.shape == (2, 1, 4 * 192) and cls.shape == (2, 1, 192)
    assert not any(p.requires_grad for p in encoder.parameters())
    bad = load_config(None, ["model.vision.kind=timm", "model.vision.checkpoint=/nonexistent/eva.pth"]).model.vision
    with pytest.raises(FileNotFoundError, match="/nonexistent/eva.pth"):
        FrameEncoder(bad)
