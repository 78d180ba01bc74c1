"""Is a served clip like the training data? Its distance from the training split, per feature modality.

Why: a checkpoint answers a clip far outside what it saw (a real interview to a model trained on the synthetic
demo) with the same confidence as a held-out one, so the probabilities alone cannot warn. Every checkpoint
trained with ``model.standardize_features`` already stores its training split's per-dimension mean and std
(``FeatureNorm``); in those units a training clip's features have a root-mean-square of about 1 by
construction. A modality whose RMS lies past ``LIMIT`` flags the clip. Each dimension's |z| is capped at
``Z_CAP`` first, so one dimension that never varied in training (std floored, see ``feature_norms``) cannot
flag a clip alone. ``LIMIT`` was calibrated with ``bench/familiarity.py`` (held-out demo clips against clips
unlike the corpus: other faces, espeak-ng speech, noise; figures in the README).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from minigpt4.models.projectors import FeatureNorm

Z_CAP = 10.0
"""Per-dimension |z| cap before the RMS."""
LIMIT = 3.5
"""RMS of the standardised features above which a modality, and so the clip, is flagged: between the largest
held-out demo clip's (2.72, its motion features) and the smallest unlike clip's (4.44), ``bench/familiarity.py``."""


def is_set(norm: FeatureNorm) -> bool:
    """Whether ``norm`` holds a training split's statistics (it is the identity until set)."""
    return bool(torch.any(norm.mean != 0) or torch.any(norm.std != 1))


def distance(norm: FeatureNorm, features: np.ndarray) -> float:
    """RMS over a clip's rows and dimensions of its standardised features, each |z| capped at ``Z_CAP``."""
    mean, std = norm.mean.double().numpy(), norm.std.double().numpy()
    z = (np.asarray(features, np.float64).reshape(-1, mean.size) - mean) / std
    return float(np.sqrt(np.mean(np.minimum(z * z, Z_CAP ** 2))))


def familiarity(norms: Mapping[str, FeatureNorm], features: Mapping[str, np.ndarray],
                limit: float = LIMIT) -> dict[str, Any] | None:
    """The record's ``out_of_distribution`` entry: per-modality distances, the limit and the flag.

    Only modalities the clip provides and whose statistics the checkpoint stores are measured; with none
    (a checkpoint trained with ``standardize_features: false``, or a converted upstream one) this is None:
    unknown, never "familiar".
    """
    measured = {m: round(distance(norms[m], x), 3) for m, x in features.items() if m in norms and is_set(norms[m])}
    if not measured:
        return None
    far = sorted(m for m, d in measured.items() if d > limit)
    return {"flag": bool(far), "far": far, "distance": measured, "limit": limit}
