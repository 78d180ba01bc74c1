"""The one modality registry: every modality the model can read, and everything the code needs to know about it.

Each entry says which prompt slot it fills, its placeholder, where it sits in the prompt, where its width comes
from, where its values come from, which upstream projector it maps to and where upstream corpora keep its
per-sample ``.npy`` folders. Nothing else in the code lists modality names: prompts, the model, the config
schema, corpus readers, the upstream checkpoint converter and the extraction tool all read this table.
Adding a modality is one entry here (plus, for a new source kind, the code that reads it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

SOURCES = ("frame", "frame-cls", "store", "transcript")
"""Where values come from: ``frame`` (one video frame through the frame encoder), ``frame-cls`` (the frame
encoder's CLS token, present whenever the frame is), ``store`` (a feature array per sample id, from a feature
store or per-sample folders) and ``transcript`` (a sentence embedding of the transcript: cached frozen MiniLM, or MiniLM run in ``forward`` on
the tokenised transcript and dialogue context when ``model.text_encoder.enabled``)."""


@dataclass(frozen=True)
class Modality:
    """One modality the model can read: its slot, placeholder, source, width and upstream key."""
    name: str
    source: str
    """One of ``SOURCES``."""
    block: str
    """Prompt block holding the placeholder: ``video`` (``<video>..</video>``) or ``feature``."""
    order: int
    """Position inside its block (upstream: face, video, audio, EVA CLS, then the transcript embedding)."""
    dim: int | None
    """Default feature width (``model.features.<name>.dim``); None: set by the frame encoder."""
    upstream_projector: str | None = None
    """Parameter prefix of this modality's projector in upstream Emotion-LLaMA checkpoints."""
    folders: Mapping[str, str] = field(default_factory=dict)
    """Upstream per-sample ``<id>.npy`` folder by corpus layout (``merr``, ``scr``, ``meld``)."""
    follows: str | None = None
    """A modality present exactly when ``follows`` is (the CLS token rides with the frame)."""

    @property
    def placeholder(self) -> str:
        return f"<{self.name.capitalize()}Here>"


REGISTRY: tuple[Modality, ...] = (
    Modality("image", "frame", "video", 0, None, "llama_proj"),
    Modality("cls", "frame-cls", "feature", 3, None, "cls_tk_llama_proj", follows="image"),
    Modality("face", "store", "feature", 0, 1024, "feats_llama_proj1",
             {"merr": "mae_340_UTT", "scr": "mae_features", "meld": "features/face"}),
    Modality("video", "store", "feature", 1, 1024, "feats_llama_proj2",
             {"merr": "maeV_399_UTT", "scr": "maeV_features", "meld": "features/video"}),
    Modality("audio", "store", "feature", 2, 1024, "feats_llama_proj3",
             {"merr": "HL-UTT", "scr": "hubert_features", "meld": "features/audio"}),
    Modality("text", "transcript", "feature", 4, 384),
)
"""In slot order: the slot id of ``REGISTRY[i]`` is ``i + 1`` (0 marks text tokens in a prompt)."""

BY_NAME: dict[str, Modality] = {m.name: m for m in REGISTRY}
SLOTS: tuple[str, ...] = tuple(m.name for m in REGISTRY)
SLOT_IDS: dict[str, int] = {m.name: i + 1 for i, m in enumerate(REGISTRY)}
MODALITIES: tuple[str, ...] = tuple(m.name for m in REGISTRY if m.follows is None)
"""What ``data.modalities`` may name (modalities that follow another are implied by it)."""
FEATURE_MODALITIES: tuple[str, ...] = tuple(m.name for m in REGISTRY if m.source in ("store", "transcript"))
"""Modalities with a feature array per sample and a ``model.features`` entry."""
STORE_MODALITIES: tuple[str, ...] = tuple(m.name for m in REGISTRY if m.source == "store")
"""Modalities read from a feature store (what ``datasets/extract_features.py`` extracts from media)."""


def get(name: str) -> Modality:
    if name not in BY_NAME:
        raise KeyError(f"unknown modality {name!r}; known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def block_order(block: str) -> tuple[str, ...]:
    """Modality names inside one prompt block, in prompt order."""
    return tuple(m.name for m in sorted((m for m in REGISTRY if m.block == block), key=lambda m: m.order))


def with_followers(names: object) -> set[str]:
    """``names`` plus every modality that follows one of them (``image`` brings ``cls``)."""
    wanted = set(names)  # type: ignore[arg-type]
    return wanted | {m.name for m in REGISTRY if m.follows in wanted}


def default_dims() -> dict[str, int]:
    """Default ``model.features``: every feature modality with its registry width."""
    return {name: BY_NAME[name].dim for name in FEATURE_MODALITIES}  # type: ignore[misc]


def upstream_projectors() -> dict[str, str]:
    """Upstream projector prefix -> our modality name (for converting upstream checkpoints)."""
    return {m.upstream_projector: m.name for m in REGISTRY if m.upstream_projector}


def folder_defaults(layout: str) -> dict[str, str]:
    """Modality -> default per-sample feature folder of an upstream corpus layout (relative to its root)."""
    return {m.name: m.folders[layout] for m in REGISTRY if layout in m.folders}
