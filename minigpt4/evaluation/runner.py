"""Evaluate a checkpoint as ``eval_emotion.py`` does: the ``eval.split`` report, then the studies the config asks
for (modality ablation, prompt sensitivity), in this process or under torchrun."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from minigpt4.config import save_config
from minigpt4.data.pipeline import prepare_data
from minigpt4.evaluation.evaluate import evaluate_dataset
from minigpt4.evaluation.studies import modality_ablation, prompt_sensitivity
from minigpt4.modalities import MODALITIES
from minigpt4.models.build import build_model
from minigpt4.models.model import EmotionLLaMA
from minigpt4.runtime import dist


def run_evaluation(cfg: DictConfig, model: EmotionLLaMA, out_dir: Path) -> dict:
    """The split of ``eval.split`` into ``out_dir``, then the studies the config asks for; the main metrics.

    The corpus is loaded once for every modality any ablation row needs, so all rows score the same samples.
    """
    needed = set(cfg.data.modalities).union(*map(set, cfg.eval.ablations))
    data = prepare_data(cfg, model, modalities=[m for m in MODALITIES if m in needed])
    metrics = evaluate_dataset(model, data.dataset(cfg.eval.split, cfg, model), cfg, out_dir)
    if cfg.eval.ablations:
        modality_ablation(model, data, cfg, [list(s) for s in cfg.eval.ablations], out_dir)
    if cfg.eval.prompts > 0:
        prompt_sensitivity(model, data, cfg, cfg.eval.prompts, out_dir)
    return metrics


def evaluate_checkpoint(cfg: DictConfig) -> dict | None:
    """Build the model ``cfg`` names and run :func:`run_evaluation` into ``run.output_dir`` (with its
    ``eval.log`` and resolved ``config.yaml``), in this process or under torchrun; rank 0 gets the metrics."""
    info = dist.init_distributed()
    out_dir = Path(cfg.run.output_dir)
    dist.setup_logging(out_dir / "eval.log", info.is_main)
    try:
        if info.is_main:
            save_config(cfg, out_dir / "config.yaml")
        model = build_model(cfg).to(info.device)
        metrics = run_evaluation(cfg, model, out_dir)
        dist.barrier()
    finally:
        dist.cleanup()
    return metrics if info.is_main else None
