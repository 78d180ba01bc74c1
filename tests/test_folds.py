"""Folds keep groups whole, are disjoint and covering, and do not change between runs."""
from __future__ import annotations

from collections import Counter

import pytest

from minigpt4.data.folds import carve_val, group_folds
from minigpt4.data.samples import Sample


def make(n_groups: int, per_group: int, labels=("a", "b", "c")) -> list[Sample]:
    return [Sample(id=f"g{g}_u{i}", labels=(labels[(g + i) % len(labels)],), group=f"g{g}")
            for g in range(n_groups) for i in range(per_group)]


def check_partition(samples, folds):
    ids = [s.id for fold in folds for s in fold]
    assert sorted(ids) == sorted(s.id for s in samples)  # covering, and disjoint (no repeats)
    owner = {}
    for k, fold in enumerate(folds):
        for s in fold:
            assert owner.setdefault(s.group or s.id, k) == k  # a group never spans two folds


def test_leave_one_group_out_when_k_groups():
    samples = make(5, 7)
    folds = group_folds(samples, 5, seed=0)
    check_partition(samples, folds)
    assert [{s.group for s in f} for f in folds] == [{f"g{g}"} for g in range(5)]


def test_stratified_group_kfold_deterministic():
    samples = make(40, 5)
    folds = group_folds(samples, 5, seed=3)
    check_partition(samples, folds)
    assert [[s.id for s in f] for f in folds] == [[s.id for s in f] for f in group_folds(samples, 5, seed=3)]
    assert all(len(f) for f in folds)


def test_ungrouped_samples_are_stratified():
    samples = [Sample(id=f"s{i}", labels=("x" if i % 4 else "y",)) for i in range(100)]
    folds = group_folds(samples, 5, seed=0)
    check_partition(samples, folds)
    assert all(Counter(s.label for s in f)["y"] == 5 for f in folds)


def test_too_few_groups():
    with pytest.raises(ValueError, match="3 group\\(s\\) cannot make 5 folds"):
        group_folds(make(3, 2), 5, seed=0)


@pytest.mark.parametrize("n_groups", [4, 60])
def test_carve_val_by_whole_groups(n_groups):
    samples = make(n_groups, 6)
    train, val = carve_val(samples, 0.1, seed=1)
    assert val and train and len(train) + len(val) == len(samples)
    assert not {s.group for s in train} & {s.group for s in val}
    assert carve_val(samples, 0.1, seed=1) == (train, val)
    if n_groups == 60:
        assert 0.05 <= len(val) / len(samples) <= 0.2


def test_carve_val_errors():
    with pytest.raises(ValueError, match="data.val_fraction"):
        carve_val(make(4, 2), 1.5, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        carve_val(make(1, 5), 0.1, seed=0)
