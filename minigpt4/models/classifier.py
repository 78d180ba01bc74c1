"""``model.head: classifier``: the fused modality tokens, mean-pooled, into a linear or MLP head.

Single-label: softmax + cross-entropy. Multi-label: sigmoid + binary cross-entropy, with one decision threshold
per class tuned on the validation split (``tune_thresholds``) and saved with the checkpoint.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassifierHead(nn.Module):
    """Pooled modality tokens -> label logits: softmax for single-label, sigmoid with per-class
    thresholds (tuned on validation, saved as a buffer) for multi-label."""
    def __init__(self, width: int, hidden: int, num_labels: int, dropout: float, multi_label: bool) -> None:
        super().__init__()
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, hidden), nn.GELU(),
                                                nn.Dropout(dropout), nn.Linear(hidden, num_labels))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_labels))
        self.multi_label = multi_label
        self.register_buffer("thresholds", torch.full((num_labels,), 0.5))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[b, n, width]`` modality tokens -> ``[b, labels]`` logits."""
        return self.net(tokens.mean(dim=1))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """Mean loss over samples, each weighted by ``weight`` (class balancing) when given."""
        if self.multi_label:
            per_sample = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none").mean(-1)
        else:
            per_sample = F.cross_entropy(logits.float(), targets.argmax(-1), reduction="none")
        if weight is None:
            return per_sample.mean()
        return (per_sample * weight).sum() / weight.sum().clamp(min=1e-8)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float()) if self.multi_label else torch.softmax(logits.float(), dim=-1)

    def decide(self, probs: torch.Tensor) -> torch.Tensor:
        """Boolean ``[b, labels]``: the argmax (single-label), or every class over its threshold plus the argmax
        (multi-label: a prediction is never empty)."""
        top = F.one_hot(probs.argmax(-1), probs.shape[-1]).bool()
        return top if not self.multi_label else top | (probs > self.thresholds.to(probs.device))


def tune_thresholds(probs: torch.Tensor, targets: torch.Tensor, grid: int = 19) -> torch.Tensor:
    """Per class, the threshold in ``{0.05, 0.10, ..., 0.95}`` with the best F1 on (validation) ``probs``.

    Ties go to the threshold nearest 0.5, so a class never seen in validation keeps 0.5.
    """
    candidates = torch.linspace(0.05, 0.95, grid)
    predicted = probs.unsqueeze(0) > candidates.view(-1, 1, 1)  # [grid, n, labels]
    gold = targets.bool().unsqueeze(0)
    tp = (predicted & gold).sum(1).float()
    f1 = 2 * tp / (predicted.sum(1) + gold.sum(1)).clamp(min=1)
    nearness = -(candidates - 0.5).abs().unsqueeze(1) * 1e-6
    return candidates[(f1 + nearness).argmax(0)]
