"""The ``text`` modality from a transcript: the packaged all-MiniLM-L6-v2 sentence embedding (384)."""
from __future__ import annotations

from typing import Any

import numpy as np

from minigpt4.extract.base import ClipInputs, Extractor
from minigpt4.extract.media import MediaError
from minigpt4.features.minilm import DIM, embed_texts


class MiniLMText(Extractor):
    """Same embedding the training pipeline caches for transcripts (``minigpt4.features.minilm``)."""

    name = "minilm"
    modality = "text"
    version = "1"
    defaults: dict[str, Any] = {}

    @property
    def dim(self) -> int:
        return DIM

    def compute(self, inputs: ClipInputs) -> np.ndarray:
        if not inputs.transcript:
            raise MediaError(f"{inputs.clip.path}: no transcript given for the text modality")
        return embed_texts([inputs.transcript])
