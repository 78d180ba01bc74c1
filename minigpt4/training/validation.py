"""Validation during training: the answer loss, the metrics through the evaluation path, the best-checkpoint
rule, and the multi-label decisions a checkpoint carries (classifier thresholds, score-mode rule)."""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from minigpt4.config import ConfigError
from minigpt4.data.collate import Collator
from minigpt4.data.dataset import EmotionDataset
from minigpt4.evaluation.evaluate import evaluate_dataset
from minigpt4.evaluation.predict import class_probabilities, predict_with_decision
from minigpt4.evaluation.scoring import save_decision
from minigpt4.models import checkpoint as ckpt
from minigpt4.models.classifier import tune_thresholds
from minigpt4.models.model import EmotionLLaMA
from minigpt4.runtime import dist
from minigpt4.training.engine import Engine
from minigpt4.training.monitor import MetricsLog

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where the run is: optimizer steps taken and the best validation value so far (and its step)."""

    step: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"value": None, "step": None})


@torch.no_grad()
def validation_loss(model: EmotionLLaMA, dataset: EmotionDataset, batch_size: int, workers: int,
                    info: dist.DistInfo, autocast: contextlib.AbstractContextManager) -> float:
    """Answer-token cross-entropy on ``dataset``, each rank a contiguous shard, reduced over ranks."""
    n = len(dataset)
    shard = list(range(n * info.rank // info.world_size, n * (info.rank + 1) // info.world_size))
    loader = DataLoader(dataset, batch_sampler=[shard[i:i + batch_size] for i in range(0, len(shard), batch_size)],
                        collate_fn=Collator(model.tokenizer.pad_token_id, "train"), num_workers=workers)
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    for batch in loader:
        with autocast:
            loss = model(batch).loss
        # The classifier's loss is a mean over samples, the LM's over answer tokens.
        tokens = len(batch["sample_ids"]) if model.head is not None else int((batch["labels"][:, 1:] != -100).sum())
        total += torch.tensor([float(loss) * tokens, tokens], dtype=torch.float64)
    model.train(was_training)
    if info.distributed:
        tdist.all_reduce(total)
    return float(total[0] / total[1].clamp(min=1))


def tune_head_thresholds(model: EmotionLLaMA, dataset: EmotionDataset, batch_size: int, workers: int,
                         info: dist.DistInfo) -> None:
    """Multi-label classifier: per-class decision thresholds tuned on the validation split (rank 0 computes,
    every rank receives them), so the checkpoint saved next carries them."""

    thresholds = None
    if info.is_main:
        probs, targets = class_probabilities(model, dataset, batch_size, workers)
        thresholds = tune_thresholds(probs, targets)
    model.head.thresholds.copy_(dist.broadcast_object(thresholds))
    log.info("classifier thresholds tuned on validation: %s", [round(float(t), 2) for t in model.head.thresholds])


def run_validation(model: EmotionLLaMA, val_set: EmotionDataset, cfg: DictConfig, info: dist.DistInfo,
                   engine: Engine, progress: Progress, metrics_log: MetricsLog | None, epoch: int) -> bool:
    """Val loss + metrics through the evaluation path; True when ``run.best_metric`` improved."""

    batch_size, workers = cfg.eval.batch_size, cfg.run.num_workers
    val_loss = validation_loss(model, val_set, batch_size, workers, info, engine.autocast())
    if model.head is not None and model.head.multi_label:
        tune_head_thresholds(model, val_set, batch_size, workers, info)
    with engine.autocast():
        metrics = {k: v for k, v in evaluate_dataset(model, val_set, cfg, split="val").items()
                   if isinstance(v, (int, float))}
    metrics["loss"] = val_loss
    name = cfg.run.best_metric
    if name not in metrics:
        raise ConfigError(f"run.best_metric={name!r} is not a validation metric; available: "
                          f"{', '.join(sorted(metrics))}")
    if metrics_log is not None:
        metrics_log.write(progress.step, epoch, {f"val/{k}": float(v) for k, v in metrics.items()})
    value, best = float(metrics[name]), progress.best
    if best["value"] is not None and (value >= best["value"] if name.endswith("loss") else value <= best["value"]):
        return False
    best.update(value=value, step=progress.step)
    return True


def choose_score_decision(model: EmotionLLaMA, final: Path, val_set: EmotionDataset, cfg: DictConfig,
                          info: dist.DistInfo) -> None:
    """Choose the multi-label score-mode threshold with the final weights on the validation split and save it
    in ``final/`` (``scoring.DECISION_FILE``), so evaluation never tunes on the split it scores."""

    ckpt.load_trainable(model, final)
    _, decision = predict_with_decision(model, val_set, cfg, split="val", mode="score")
    if info.is_main:
        save_decision(final, decision)
        log.info("multi-label decision saved in %s: %s", final, decision.describe()["rule"])
    dist.barrier()
