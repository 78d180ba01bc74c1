"""Per-modality projectors into the LLM width (upstream: one Linear each; ``mlp`` is the LLaVA-1.5 variant)."""
from __future__ import annotations

from torch import nn


def make_projector(kind: str, in_dim: int, out_dim: int, hidden: int = 0) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        hidden = hidden or out_dim
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
    raise ValueError(f"unknown projector kind {kind!r}; expected linear or mlp")
