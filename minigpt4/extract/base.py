"""What every extractor shares: the inputs it reads, the record it returns, and the per-clip driver.

An extractor turns one decoded clip into one modality's ``[tokens, dim]`` float32 feature. It is named (the
name goes into the feature store's manifest with its version and config), so the exact extractors a model was
trained with can be rebuilt for prediction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Mapping

import numpy as np

from minigpt4 import modalities
from minigpt4.extract.faces import FaceTrack, track_faces
from minigpt4.extract.media import DecodedClip, MediaError, decode_clip


@dataclass
class ClipInputs:
    """A decoded clip plus what several extractors need; faces are found once, on first use."""

    clip: DecodedClip
    transcript: str | None = None

    @cached_property
    def faces(self) -> FaceTrack:
        return track_faces(self.clip.frames) if self.clip.frames is not None else FaceTrack([], [], 0)


class Extractor:
    """One modality's feature. Subclasses set the class attributes and implement ``compute``.

    ``defaults`` lists every config key the extractor accepts; unknown keys are an error.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    version: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    frames: ClassVar[int] = 0
    """Frames this extractor wants decoded per clip (0: none)."""
    tokens: ClassVar[int] = 1
    """Rows per clip: every extractor here describes a whole utterance."""

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(self.defaults))
        if unknown:
            raise ValueError(f"extractor {self.name!r}: unknown option(s) {', '.join(unknown)}; accepted: "
                             f"{', '.join(sorted(self.defaults)) or 'none'}")
        self.config = {**self.defaults, **{k: _typed(v, self.defaults[k]) for k, v in config.items()}}
        modalities.get(self.modality)

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def compute(self, inputs: ClipInputs) -> np.ndarray:
        """``[tokens, dim]`` float32; raise ``MediaError`` when the clip lacks what this extractor reads."""
        raise NotImplementedError

    def manifest(self) -> dict[str, Any]:
        return {"extractor": self.name, "version": self.version, "config": dict(self.config), "dim": self.dim,
                "tokens": self.tokens}

    def __call__(self, inputs: ClipInputs) -> np.ndarray:
        """``compute`` plus the checks every feature must pass: shape, finite values, not constant."""
        out = np.asarray(self.compute(inputs), dtype=np.float32)
        if out.ndim == 1:
            out = out[None]
        where = f"{inputs.clip.path}: {self.modality} extractor {self.name!r}"
        if out.shape != (self.tokens, self.dim):
            raise RuntimeError(f"{where} produced shape {out.shape}, expected {(self.tokens, self.dim)}")
        if not np.isfinite(out).all():
            raise MediaError(f"{where}: features contain NaN or infinity")
        if float(np.ptp(out)) == 0.0:
            raise MediaError(f"{where}: features are constant (blank or frozen input)")
        return out


def _typed(value: Any, default: Any) -> Any:
    """Options given as text on the command line take the type of their default."""
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        return type(default)(value)
    return value


@dataclass
class ClipFeatures:
    """One clip's extraction result: features per modality, the frame, and what failed and why."""
    features: dict[str, np.ndarray]
    """modality -> ``[tokens, dim]`` float32, for every extractor that succeeded."""
    failures: dict[str, str] = field(default_factory=dict)
    """modality -> why its extractor could not describe this clip (no face, silent audio, no transcript ...)."""
    face_crop: np.ndarray | None = None
    """The aligned face of the middle frame where one was found (``H x W x 3`` uint8 RGB)."""
    waveform: np.ndarray | None = None
    """16 kHz mono float32 audio."""
    frame: np.ndarray | None = None
    """The clip's first sampled frame (RGB uint8): the image modality's input."""
    face_found: bool = False


def frames_needed(extractors: Mapping[str, Extractor]) -> int:
    return max([e.frames for e in extractors.values()] + [1])


def extract_inputs(inputs: ClipInputs, extractors: Mapping[str, Extractor]) -> ClipFeatures:
    """Run every extractor on one decoded clip; a modality that fails is recorded, the others still run."""
    features, failures = {}, {}
    for modality, extractor in extractors.items():
        try:
            features[modality] = extractor(inputs)
        except MediaError as err:
            failures[modality] = str(err)
    clip = inputs.clip
    faces = inputs.faces
    return ClipFeatures(features, failures, faces.middle(), clip.audio,
                        clip.frames[0] if clip.frames is not None else None, bool(faces.crops))


def extract_clip(path: str, extractors: Mapping[str, Extractor], transcript: str | None = None,
                 **decode: Any) -> ClipFeatures:
    """Decode ``path`` (``MediaError`` if it cannot be) and run ``extractors`` on it.

    ``decode`` passes ``segment`` / ``side`` / ``audio_path`` to ``decode_clip`` for utterances cut from a
    longer recording. The one extraction path: the feature tool, ``predict.py`` and the app all call this.
    """

    clip = decode_clip(path, max_frames=frames_needed(extractors), **decode)
    return extract_inputs(ClipInputs(clip, transcript), extractors)
