"""Evaluation: batched predictions (greedy generation + parsing, or label scoring), reports and the studies.

Training validates with :func:`evaluate_dataset`; ``eval_emotion.py`` runs :func:`run_evaluation`, which adds the
modality-ablation and prompt-sensitivity tables. Under ``torchrun`` every rank predicts one contiguous shard of
the samples and rank 0 gathers them in order and writes; every rank returns the same metrics.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as tdist
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from . import dist
from .collate import Collator
from .data import EmotionDataset
from .labels import LabelSet
from .metrics import compute_metrics
from .model import EmotionLLaMA
from .pipeline import prepare_data
from .report import HEADLINE, Prediction, mean_std, write_report, write_table
from .modalities import MODALITIES

log = logging.getLogger(__name__)


def _shard(n: int, rank: int, world: int) -> range:
    """Contiguous, disjoint shards covering 0..n-1 exactly once (sizes differ by at most one)."""
    return range(n * rank // world, n * (rank + 1) // world)


def _choose_scored(probs: torch.Tensor, label_set: LabelSet, label_mode: str, threshold: float,
                   top_k: int) -> list[list[str]]:
    """Labels picked from normalised candidate probabilities [b, c], most probable first.

    Single-label: the argmax. Multi-label: the top ``top_k`` when set, else every label above ``threshold``;
    the argmax always, so a scored answer is never empty.
    """
    order = probs.argsort(dim=-1, descending=True)
    ranked = probs.gather(-1, order)
    rank = torch.arange(probs.shape[1], device=probs.device).expand_as(probs)
    if label_mode == "single":
        keep = rank < 1
    elif top_k > 0:
        keep = rank < top_k
    else:
        keep = (ranked > threshold) | (rank == 0)
    return [[label_set.labels[j] for j, k in zip(row_order, row_keep) if k]
            for row_order, row_keep in zip(order.tolist(), keep.tolist())]


@torch.no_grad()
def predict(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig) -> list[Prediction]:
    """Predictions for ``dataset`` (first ``eval.max_samples`` when set), in dataset order.

    Returns the full list on rank 0 (and in a single process), an empty list on other ranks. The model is put
    in eval mode and given back in the mode it came in, since training calls this for validation.
    """
    model = getattr(model, "module", model)  # DDP / DeepSpeed wrappers hold the model in ``module``
    ev = cfg.eval
    label_set, label_mode = dataset.corpus.label_set, cfg.data.label_mode
    n = min(len(dataset), ev.max_samples) if ev.max_samples > 0 else len(dataset)
    rank, world = dist.rank(), dist.world_size()
    loader = DataLoader(Subset(dataset, _shard(n, rank, world)), batch_size=ev.batch_size, shuffle=False,
                        num_workers=cfg.run.num_workers, collate_fn=Collator(model.tokenizer.pad_token_id, "prompt"))
    candidates = [dataset.builder.encode_answer(label) for label in label_set.labels]
    was_training = model.training
    model.eval()
    preds: list[Prediction] = []
    try:
        # Shown on rank 0 when stderr is a terminal (disable=None), kept out of logs and test output.
        for batch in tqdm(loader, desc=f"eval {ev.mode}", disable=True if rank else None, leave=False):
            golds = [list(g) if label_mode == "multi" else list(g[:1]) for g in batch["gold"]]
            if ev.mode == "generate":
                texts = model.generate(batch, max_new_tokens=ev.max_new_tokens)
                # Unparsed answers stay empty: they are counted and reported, never coerced to a label.
                labels = [list(label_set.parse(t)) for t in texts]
                if label_mode == "single":
                    labels = [x[:1] for x in labels]
            else:
                probs = torch.softmax(model.score(batch, candidates).float(), dim=-1)
                labels = _choose_scored(probs, label_set, label_mode, ev.threshold, ev.top_k)
                texts = [label_set.format_answer(x) for x in labels]
            preds += [Prediction(str(i), g, p, t) for i, g, p, t in zip(batch["ids"], golds, labels, texts)]
    finally:
        model.train(was_training)
    if world == 1:
        return preds
    gathered: list[list[Prediction]] | None = [[] for _ in range(world)] if rank == 0 else None
    tdist.gather_object(preds, gathered, dst=0)
    return [p for shard in gathered for p in shard] if gathered is not None else []


def evaluate_dataset(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig,
                     out_dir: Path | None = None, title: str | None = None,
                     extra: dict[str, Any] | None = None) -> dict:
    """Predict ``dataset`` and score it; with ``out_dir``, rank 0 also writes every report file there.

    Returns the :func:`~minigpt4.metrics.compute_metrics` dict on every rank (broadcast from rank 0), so all
    ranks of a training run take the same checkpoint decisions. The report names ``eval.split`` as the split;
    a caller evaluating another one (training's validation) says so in ``title`` and ``extra={"split": ...}``.
    """
    preds = predict(model, dataset, cfg)
    metrics: dict | None = None
    title = title or f"{dataset.corpus.name} {cfg.eval.split} ({cfg.eval.mode})"
    if dist.is_main():
        label_set, label_mode = dataset.corpus.label_set, cfg.data.label_mode
        if out_dir is None:
            metrics = compute_metrics([p.gold for p in preds], [p.pred for p in preds], label_set, label_mode)
        else:
            run_info = {"corpus": dataset.corpus.name, "split": cfg.eval.split, "mode": cfg.eval.mode,
                        "checkpoint": cfg.model.checkpoint, "modalities": ", ".join(cfg.data.modalities),
                        "instruction": cfg.data.instruction if cfg.data.instruction is not None else 0,
                        **({"max_new_tokens": cfg.eval.max_new_tokens} if cfg.eval.mode == "generate" else {}),
                        **(extra or {})}
            metrics = write_report(out_dir, preds, label_set, label_mode, title, run_info)
        log.info("%s: %s", title, ", ".join(f"{k} {metrics[k]:.4f}" for k in HEADLINE
                                                       if isinstance(metrics.get(k), float)))
    return dist.broadcast_object(metrics)


def _with(cfg: DictConfig, **data: Any) -> DictConfig:
    """A modified copy of ``cfg`` with ``data.<key>`` replaced (the original and every file stay untouched)."""
    return OmegaConf.merge(cfg, {"data": data})


def _row(metrics: dict) -> dict[str, Any]:
    return {k: metrics[k] for k in HEADLINE if k in metrics}


def _columns(metrics: dict) -> list[str]:
    return [k for k in HEADLINE if k in metrics]


def modality_ablation(model: EmotionLLaMA, data: Any, cfg: DictConfig, subsets: Sequence[Sequence[str]],
                      out_dir: Path) -> list[dict]:
    """One checkpoint evaluated under several modality subsets -> ``ablation.md`` / ``ablation.json``.

    Each subset rebuilds the dataset with ``data.modalities`` replaced (how a left-out modality disappears
    follows ``data.ablation``); each subset's full report goes to ``ablation/<a+b>/``.
    """
    rows: list[dict] = []
    columns: list[str] = []
    for subset in subsets:
        name = "+".join(subset)
        sub_cfg = _with(cfg, modalities=list(subset))
        metrics = evaluate_dataset(model, data.dataset(cfg.eval.split, sub_cfg, model), sub_cfg,
                                   out_dir / "ablation" / name, extra={"ablation": name})
        rows.append({"modalities": name, **_row(metrics)})
        columns = ["modalities", *_columns(metrics)]
    if dist.is_main():
        write_table(out_dir, "ablation", rows, columns)
    return rows


def prompt_sensitivity(model: EmotionLLaMA, data: Any, cfg: DictConfig, count: int, out_dir: Path) -> list[dict]:
    """The same checkpoint over the first ``count`` instructions of the pool -> ``prompts.md`` / ``prompts.json``
    with a closing mean ± std row (sample std over instructions); each run's report goes to ``prompts/<i>/``."""
    pool = data.dataset(cfg.eval.split, cfg, model).pools[cfg.data.tasks[0]]
    if count > len(pool):
        raise ValueError(f"eval.prompts={count} exceeds the {cfg.data.tasks[0]} instruction pool "
                         f"({len(pool)} instructions)")
    rows: list[dict] = []
    for i in range(count):
        sub_cfg = _with(cfg, instruction=i)
        metrics = evaluate_dataset(model, data.dataset(cfg.eval.split, sub_cfg, model), sub_cfg,
                                   out_dir / "prompts" / str(i), extra={"prompt": pool[i]})
        rows.append({"instruction": i, "prompt": pool[i], **_row(metrics)})
    keys = [k for k in rows[0] if k not in ("instruction", "prompt")]
    summary = {"instruction": "mean ± std", "prompt": "", **{k: mean_std([r[k] for r in rows]) for k in keys}}
    if dist.is_main():
        write_table(out_dir, "prompts", [*rows, summary], ["instruction", "prompt", *keys])
    return rows


def run_evaluation(cfg: DictConfig, model: EmotionLLaMA, out_dir: Path) -> dict:
    """The split of ``eval.split`` into ``out_dir``, then the studies the config asks for; the main metrics.

    The corpus is loaded once for every modality any ablation row needs, so all rows score the same samples.
    """
    needed = set(cfg.data.modalities).union(*map(set, cfg.eval.ablations))
    data = prepare_data(_with(cfg, modalities=[m for m in MODALITIES if m in needed]), model)
    metrics = evaluate_dataset(model, data.dataset(cfg.eval.split, cfg, model), cfg, out_dir)
    if cfg.eval.ablations:
        modality_ablation(model, data, cfg, [list(s) for s in cfg.eval.ablations], out_dir)
    if cfg.eval.prompts > 0:
        prompt_sensitivity(model, data, cfg, cfg.eval.prompts, out_dir)
    return metrics
