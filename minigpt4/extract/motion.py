"""Zero-download ``video`` feature: how the picture moves and what colour it has over the sampled frames.

Grey frames at 64x64: mean absolute frame-to-frame difference in a 4x4 grid (mean and standard deviation
over time: where and how much things move), overall motion, colour means and spreads, and brightness
variation over time. A blank or frozen video gives constant values and is reported, not stored.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from minigpt4.extract.base import ClipInputs, Extractor
from minigpt4.extract.media import MediaError

GRID = 4
SIZE = 64


class MotionStats(Extractor):
    """Grid motion energy and colour statistics over the sampled frames (43 values)."""

    name = "motion"
    modality = "video"
    version = "1"
    frames = 16
    defaults: dict[str, Any] = {}

    @property
    def dim(self) -> int:
        return 2 * GRID * GRID + 1 + 3 + 3 + 3 + 1

    def compute(self, inputs: ClipInputs) -> np.ndarray:
        clip = inputs.clip
        if clip.frames is None:
            raise MediaError(f"{clip.path}: no video stream")
        small = np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for f in clip.frames])
        small = small.astype(np.float32) / 255.0
        grey = small.mean(-1)
        if len(grey) > 1:
            diff = np.abs(np.diff(grey, axis=0))
            cells = diff.reshape(len(diff), GRID, SIZE // GRID, GRID, SIZE // GRID).mean(axis=(2, 4)).reshape(
                len(diff), -1) * 10.0
        else:
            cells = np.zeros((1, GRID * GRID), np.float32)
        colour = small.reshape(len(small), -1, 3)
        return np.concatenate([
            cells.mean(0), cells.std(0), [cells.mean()],
            colour.mean(axis=(0, 1)), colour.std(axis=1).mean(0), colour.mean(axis=1).std(0) * 10.0,
            [grey.mean(axis=(1, 2)).std() * 10.0],
        ])[None]
