"""Feature statistics of a fresh run: each modality's projector sees standardised features from step 0.

Why: extractors report features in their own units (the demo's librosa statistics spread from 0.01 to 0.9 with
means up to 2.7; its motion energies spread by 0.002), so a projector on raw features learns from a few large
dimensions and hardly the small ones, where the class information may sit; a short run (the demo's) then
lands wherever the data order took it. The training split's per-dimension mean and std go into the model's
``FeatureNorm`` buffers, which every checkpoint carries. (Folding them into the projector's initial weights
instead was tried: Adam then still steps every raw weight alike, so small dimensions stay slow to learn, and
the demo's validation accuracy after 600 steps was 0.59 / 0.44 on folds 1 / 2 against 0.87 / 0.86.)
"""
from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np
import torch

from minigpt4.features.store import FeatureSource
from minigpt4.models.model import EmotionLLaMA

log = logging.getLogger(__name__)
MIN_STD = 1e-6
"""Dimensions that never vary in the training split are only centred (nothing to scale)."""


@torch.no_grad()
def set_feature_norms(model: EmotionLLaMA, features: FeatureSource, sample_ids: Sequence[str],
                      modalities: Iterable[str]) -> list[str]:
    """Set each modality's ``FeatureNorm`` to the training samples' mean and std; return the modalities set."""
    done = []
    for name in modalities:
        if name not in model.feature_norm or not sample_ids:
            continue
        norm = model.feature_norm[name]
        rows = np.concatenate([np.asarray(features.get(name, i), dtype=np.float64).reshape(-1, norm.mean.numel())
                               for i in sample_ids])
        std = rows.std(axis=0)
        std[std < MIN_STD] = 1.0
        norm.mean.copy_(torch.as_tensor(rows.mean(axis=0)))
        norm.std.copy_(torch.as_tensor(std))
        done.append(name)
    if done:
        log.info("features %s standardised with the training split's mean and std (%d samples)",
                 ", ".join(done), len(sample_ids))
    return done
