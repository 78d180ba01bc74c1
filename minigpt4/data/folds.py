"""Cross-validation folds and inner validation splits that never cut a group (session, dialogue).

Folds are held-out sets: fold k's training data is every other fold. With exactly k groups the folds are
leave-one-group-out (IEMOCAP leave-one-session-out); otherwise ``StratifiedGroupKFold`` balances labels
across folds while keeping groups whole. Samples without a group are their own group.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from minigpt4.data.samples import Sample


def _group(sample: Sample) -> str:
    return sample.group if sample.group is not None else sample.id


def group_folds(samples: Sequence[Sample], k: int, seed: int) -> list[list[Sample]]:
    """Split ``samples`` into ``k`` disjoint, covering held-out folds; groups stay whole; deterministic."""
    groups = sorted({_group(s) for s in samples})
    if k < 2:
        raise ValueError(f"group_folds: k={k}, expected at least 2 folds")
    if len(groups) < k:
        raise ValueError(f"group_folds: {len(groups)} group(s) cannot make {k} folds; lower run.num_folds")
    if len(groups) == k:
        return [[s for s in samples if _group(s) == g] for g in groups]
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    labels = [s.label for s in samples]
    if min(Counter(labels).values()) < k:  # sklearn warns and stratifies poorly; plain group folds are honest
        labels = ["all"] * len(samples)
    folds = [[samples[i] for i in held] for _, held in
             splitter.split(np.zeros(len(samples)), labels, [_group(s) for s in samples])]
    if any(not fold for fold in folds):
        raise ValueError(f"group_folds: a fold came out empty ({len(groups)} groups, k={k})")
    return folds


def carve_val(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Carve about ``fraction`` of ``samples`` off as validation, by whole groups; return (train, val).

    With enough groups it is one fold of a stratified group split (``round(1/fraction)`` folds); with few
    (IEMOCAP's four training sessions) whole groups are drawn in seeded order until the share is reached,
    at least one group and never all of them.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"carve_val: fraction={fraction}, expected 0 < fraction < 1 (data.val_fraction)")
    groups = sorted({_group(s) for s in samples})
    if len(groups) < 2:
        raise ValueError(f"carve_val: {len(groups)} group(s); a validation split needs at least 2")
    n_splits = max(2, round(1 / fraction))
    if len(groups) >= 2 * n_splits:
        val_ids = {s.id for s in group_folds(samples, n_splits, seed)[0]}
    else:
        order = np.random.default_rng(seed).permutation(len(groups))
        sizes = Counter(_group(s) for s in samples)
        chosen: set[str] = set()
        for i in order[:-1]:
            chosen.add(groups[i])
            if sum(sizes[g] for g in chosen) >= fraction * len(samples):
                break
        val_ids = {s.id for s in samples if _group(s) in chosen}
    return [s for s in samples if s.id not in val_ids], [s for s in samples if s.id in val_ids]
