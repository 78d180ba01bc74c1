"""Evaluation: batched predictions (greedy generation + parsing, or label scoring), reports and the studies.

Training validates with :func:`evaluate_dataset`; ``eval_emotion.py`` runs :func:`run_evaluation`, which adds the
modality-ablation and prompt-sensitivity tables. Under ``torchrun`` every rank predicts one contiguous shard of
the samples and rank 0 gathers them in order and writes; every rank returns the same metrics.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as tdist
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from minigpt4.runtime import dist
from minigpt4.evaluation import scoring
from minigpt4.data.collate import Collator
from minigpt4.data.dataset import EmotionDataset
from minigpt4.data.labels import LabelSet
from minigpt4.evaluation.metrics import compute_metrics
from minigpt4.models.model import EmotionLLaMA
from minigpt4.data.pipeline import prepare_data
from minigpt4.evaluation.report import HEADLINE, Prediction, mean_std, write_report, write_table
from minigpt4.modalities import MODALITIES
from minigpt4.models.build import build_model
from minigpt4.config import save_config

log = logging.getLogger(__name__)


def _shard(n: int, rank: int, world: int) -> range:
    """Contiguous, disjoint shards covering 0..n-1 exactly once (sizes differ by at most one)."""
    return range(n * rank // world, n * (rank + 1) // world)


def _loader(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig) -> DataLoader:
    """Prompt batches of this rank's shard of the first ``eval.max_samples`` samples, in dataset order."""
    n = min(len(dataset), cfg.eval.max_samples) if cfg.eval.max_samples > 0 else len(dataset)
    return DataLoader(Subset(dataset, _shard(n, dist.rank(), dist.world_size())), batch_size=cfg.eval.batch_size,
                      shuffle=False, num_workers=cfg.run.num_workers,
                      collate_fn=Collator(model.tokenizer.pad_token_id, "prompt"))


def _gather(rows: list) -> list:
    """Every rank's rows, in rank order, on rank 0; an empty list on the other ranks."""
    world = dist.world_size()
    if world == 1:
        return rows
    gathered: list[list] | None = [[] for _ in range(world)] if dist.rank() == 0 else None
    tdist.gather_object(rows, gathered, dst=0)
    return [r for shard in gathered for r in shard] if gathered is not None else []


def _golds(batch: dict, label_mode: str) -> list[list[str]]:
    return [list(g) if label_mode == "multi" else list(g[:1]) for g in batch["gold"]]


def _empty_prompt_prior(model: EmotionLLaMA, dataset: EmotionDataset, candidates: list[list[int]]) -> torch.Tensor:
    """Candidate log-likelihoods [c] after the template wrapped around an empty instruction (no modality, no
    words): what the model prefers whatever it is shown (``eval.score_norm=calibrated``)."""
    enc = dataset.builder.encode("")
    ids = torch.tensor([enc.ids])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "slots": torch.tensor([enc.slots])}
    return model.score(batch, candidates)[0].float()


def scored_rows(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig,
                 answers: list[tuple[str, ...]]) -> list[tuple[str, list[str], list[float]]]:
    """(id, gold, label marginals) per sample from ranking the candidate ``answers`` (rank 0 gets all)."""
    label_set, label_mode = dataset.corpus.label_set, cfg.data.label_mode
    candidates = [dataset.builder.encode_answer(label_set.format_answer(a)) for a in answers]
    lengths = torch.tensor([len(c) for c in candidates], dtype=torch.float32)
    prior = _empty_prompt_prior(model, dataset, candidates) if cfg.eval.score_norm == "calibrated" else None
    rows = []
    for batch in tqdm(_loader(model, dataset, cfg), desc="eval score", disable=True if dist.rank() else None,
                      leave=False):
        scores = scoring.normalise(model.score(batch, candidates).float().cpu(), lengths, cfg.eval.score_norm,
                                   None if prior is None else prior.cpu())
        marginals = scoring.label_marginals(torch.softmax(scores, dim=-1), answers, label_set)
        rows += [(str(i), g, m) for i, g, m in zip(batch["sample_ids"], _golds(batch, label_mode), marginals.tolist())]
    return _gather(rows)


