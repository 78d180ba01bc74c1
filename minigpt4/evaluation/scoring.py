"""Score mode: candidate answers, length normalisation, and the rule that turns their likelihoods into labels.

Single-label: the candidates are the label answers (``happy</s>``) and the most likely one is predicted.

Multi-label: training answers are label *sets* (``happy, sad</s>``), so the candidates are the formatted sets the
model learned to produce (every set of up to ``eval.max_labels`` labels, in the label set's order). A softmax
over them is the model's distribution over answers; summing it over the sets that contain a label gives that
label's marginal probability, and every label whose marginal reaches a threshold is predicted (the most likely
label always, so a set is never empty). Why not a softmax over single labels thresholded at 0.5: the labels
then compete for one unit of probability, at most one can pass, and ``happy</s>`` is a string the model was
never trained to emit after a two-label utterance. The threshold is chosen on the validation split (the value
maximising samples F1) and saved with the checkpoint as ``decision.json``; evaluation reads it back and never
tunes on the split it scores.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from minigpt4.data.labels import LabelSet

SCORE_NORMS = ("none", "mean", "calibrated")
DECISION_FILE = "decision.json"
THRESHOLD_GRID = tuple(round(x, 2) for x in np.arange(0.05, 0.96, 0.05))


def candidate_sets(label_set: LabelSet, label_mode: str, max_labels: int) -> list[tuple[str, ...]]:
    """Answers score mode ranks: each label (single-label), or every set of 1..max_labels labels (multi)."""
    sizes = range(1, 2 if label_mode == "single" else min(max_labels, len(label_set.labels)) + 1)
    return [combo for k in sizes for combo in itertools.combinations(label_set.labels, k)]


def normalise(scores: torch.Tensor, lengths: torch.Tensor, norm: str, prior: torch.Tensor | None) -> torch.Tensor:
    """Candidate log-likelihoods [b, c] under ``eval.score_norm``.

    ``none``: the summed log-likelihood (the model's own probability of the answer; short answers win when the
    model is unsure). ``mean``: per answer token (EOS included), so a label split into many pieces is not
    penalised for its length. ``calibrated``: minus the same candidate's log-likelihood after an empty prompt,
    so labels (and lengths) the model favours whatever it sees are discounted.
    """
    if norm == "none":
        return scores
    if norm == "mean":
        return scores / lengths.to(scores)
    if norm == "calibrated":
        if prior is None:
            raise ValueError("eval.score_norm=calibrated needs the empty-prompt prior")
        return scores - prior.to(scores)
    raise ValueError(f"eval.score_norm={norm!r} is not one of {', '.join(SCORE_NORMS)}")


def label_marginals(probs: torch.Tensor, candidates: Sequence[tuple[str, ...]], label_set: LabelSet) -> torch.Tensor:
    """P(label in answer) [b, labels] from a distribution over candidate sets [b, c]."""
    member = torch.tensor([[label in cand for label in label_set.labels] for cand in candidates],
                          dtype=probs.dtype, device=probs.device)
    return probs @ member


def choose(marginals: np.ndarray, labels: Sequence[str], threshold: float | None, top_k: int) -> list[list[str]]:
    """Labels per sample, most probable first: the top ``top_k``, else those at or above ``threshold``; the
    most probable label always."""
    out = []
    for row in np.asarray(marginals):
        order = np.argsort(-row, kind="stable")
        keep = order[:top_k] if top_k > 0 else [j for j in order if row[j] >= threshold]
        out.append([labels[j] for j in (keep if len(keep) else order[:1])])
    return out


def samples_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], labels: Sequence[str]) -> float:
    mlb = MultiLabelBinarizer(classes=list(labels))
    return float(f1_score(mlb.fit_transform(gold), mlb.transform(pred), average="samples", zero_division=0))


@dataclass
class Decision:
    """How multi-label score mode turns label marginals into a set, and where that rule came from."""

    threshold: float | None
    top_k: int
    max_labels: int
    score_norm: str
    source: str
    """``validation`` (chosen on the validation split), ``eval.threshold`` or ``eval.top_k`` (set by hand)."""
    val_samples_f1: float | None = None
    n_val: int | None = None

    def describe(self) -> dict:
        rule = f"top {self.top_k} labels" if self.top_k > 0 else \
            f"every label with marginal probability >= {self.threshold} (the most probable one always)"
        return {"rule": rule, **asdict(self)}


def tune_threshold(gold: Sequence[Sequence[str]], marginals: np.ndarray, labels: Sequence[str]) -> tuple[float, float]:
    """The grid threshold with the best samples F1 on (validation) ``gold``; ties go to the higher threshold
    (smaller sets). Returns (threshold, samples F1)."""
    best = (-1.0, 0.0)
    for t in THRESHOLD_GRID:
        f1 = samples_f1(gold, choose(marginals, labels, t, 0), labels)
        if f1 >= best[0]:
            best = (f1, t)
    return best[1], best[0]


def save_decision(folder: str | Path, decision: Decision) -> Path:
    path = Path(folder) / DECISION_FILE
    path.write_text(json.dumps(asdict(decision), indent=2) + "\n")
    return path


def load_decision(folder: str | Path | None) -> Decision | None:
    """The checkpoint's saved decision, or None when the folder has none (single-label or untrained runs)."""
    if not folder:
        return None
    path = Path(folder) / DECISION_FILE
    if not path.is_file():
        return None
    try:
        return Decision(**json.loads(path.read_text()))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a decision file of this project ({err})") from None
