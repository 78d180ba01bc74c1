"""Metrics: hand-computed small cases and agreement with scikit-learn on random ones."""
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
)
from sklearn.preprocessing import MultiLabelBinarizer

from minigpt4.data.labels import get_label_set
from minigpt4.evaluation.metrics import compute_metrics

IEMO4 = get_label_set("iemocap_4class")  # happy, sad, neutral, angry: not alphabetical on purpose


def test_single_label_hand_computed() -> None:
    gold = [["happy"], ["happy"], ["sad"], ["neutral"]]
    pred = [["happy"], ["sad", "angry"], ["sad"], []]  # second: ambiguous (never its first label); last: unparsed
    m = compute_metrics(gold, pred, IEMO4, "single")
    assert m["n_samples"] == 4 and m["n_unparsed"] == 1 and m["n_ambiguous"] == 1
    assert m["accuracy"] == pytest.approx(0.5)
    # happy P=1 R=.5 F=2/3 (n=2); sad P=1 R=1 F=1 (n=1); neutral 0 (n=1); angry absent.
    assert m["weighted_precision"] == pytest.approx((2 * 1 + 1) / 4)
    assert m["weighted_recall"] == pytest.approx(0.5)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 1) / 4)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)  # angry neither gold nor predicted
    assert m["uar"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["per_class"]["happy"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_class"]["angry"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["labels"] == ["happy", "sad", "neutral", "angry"]
    assert m["confusion_columns"] == ["happy", "sad", "neutral", "angry", "ambiguous", "unparsed"]
    assert m["confusion_matrix"] == [[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]]


def test_the_same_label_twice_is_not_ambiguous_and_multi_label_sets_are_not_either() -> None:
    single = compute_metrics([["happy"]], [["happy", "happy"]], IEMO4, "single")
    assert single["accuracy"] == 1.0 and single["n_ambiguous"] == 0
    multi = compute_metrics([["happy", "sad"], ["neutral"]], [["happy", "sad"], ["neutral"]], IEMO4, "multi")
    assert multi["n_ambiguous"] == 0 and multi["samples_f1"] == 1.0
    assert multi["majority_samples_f1"] == pytest.approx((2 / 3 + 0) / 2)  # always "happy" (first of the tie)
    assert multi["mean_predicted_labels"] == 1.5


def test_no_unparsed_column_when_all_parsed() -> None:
    m = compute_metrics([["sad"], ["angry"]], [["sad"], ["happy"]], IEMO4, "single")
    assert m["n_unparsed"] == 0
    assert m["confusion_columns"] == m["labels"]
    assert m["confusion_matrix"] == [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]


def test_unparsed_is_never_coerced() -> None:
    """All-unparsed predictions score zero, even against a single-class gold set."""
    m = compute_metrics([["neutral"]] * 3, [[]] * 3, IEMO4, "single")
    assert (m["accuracy"], m["weighted_recall"], m["uar"], m["n_unparsed"]) == (0.0, 0.0, 0.0, 3)
    assert m["confusion_matrix"][2] == [0, 0, 0, 0, 3]


def test_aliases_in_gold_and_pred_are_canonicalised() -> None:
    m = compute_metrics([["Anger"], ["hap"]], [["mad"], ["joy"]], IEMO4, "single")
    assert m["accuracy"] == 1.0


def test_single_label_matches_sklearn() -> None:
    ls = get_label_set("merr")
    rng = np.random.default_rng(0)
    # Skewed gold, one class never used, ~10% unparsed.
    gold = list(rng.choice(ls.labels[:8], size=300, p=np.linspace(1, 3, 8) / np.linspace(1, 3, 8).sum()))
    pred = [g if rng.random() < 0.55 else str(rng.choice(ls.labels)) for g in gold]
    pred = ["unparsed" if rng.random() < 0.1 else p for p in pred]
    m = compute_metrics([[g] for g in gold], [[] if p == "unparsed" else [p] for p in pred], ls, "single")

    # Upstream style: sklearn on the raw strings, "unparsed" as an extra (zero-support) class.
    wp, wr, wf, _ = precision_recall_fscore_support(gold, pred, average="weighted", zero_division=0)
    assert (m["weighted_precision"], m["weighted_recall"], m["weighted_f1"]) == pytest.approx((wp, wr, wf))
    assert m["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        assert m["uar"] == pytest.approx(balanced_accuracy_score(gold, pred))
    seen = sorted((set(gold) | set(pred)) - {"unparsed"})
    assert m["macro_f1"] == pytest.approx(f1_score(gold, pred, labels=seen, average="macro", zero_division=0))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=list(ls.labels), zero_division=0)
    got = np.array([[c["precision"], c["recall"], c["f1"], c["support"]] for c in m["per_class"].values()])
    np.testing.assert_allclose(got, np.stack([p, r, f, s], axis=1))
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (9, 10) and cm.sum() == 300 and cm[:, -1].sum() == m["n_unparsed"] == pred.count("unparsed")
    assert np.trace(cm) == sum(g == p for g, p in zip(gold, pred))


def test_multi_label_hand_computed() -> None:
    gold = [["happy", "sad"], ["neutral"], ["angry", "sad"]]
    pred = [["happy"], ["neutral", "angry"], []]
    m = compute_metrics(gold, pred, IEMO4, "multi")
    assert m["label_mode"] == "multi"
    # tp=2 (happy, neutral), fp=1 (angry in #2), fn=3 (sad #1, sad #3, angry #3)
    assert m["micro_precision"] == pytest.approx(2 / 3)
    assert m["micro_recall"] == pytest.approx(2 / 5)
    assert m["micro_f1"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((1 + 0 + 1 + 0) / 4)
    assert m["weighted_f1"] == pytest.approx((1 * 1 + 2 * 0 + 1 * 1 + 1 * 0) / 5)
    assert m["samples_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["subset_accuracy"] == 0.0
    assert m["hamming_loss"] == pytest.approx(4 / 12)
    assert m["per_class"]["sad"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    # Primary labels: happy/happy, neutral/neutral, angry/unparsed.
    assert m["accuracy"] == pytest.approx(2 / 3) and m["n_unparsed"] == 1
    assert m["confusion_matrix"] == [[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]


def test_multi_label_matches_sklearn() -> None:
    ls = get_label_set("iemocap_6class")
    rng = np.random.default_rng(1)
    labels = list(ls.labels)
    gold = [list(rng.choice(labels, size=rng.integers(1, 4), replace=False)) for _ in range(200)]
    pred = [list(rng.choice(labels, size=rng.integers(0, 4), replace=False)) for _ in range(200)]
    m = compute_metrics(gold, pred, ls, "multi")
    mlb = MultiLabelBinarizer(classes=labels)
    yt, yp = mlb.fit_transform(gold), mlb.transform(pred)
    for avg in ("micro", "macro", "weighted", "samples"):
        assert m[f"{avg}_f1"] == pytest.approx(f1_score(yt, yp, average=avg, zero_division=0)), avg
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(yt, yp))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(yt, yp))
    assert m["n_unparsed"] == sum(not p for p in pred)
    assert [c["support"] for c in m["per_class"].values()] == yt.sum(axis=0).tolist()


@pytest.mark.parametrize(
    ("gold", "pred", "mode", "match"),
    [
        ([["happy"]], [["happy"]], "multiclass", "label_mode"),
        ([["happy"]], [], "single", "1 gold rows but 0"),
        ([], [], "single", "no samples"),
        ([[]], [["happy"]], "single", "at least one gold"),
        ([["happy"]], [["frustrated"]], "single", "unknown label 'frustrated'"),
    ],
)
def test_invalid_inputs_raise(gold: list, pred: list, mode: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(gold, pred, IEMO4, mode)
