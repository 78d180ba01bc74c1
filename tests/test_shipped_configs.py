"""Every shipped config runs as its own comment says, on the tiny model and miniature corpora in each corpus's
own format: train configs train a few steps (and their cross-validation folds can be planned), eval configs
evaluate a checkpoint. Configs are discovered by globbing, so a new config is covered the day it is added; a
``???`` key without an entry in ``SUBSTITUTIONS`` fails the test until one is written."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from minigpt4.config import ConfigError
from minigpt4.cross_validation.plan import plan_folds
from minigpt4.data.run_config import load_config
from minigpt4.evaluation.runner import run_evaluation
from minigpt4.models.build import build_model
from minigpt4.models.checkpoint import write_checkpoint
from minigpt4.training.loop import fit
from tests.corpus_fixtures import WRITERS

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIGS = sorted((ROOT / "train_configs").glob("*.yaml"))
EVAL_CONFIGS = sorted((ROOT / "eval_configs").glob("*.yaml"))

SUBSTITUTIONS = {
    "model.llm.path": "model.preset=tiny (the tiny preset sets it to null: a random tiny LLaMA)",
    "model.vision.checkpoint": "model.preset=tiny (the tiny preset sets it to null: a random tiny ViT)",
    "data.root": "the corpus's miniature in its own format (tests/corpus_fixtures.py WRITERS[data.corpus])",
    "model.checkpoint": "a checkpoint folder of the tiny model built from the same config",
}
"""What the test gives for each ``???`` key of a shipped config (the documented map; extend it with new keys)."""
QUICK = ["run.max_steps=2", "run.batch_size=2", "run.grad_accum=1", "run.num_workers=0", "run.eval_every=0",
         "run.save_every=0", "run.log_every=1", "run.warmup_steps=0", "eval.max_samples=4", "eval.batch_size=4",
         "eval.max_new_tokens=4"]
"""Few steps and samples; everything else (corpus, labels, modalities, tasks, protocol, modes) as shipped."""


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def substituted(path: Path, tmp: Path) -> list[str]:
    """QUICK plus a value for every ``???`` key of ``path``, as ``SUBSTITUTIONS`` documents."""
    shipped = load_config(path, allow_missing=True)
    unknown = set(OmegaConf.missing_keys(shipped)) - set(SUBSTITUTIONS)
    assert not unknown, f"{path.name}: no substitution for {sorted(unknown)}; add it to SUBSTITUTIONS"
    out = [*QUICK, f"run.output_dir={tmp / 'run'}"]
    if shipped.model.preset != "tiny":
        out += ["model.preset=tiny", "model.lora.layers=[]"]  # the tiny LLaMA has 2 layers
    if OmegaConf.is_missing(shipped.data, "root"):
        out.append(f"data.root={WRITERS[shipped.data.corpus](tmp / 'data')}")
    if OmegaConf.is_missing(shipped.model, "checkpoint"):
        cfg = load_config(path, [*out, "model.checkpoint=null"])
        out.append(f"model.checkpoint={write_checkpoint(tmp / 'start', build_model(cfg), cfg)}")
    return out


@pytest.mark.parametrize("path", TRAIN_CONFIGS + EVAL_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_loads_only_with_its_required_keys(path: Path):
    shipped = load_config(path, allow_missing=True)
    required = OmegaConf.missing_keys(shipped)
    if required:
        with pytest.raises(ConfigError, match="required keys are not set: " + ", ".join(sorted(required))):
            load_config(path)


@pytest.mark.slow
@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_train_config_trains_and_plans_its_folds(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EMOTION_LLAMA_CACHE", str(tmp_path / "cache"))
    cfg = load_config(path, substituted(path, tmp_path))
    final = fit(cfg)
    assert (final / "trainable.safetensors").is_file()
    plan = plan_folds(cfg)  # what cross_train.py does first with this file
    assert len(plan.folds) == cfg.run.num_folds and all(f["fold"] and f["train"] and f["val"] for f in plan.folds)


@pytest.mark.slow
@pytest.mark.parametrize("path", EVAL_CONFIGS, ids=lambda p: p.name)
def test_eval_config_evaluates(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EMOTION_LLAMA_CACHE", str(tmp_path / "cache"))
    cfg = load_config(path, substituted(path, tmp_path))
    metrics = run_evaluation(cfg, build_model(cfg), tmp_path / "eval")
    assert metrics["n_samples"] > 0 and (tmp_path / "eval" / "metrics.json").is_file()


def test_preset_switch_clears_only_the_presets_own_paths():
    path = ROOT / "eval_configs" / "meld.yaml"
    with pytest.raises(ConfigError, match="or model.preset=tiny to run the config on the tiny random model"):
        load_config(path, ["data.root=/data/MELD.Raw", "model.checkpoint=/runs/meld/final"])
    with pytest.raises(ConfigError, match="required keys are not set: data.root, model.checkpoint \\("):
        load_config(path, ["model.preset=tiny"])
    cfg = load_config(path, ["model.preset=tiny", "data.root=/data/MELD.Raw", "model.checkpoint=/runs/meld/final"])
    assert cfg.model.llm.path is None and cfg.model.vision.checkpoint is None and cfg.model.vision.kind == "tiny"
