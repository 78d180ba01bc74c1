"""``evaluate_dataset``: predict a dataset and score it, with every report file when given a folder.

Training validates with it; :mod:`minigpt4.evaluation.runner` evaluates a checkpoint with it. Every rank
returns the same metrics.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from minigpt4.data.dataset import EmotionDataset
from minigpt4.evaluation.metrics import compute_metrics
from minigpt4.evaluation.predict import predict_with_decision
from minigpt4.evaluation.report import HEADLINE, write_report
from minigpt4.models.model import EmotionLLaMA
from minigpt4.runtime import dist

log = logging.getLogger(__name__)


def evaluate_dataset(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig,
                     out_dir: Path | None = None, title: str | None = None,
                     extra: dict[str, Any] | None = None, split: str | None = None) -> dict:
    """Predict ``dataset`` and score it; with ``out_dir``, rank 0 also writes every report file there.

    Returns the :func:`~minigpt4.evaluation.metrics.compute_metrics` dict on every rank (broadcast from rank 0), so all
    ranks of a training run take the same checkpoint decisions. The report names ``split`` (default
    ``eval.split``) and the dataset's own modalities and instruction (a study's subset or prompt).
    """
    split = split or cfg.eval.split
    preds, decision = predict_with_decision(model, dataset, cfg, split=split)
    metrics: dict | None = None
    # A classifier head neither generates nor scores answers: the report names the head instead.
    mode = "classifier" if getattr(getattr(model, "module", model), "head", None) is not None else cfg.eval.mode
    title = title or f"{dataset.corpus.name} {split} ({mode})"
    if dist.is_main():
        label_set, label_mode = dataset.corpus.label_set, cfg.data.label_mode
        if out_dir is None:
            metrics = compute_metrics([p.gold for p in preds], [p.pred for p in preds], label_set, label_mode)
            if decision is not None:
                metrics["decision"] = decision.describe()
        else:
            run_info = {"corpus": dataset.corpus.name, "split": split, "mode": mode,
                        "checkpoint": cfg.model.checkpoint, "modalities": ", ".join(dataset.spec.modalities),
                        "instruction": dataset.spec.instruction if dataset.spec.instruction is not None else 0,
                        **({"max_new_tokens": cfg.eval.max_new_tokens} if mode == "generate"
                           else {"score_norm": cfg.eval.score_norm} if mode == "score" else {}),
                        **({"decision": decision.describe()["rule"] + f" ({decision.source})"} if decision else {}),
                        **(extra or {})}
            metrics = write_report(out_dir, preds, label_set, label_mode, title, run_info,
                                   decision=decision.describe() if decision else None)
        log.info("%s: %s", title, ", ".join(f"{k} {metrics[k]:.4f}" for k in HEADLINE
                                                       if isinstance(metrics.get(k), float)))
    return dist.broadcast_object(metrics)
