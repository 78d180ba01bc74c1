"""The one record type every corpus reader returns; nothing downstream knows which corpus it came from."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One utterance of any corpus: labels, transcript, reason, group, media and dialogue context."""
    id: str
    """Unique in its corpus; the split is part of the id where raw ids repeat across splits (MELD)."""
    labels: tuple[str, ...]
    """Canonical label names; the first is the primary label, more than one means multi-label."""
    text: str | None = None
    """Transcript of the utterance."""
    reason: str | None = None
    """Explanation used as the answer of the ``reason`` task (MERR)."""
    group: str | None = None
    """What folds split on: IEMOCAP session, MELD dialogue, demo session."""
    media: str | None = None
    """Video or frame file for the image modality."""
    context: tuple[str, ...] = ()
    """Earlier utterances of the same dialogue, oldest first, each as ``speaker: text``."""
    following: tuple[str, ...] = ()
    """Later utterances of the same dialogue, nearest first, as ``speaker: text`` (MELD, IEMOCAP)."""
    speaker: str | None = None
    """Who says the utterance (dialogue corpora); the text encoder reads ``speaker: text``."""
    split: str | None = None
    """Split given by the corpus itself (``train``/``dev``/``test``), None where the corpus has none."""
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    """Corpus-specific extras (valence, vote counts, speaker); never needed downstream."""

    @property
    def label(self) -> str:
        return self.labels[0]
