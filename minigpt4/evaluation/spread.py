"""Figures over seeds: mean ± std, and whether two settings differ by more than their spread.

Why: a single run of these recipes moves with tiny numerical differences (another CPU's SIMD kernels change
the last bits of the extracted features and of every training step; see the README's reproducibility
section), so a claim that one setting beats another holds only when the gap exceeds the seed-to-seed spread.
The rule here: two settings tie unless ``|mean_a - mean_b|`` exceeds ``sqrt(std_a² + std_b²)`` (the spread
of the difference of one run of each), and a setting with fewer than ``MIN_SEEDS`` runs is no comparison.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from minigpt4.evaluation.report import mean_std

MIN_SEEDS = 3
"""Runs (seeds) a setting needs before it is compared with another."""


@dataclass(frozen=True)
class Spread:
    """A metric over seeds (sample std, ddof=1)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one value")
        stats = mean_std(values)
        return cls(stats["mean"], stats["std"], stats["n"])

    def cell(self, digits: int = 3) -> str:
        """``0.879 ± 0.041``; a single value is labelled as a single run (it has no spread)."""
        if self.n < 2:
            return f"{self.mean:.{digits}f} (single run)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def verdict(candidate: Spread, reference: Spread) -> str:
    """``higher`` / ``lower`` / ``tie`` of ``candidate`` against ``reference``; ``not compared`` when either
    has fewer than :data:`MIN_SEEDS` runs."""
    if min(candidate.n, reference.n) < MIN_SEEDS:
        return "not compared"
    gap = candidate.mean - reference.mean
    if abs(gap) <= math.hypot(candidate.std, reference.std):
        return "tie"
    return "higher" if gap > 0 else "lower"


def comparison_table(rows: Sequence[tuple[str, Spread]], metric: str, digits: int = 3) -> list[str]:
    """Markdown lines: each setting's mean ± std and its difference from the first row, with the verdict."""
    if not rows:
        raise ValueError("a comparison table needs at least one setting")
    _, reference = rows[0]
    lines = [f"| setting | runs | {metric} | difference from `{rows[0][0]}` | verdict |", "|---|---|---|---|---|"]
    for i, (name, value) in enumerate(rows):
        diff = "" if i == 0 else f"{value.mean - reference.mean:+.{digits}f}"
        lines.append(f"| {name} | {value.n} | {value.cell(digits)} | {diff} | "
                     f"{'reference' if i == 0 else verdict(value, reference)} |")
    return lines