def _decision(cfg: DictConfig, rows: list, labels: Sequence[str]) -> scoring.Decision:
    """The multi-label rule: set by hand (``eval.top_k`` / ``eval.threshold``), chosen now when the split being
    scored is the validation split, else the one saved with ``model.checkpoint`` (chosen on its validation)."""
    ev = cfg.eval
    common = {"max_labels": ev.max_labels, "score_norm": ev.score_norm}
    if ev.top_k > 0:
        return scoring.Decision(None, ev.top_k, source="eval.top_k", **common)
    if ev.threshold is not None:
        return scoring.Decision(float(ev.threshold), 0, source="eval.threshold", **common)
    if ev.split == "val":
        threshold, f1 = scoring.tune_threshold([r[1] for r in rows], np.array([r[2] for r in rows]), labels)
        return scoring.Decision(threshold, 0, source="validation", val_samples_f1=f1, n_val=len(rows), **common)
    saved = scoring.load_decision(cfg.model.checkpoint)
    if saved is None:
        raise ValueError(
            f"multi-label score mode on the {ev.split} split needs a threshold chosen on the validation split: "
            f"model.checkpoint={cfg.model.checkpoint} holds no {scoring.DECISION_FILE} (train.py writes it for "
            f"data.label_mode=multi runs with a validation split); or set eval.threshold / eval.top_k by hand")
    if (saved.max_labels, saved.score_norm) != (ev.max_labels, ev.score_norm):
        raise ValueError(f"{cfg.model.checkpoint}/{scoring.DECISION_FILE}: the threshold was chosen with "
                         f"eval.max_labels={saved.max_labels} eval.score_norm={saved.score_norm}; this run has "
                         f"{ev.max_labels} / {ev.score_norm}: set them alike (or eval.threshold by hand)")
    return saved


def _choose_classified(model: EmotionLLaMA, batch: dict, label_set: LabelSet) -> list[list[str]]:
    """Classifier-head labels, most probable first (thresholds and argmax rule: ``ClassifierHead.decide``)."""
    probs = model.classify(batch)
    keep = model.head.decide(probs)
    order = probs.argsort(dim=-1, descending=True)
    return [[label_set.labels[j] for j in row if row_keep[j]] for row, row_keep in zip(order.tolist(), keep.tolist())]


@torch.no_grad()
def class_probabilities(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig) -> tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
    """Classifier-head probabilities and gold label vectors ``[n, labels]`` over ``dataset`` (one process)."""
    loader = DataLoader(dataset, batch_size=cfg.eval.batch_size, shuffle=False, num_workers=cfg.run.num_workers,
                        collate_fn=Collator(model.tokenizer.pad_token_id, "prompt"))
    was_training = model.training
    model.eval()
    try:
        pairs = [(model.classify(batch).cpu(), batch["targets"]) for batch in loader]
    finally:
        model.train(was_training)
    return torch.cat([p for p, _ in pairs]), torch.cat([t for _, t in pairs])


