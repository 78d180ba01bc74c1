"""Which samples train, validate and test a run: the corpus's own splits, or one cross-validation fold.

Checkpoints are chosen on an inner validation split carved from the training groups (or the corpus's dev
split), never on the held-out fold or the test split.
"""
from __future__ import annotations

from typing import Sequence

from minigpt4.data.folds import carve_val, group_folds
from minigpt4.data.samples import Sample


def cv_pool(samples: Sequence[Sample]) -> list[Sample]:
    """Samples that cross-validation folds are drawn from: everything but the corpus's test split."""
    return [s for s in samples if s.split != "test"]


def select_splits(samples: Sequence[Sample], *, seed: int, val_fraction: float, fold: int | None = None,
                  num_folds: int = 5) -> dict[str, list[Sample]]:
    """``train``, ``val``, ``test`` and, when ``fold`` (``run.fold``, 1-based) is set, the held-out ``fold`` of
    ``num_folds``; the inner validation split takes ``val_fraction`` of the training groups, drawn by ``seed``."""
    test = [s for s in samples if s.split == "test"]
    if fold is None:
        dev = [s for s in samples if s.split == "dev"]
        rest = [s for s in samples if s.split not in ("test", "dev")]
        # A test-only annotation file (evaluation of a released checkpoint) has nothing to carve.
        train, val = (rest, dev) if dev or not rest else carve_val(rest, val_fraction, seed)
        return {"train": train, "val": val, "test": test, "fold": []}
    folds = group_folds(cv_pool(samples), num_folds, seed)
    if not 1 <= fold <= len(folds):
        raise ValueError(f"run.fold={fold} is outside 1..{len(folds)} (run.num_folds={num_folds})")
    held = folds[fold - 1]
    rest = [s for k, group in enumerate(folds) if k != fold - 1 for s in group]
    train, val = carve_val(rest, val_fraction, seed)
    return {"train": train, "val": val, "test": test, "fold": held}
