"""Predictions for a dataset: batched greedy generation + parsing, label scoring, or the classifier head.

Under ``torchrun`` every rank predicts one contiguous shard of the samples and rank 0 gathers them in order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.distributed as tdist
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from minigpt4.config import EvalConfig
from minigpt4.data.collate import Collator
from minigpt4.data.dataset import EmotionDataset
from minigpt4.data.labels import LabelSet
from minigpt4.evaluation import scoring
from minigpt4.evaluation.report import Prediction
from minigpt4.models.model import EmotionLLaMA
from minigpt4.runtime import dist


def _shard(n: int, rank: int, world: int) -> range:
    """Contiguous, disjoint shards covering 0..n-1 exactly once (sizes differ by at most one)."""
    return range(n * rank // world, n * (rank + 1) // world)


def _loader(model: EmotionLLaMA, dataset: EmotionDataset, ev: EvalConfig, workers: int) -> DataLoader:
    """Prompt batches of this rank's shard of the first ``eval.max_samples`` samples, in dataset order."""
    n = min(len(dataset), ev.max_samples) if ev.max_samples > 0 else len(dataset)
    return DataLoader(Subset(dataset, _shard(n, dist.rank(), dist.world_size())), batch_size=ev.batch_size,
                      shuffle=False, num_workers=workers,
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


def scored_rows(model: EmotionLLaMA, dataset: EmotionDataset, ev: EvalConfig, workers: int,
                answers: list[tuple[str, ...]], label_mode: str) -> list[tuple[str, list[str], list[float]]]:
    """(id, gold, label marginals) per sample from ranking the candidate ``answers`` (rank 0 gets all)."""
    label_set = dataset.corpus.label_set
    candidates = [dataset.builder.encode_answer(label_set.format_answer(a)) for a in answers]
    lengths = torch.tensor([len(c) for c in candidates], dtype=torch.float32)
    prior = _empty_prompt_prior(model, dataset, candidates) if ev.score_norm == "calibrated" else None
    rows = []
    for batch in tqdm(_loader(model, dataset, ev, workers), desc="eval score", disable=True if dist.rank() else None,
                      leave=False):
        scores = scoring.normalise(model.score(batch, candidates).float().cpu(), lengths, ev.score_norm,
                                   None if prior is None else prior.cpu())
        marginals = scoring.label_marginals(torch.softmax(scores, dim=-1), answers, label_set)
        rows += [(str(i), g, m) for i, g, m in zip(batch["sample_ids"], _golds(batch, label_mode), marginals.tolist())]
    return _gather(rows)


def _decision(ev: EvalConfig, split: str, checkpoint: str | None, rows: list,
              labels: Sequence[str]) -> scoring.Decision:
    """The multi-label rule: set by hand (``eval.top_k`` / ``eval.threshold``), chosen now when the split being
    scored is the validation split, else the one saved with ``model.checkpoint`` (chosen on its validation)."""
    common = {"max_labels": ev.max_labels, "score_norm": ev.score_norm}
    if ev.top_k > 0:
        return scoring.Decision(None, ev.top_k, source="eval.top_k", **common)
    if ev.threshold is not None:
        return scoring.Decision(float(ev.threshold), 0, source="eval.threshold", **common)
    if split == "val":
        threshold, f1 = scoring.tune_threshold([r[1] for r in rows], np.array([r[2] for r in rows]), labels)
        return scoring.Decision(threshold, 0, source="validation", val_samples_f1=f1, n_val=len(rows), **common)
    saved = scoring.load_decision(checkpoint)
    if saved is None:
        raise ValueError(
            f"multi-label score mode on the {split} split needs a threshold chosen on the validation split: "
            f"model.checkpoint={checkpoint} holds no {scoring.DECISION_FILE} (train.py writes it for "
            f"data.label_mode=multi runs with a validation split); or set eval.threshold / eval.top_k by hand")
    if (saved.max_labels, saved.score_norm) != (ev.max_labels, ev.score_norm):
        raise ValueError(f"{checkpoint}/{scoring.DECISION_FILE}: the threshold was chosen with "
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
def class_probabilities(model: EmotionLLaMA, dataset: EmotionDataset, batch_size: int,
                        workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier-head probabilities and gold label vectors ``[n, labels]`` over ``dataset`` (one process)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=Collator(model.tokenizer.pad_token_id, "prompt"))
    was_training = model.training
    model.eval()
    try:
        pairs = [(model.classify(batch).cpu(), batch["targets"]) for batch in loader]
    finally:
        model.train(was_training)
    return torch.cat([p for p, _ in pairs]), torch.cat([t for _, t in pairs])


def predict_with_decision(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig,
                          split: str | None = None, mode: str | None = None,
                          ) -> tuple[list[Prediction], scoring.Decision | None]:
    """Predictions for ``dataset`` (first ``eval.max_samples`` when set), in dataset order, and the
    multi-label rule score mode used (None otherwise). ``split`` / ``mode`` name what is scored and how when
    they differ from ``eval.split`` / ``eval.mode`` (training's validation; choosing the score-mode rule).

    Returns the full list on rank 0 (and in a single process), an empty list on other ranks. The model is put
    in eval mode and given back in the mode it came in, since training calls this for validation.
    """
    model = getattr(model, "module", model)  # DDP / DeepSpeed wrappers hold the model in ``module``
    ev, workers = cfg.eval, cfg.run.num_workers
    split, mode = split or ev.split, mode or ev.mode
    label_set, label_mode = dataset.corpus.label_set, cfg.data.label_mode
    was_training = model.training
    model.eval()
    try:
        if getattr(model, "head", None) is not None:  # duck-typed stand-ins may have no head at all
            preds = []
            for batch in tqdm(_loader(model, dataset, ev, workers), desc="eval classifier",
                              disable=True if dist.rank() else None, leave=False):
                chosen = _choose_classified(model, batch, label_set)
                preds += [Prediction(str(i), g, c, label_set.format_answer(c))
                          for i, g, c in zip(batch["sample_ids"], _golds(batch, label_mode), chosen)]
            return _gather(preds), None
        if mode == "generate":
            # The parsed labels as they are: empty (unparsed) or several (ambiguous in single-label scoring)
            # are counted and reported, never coerced to a label.
            preds = []
            for batch in tqdm(_loader(model, dataset, ev, workers), desc="eval generate",
                              disable=True if dist.rank() else None, leave=False):
                texts = model.generate(batch, max_new_tokens=min(ev.max_new_tokens, cfg.model.max_answer_tokens))
                preds += [Prediction(str(i), g, list(label_set.parse(t)), t)
                          for i, g, t in zip(batch["sample_ids"], _golds(batch, label_mode), texts)]
            return _gather(preds), None
        answers = scoring.candidate_sets(label_set, label_mode, ev.max_labels)
        rows = scored_rows(model, dataset, ev, workers, answers, label_mode)
    finally:
        model.train(was_training)
    decision = None
    if rows and label_mode == "multi":
        decision = _decision(ev, split, cfg.model.checkpoint, rows, label_set.labels)
        chosen = scoring.choose(np.array([r[2] for r in rows]), label_set.labels, decision.threshold, decision.top_k)
    else:
        chosen = [[label_set.labels[int(np.argmax(r[2]))]] for r in rows]
    return [Prediction(i, g, c, label_set.format_answer(c)) for (i, g, _), c in zip(rows, chosen)], decision


def predict(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig) -> list[Prediction]:
    """:func:`predict_with_decision` without the decision."""
    return predict_with_decision(model, dataset, cfg)[0]
