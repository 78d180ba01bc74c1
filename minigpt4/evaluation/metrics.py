"""Emotion-recognition metrics over parsed answers, computed with scikit-learn.

Unparsed answers (no known label in the generated text) are never coerced to a label, and neither are
ambiguous ones (several different labels where one was asked for: never "the first one named"). In
single-label scoring both are a prediction outside the label set, so they count as wrong and lower recall
without raising any class's precision, and each gets its own trailing column in the confusion matrix.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
    recall_score,
)
from sklearn.preprocessing import MultiLabelBinarizer

from minigpt4.data.labels import LabelSet

UNPARSED = "unparsed"
AMBIGUOUS = "ambiguous"
NO_LABEL_COLUMNS = (AMBIGUOUS, UNPARSED)
"""Trailing confusion-matrix columns, in this order, each present only when some prediction falls in it."""
LABEL_MODES = ("single", "multi")


def _canonical(label_set: LabelSet, rows: Sequence[Sequence[str]]) -> list[list[str]]:
    # Validates every stored label against the label set (an unknown one raises naming the accepted ones).
    return [[label_set.canonical(x) for x in row] for row in rows]


def _per_class(labels: Sequence[str], p: np.ndarray, r: np.ndarray, f: np.ndarray, s: np.ndarray) -> dict:
    return {
        label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, label in enumerate(labels)
    }


def _single(gold: list[str], pred: list[str], labels: list[str]) -> dict:
    """Single-label scores on one gold and one predicted label per sample (pred may be ``UNPARSED`` or
    ``AMBIGUOUS``)."""
    gold_set, pred_set = set(gold), set(pred)
    gold_present = [x for x in labels if x in gold_set]
    # Macro F1 over the classes that occur in gold or predictions (sklearn's default set, minus "unparsed"):
    # a class absent from a small split would otherwise add a spurious zero.
    seen = [x for x in labels if x in gold_set or x in pred_set]
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    wp, wr, wf, _ = precision_recall_fscore_support(gold, pred, labels=labels, average="weighted", zero_division=0)
    columns = labels + [c for c in NO_LABEL_COLUMNS if c in pred_set]
    cm = confusion_matrix(gold, pred, labels=columns)[: len(labels)]
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "weighted_precision": float(wp),
        "weighted_recall": float(wr),
        "weighted_f1": float(wf),
        "macro_f1": float(f1_score(gold, pred, labels=seen, average="macro", zero_division=0)),
        # Unweighted average recall: mean recall over the gold classes present (balanced accuracy).
        "uar": float(recall_score(gold, pred, labels=gold_present, average="macro", zero_division=0)),
        "per_class": _per_class(labels, p, r, f, s),
        "confusion_matrix": cm.tolist(),
        "confusion_columns": columns,
    }


def _multi(gold: list[list[str]], pred: list[list[str]], labels: list[str]) -> dict:
    """Multi-label scores on binarised label sets (an unparsed answer is the empty set)."""
    mlb = MultiLabelBinarizer(classes=labels)
    y_true, y_pred = mlb.fit_transform(gold), mlb.transform(pred)
    seen = [i for i in range(len(labels)) if y_true[:, i].any() or y_pred[:, i].any()]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    out: dict = {}
    for average in ("micro", "weighted", "samples"):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        out |= {f"{average}_precision": float(ap), f"{average}_recall": float(ar), f"{average}_f1": float(af)}
    out["macro_f1"] = float(f1_score(y_true, y_pred, labels=seen, average="macro", zero_division=0))
    out["subset_accuracy"] = float(accuracy_score(y_true, y_pred))
    # Reference: always predicting the most frequent gold label of this very split (a baseline favoured by
    # knowing the split's label counts); a multi-label model must clear it.
    majority = int(y_true.sum(axis=0).argmax())
    always = np.zeros_like(y_true)
    always[:, majority] = 1
    out["majority_samples_f1"] = float(f1_score(y_true, always, average="samples", zero_division=0))
    out["mean_predicted_labels"] = float(y_pred.sum(axis=1).mean())
    out["hamming_loss"] = float(hamming_loss(y_true, y_pred))
    out["per_class"] = _per_class(labels, p, r, f, s)
    return out


def compute_metrics(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], label_set: LabelSet, label_mode: str
) -> dict:
    """All metrics of one evaluation as a JSON-ready dict.

    ``gold``/``pred`` hold each sample's labels (``pred`` as parsed: empty means unparsed). ``single`` scores
    gold[0] against the one predicted label (``ambiguous`` when several were parsed, ``unparsed`` when none);
    ``multi`` scores the binarised sets (micro / macro / weighted / samples F1,
    subset accuracy, Hamming loss, per-class) and adds accuracy, UAR and the confusion matrix of the primary
    labels (gold[0] vs pred[0]), so every report has a matrix to draw. Confusion rows are gold labels and
    columns predicted labels, both in the label set's order, plus an ``unparsed`` column when any.
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold rows but {len(pred)} predictions")
    if not gold:
        raise ValueError("no samples to score")
    if any(len(row) == 0 for row in gold):
        raise ValueError("every sample needs at least one gold label")
    labels = list(label_set.labels)
    gold_c, pred_c = _canonical(label_set, gold), _canonical(label_set, pred)
    primary_gold = [row[0] for row in gold_c]
    primary_pred = [row[0] if row else UNPARSED for row in pred_c]
    if label_mode == "single":
        primary_pred = [AMBIGUOUS if len(set(row)) > 1 else p for row, p in zip(pred_c, primary_pred)]
    out: dict = {"label_mode": label_mode, "labels": labels, "n_samples": len(gold_c),
                 "n_unparsed": primary_pred.count(UNPARSED), "n_ambiguous": primary_pred.count(AMBIGUOUS)}
    out |= _single(primary_gold, primary_pred, labels)
    if label_mode == "multi":
        out |= _multi(gold_c, pred_c, labels)
    return out