def predict_with_decision(model: EmotionLLaMA, dataset: EmotionDataset,
                          cfg: DictConfig) -> tuple[list[Prediction], scoring.Decision | None]:
    """Predictions for ``dataset`` (first ``eval.max_samples`` when set), in dataset order, and the
    multi-label rule score mode used (None otherwise).

    Returns the full list on rank 0 (and in a single process), an empty list on other ranks. The model is put
    in eval mode and given back in the mode it came in, since training calls this for validation.
    """
    model = getattr(model, "module", model)  # DDP / DeepSpeed wrappers hold the model in ``module``
    ev = cfg.eval
    label_set, label_mode = dataset.corpus.label_set, cfg.data.label_mode
    was_training = model.training
    model.eval()
    try:
        if getattr(model, "head", None) is not None:  # duck-typed stand-ins may have no head at all
            preds = []
            for batch in tqdm(_loader(model, dataset, cfg), desc="eval classifier",
                              disable=True if dist.rank() else None, leave=False):
                chosen = _choose_classified(model, batch, label_set)
                preds += [Prediction(str(i), g, c, label_set.format_answer(c))
                          for i, g, c in zip(batch["sample_ids"], _golds(batch, label_mode), chosen)]
            return _gather(preds), None
        if ev.mode == "generate":
            # The parsed labels as they are: empty (unparsed) or several (ambiguous in single-label scoring)
            # are counted and reported, never coerced to a label.
            preds = []
            for batch in tqdm(_loader(model, dataset, cfg), desc="eval generate",
                              disable=True if dist.rank() else None, leave=False):
                texts = model.generate(batch, max_new_tokens=min(ev.max_new_tokens, cfg.model.max_answer_tokens))
                preds += [Prediction(str(i), g, list(label_set.parse(t)), t)
                          for i, g, t in zip(batch["sample_ids"], _golds(batch, label_mode), texts)]
            return _gather(preds), None
        answers = scoring.candidate_sets(label_set, label_mode, ev.max_labels)
        rows = scored_rows(model, dataset, cfg, answers)
    finally:
        model.train(was_training)
    decision = None
    if rows and label_mode == "multi":
        decision = _decision(cfg, rows, label_set.labels)
        chosen = scoring.choose(np.array([r[2] for r in rows]), label_set.labels, decision.threshold, decision.top_k)
    else:
        chosen = [[label_set.labels[int(np.argmax(r[2]))]] for r in rows]
    return [Prediction(i, g, c, label_set.format_answer(c)) for (i, g, _), c in zip(rows, chosen)], decision


def predict(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig) -> list[Prediction]:
    """:func:`predict_with_decision` without the decision."""
    return predict_with_decision(model, dataset, cfg)[0]


def evaluate_dataset(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig,
                     out_dir: Path | None = None, title: str | None = None,
                     extra: dict[str, Any] | None = None) -> dict:
    """Predict ``dataset`` and score it; with ``out_dir``, rank 0 also writes every report file there.

    Returns the :func:`~minigpt4.evaluation.metrics.compute_metrics` dict on every rank (broadcast from rank 0), so all
    ranks of a training run take the same checkpoint decisions. The report names ``eval.split`` as the split;
    a caller evaluating another one (training's validation) says so in ``title`` and ``extra={"split": ...}``.
    """
    preds, decision = predict_with_decision(model, dataset, cfg)
    metrics: dict | None = None
    # A classifier head neither generates nor scores answers: the report names the head instead.
    mode = "classifier" if getattr(getattr(model, "module", model), "head", None) is not None else cfg.eval.mode
    title = title or f"{dataset.corpus.name} {cfg.eval.split} ({mode})"
    if dist.is_main():
        label_set, label_mode = dataset.corpus.label_set, cfg.data.label_mode
        if out_dir is None:
            metrics = compute_metrics([p.gold for p in preds], [p.pred for p in preds], label_set, label_mode)
            if decision is not None:
                metrics["decision"] = decision.describe()
        else:
            run_info = {"corpus": dataset.corpus.name, "split": cfg.eval.split, "mode": mode,
                        "checkpoint": cfg.model.checkpoint, "modalities": ", ".join(cfg.data.modalities),
                        "instruction": cfg.data.instruction if cfg.data.instruction is not None else 0,
                        **({"max_new_tokens": cfg.eval.max_new_tokens} if mode == "generate"
                           else {"score_norm": cfg.eval.score_norm} if mode == "score" else {}),
                        **({"decision": decision.describe()["rule"] + f" ({decision.source})"} if decision else {}),
                        **(extra or {})}
            metrics = write_report(out_dir, preds, label_set, label_mode, title, run_info,
                                   decision=decision.describe() if decision else None)
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
