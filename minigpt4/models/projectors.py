"""Per-modality projectors into the LLM width (upstream: one Linear each; ``mlp`` is the LLaVA-1.5 variant), and the
feature standardisation in front of each (statistics of the training split, saved with the weights)."""
from __future__ import annotations

import torch
from torch import nn


def make_projector(kind: str, in_dim: int, out_dim: int, hidden: int = 0) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        hidden = hidden or out_dim
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
    raise ValueError(f"unknown projector kind {kind!r}; expected linear or mlp")


class FeatureNorm(nn.Module):
    """Per-dimension standardisation of one modality's features before its projector: ``(x - mean) / std``.

    Why: extractors report features in their own units (spreads from 0.002 to 0.9 side by side), and a
    projector learns from a few large dimensions only; set from the training split (``feature_norms``) it
    lets the projector learn in standardised coordinates. The statistics are buffers saved in every
    checkpoint with the trainable weights, so evaluation and prediction apply exactly what training used.
    Identity until set (upstream checkpoints and models built for conversion keep raw features).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
