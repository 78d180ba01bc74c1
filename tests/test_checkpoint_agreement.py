"""A checkpoint loads only into the model config it was trained with; a damaged weights file names itself."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from minigpt4.config import ConfigError
from minigpt4.data.run_config import load_config
from minigpt4.models import checkpoint as ckpt
from minigpt4.models.build import build_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    cfg = load_config(None)
    model = build_model(cfg)
    folder = ckpt.write_checkpoint(tmp_path_factory.mktemp("ck") / "final", model, cfg)
    return cfg, model, folder


def test_checkpoint_refuses_another_model_config(saved) -> None:
    cfg, _, folder = saved
    other = load_config(None, [f"model.checkpoint={folder}", "model.seed=1", "model.lora.alpha=64"])
    with pytest.raises(ConfigError) as err:
        build_model(other)
    message = str(err.value)
    assert str(folder / "config.yaml") in message
    assert "model.seed: 0 in the checkpoint, 1 now" in message
    assert f"model.lora.alpha: {cfg.model.lora.alpha!r} in the checkpoint, 64 now" in message


def test_paths_and_memory_settings_may_differ(saved, tmp_path: Path) -> None:
    cfg, _, folder = saved
    same = OmegaConf.merge(cfg.model, {"checkpoint": str(folder), "llm": {"gradient_checkpointing": True,
                                                                          "tokenizer_path": "/elsewhere/tok"}})
    ckpt.check_model_config(same, folder)  # no error
    bare = tmp_path / "weights.safetensors"  # a bare weights file carries no config to compare with
    bare.write_bytes((folder / ckpt.WEIGHTS).read_bytes())
    ckpt.check_model_config(OmegaConf.merge(cfg.model, {"seed": 5}), bare)


def test_a_key_added_after_training_compares_as_its_default(saved, tmp_path: Path) -> None:
    cfg, _, folder = saved
    older = tmp_path / "older"  # a checkpoint written before model.text_encoder.name existed
    older.mkdir()
    (older / ckpt.WEIGHTS).write_bytes((folder / ckpt.WEIGHTS).read_bytes())
    config = OmegaConf.load(folder / "config.yaml")
    del config.model.text_encoder["name"]
    OmegaConf.save(config, older / "config.yaml")
    ckpt.check_model_config(OmegaConf.merge(cfg.model, {"checkpoint": str(older)}), older)  # the default: no error
    with pytest.raises(ConfigError, match="model.text_encoder.name: 'minilm' in the checkpoint, 'mpnet' now"):
        ckpt.check_model_config(OmegaConf.merge(cfg.model, {"text_encoder": {"name": "mpnet"}}), older)


def test_truncated_weights_file_is_named(saved, tmp_path: Path) -> None:
    _, model, folder = saved
    data = (folder / ckpt.WEIGHTS).read_bytes()
    for name, content in (("truncated", data[:len(data) // 2]), ("empty", b"")):
        bad = tmp_path / name / ckpt.WEIGHTS
        bad.parent.mkdir()
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=rf"{bad}: not a readable safetensors file .*truncated or corrupt"):
            ckpt.load_trainable(model, bad.parent)
