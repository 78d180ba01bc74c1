"""The table of every extractor by name, the zero-download defaults, and building extractors from a spec."""
from __future__ import annotations

from typing import Any, Mapping

from minigpt4.extract.acoustic import AcousticStats
from minigpt4.extract.base import Extractor
from minigpt4.extract.expression import FaceExpression
from minigpt4.extract.motion import MotionStats
from minigpt4.extract.text import MiniLMText
from minigpt4.extract.upstream import FaceMAE, HubertAudio, VideoMAEVideo

EXTRACTORS: dict[str, type[Extractor]] = {cls.name: cls for cls in (
    AcousticStats, FaceExpression, MotionStats, MiniLMText, HubertAudio, VideoMAEVideo, FaceMAE)}
DEFAULTS: dict[str, str] = {"audio": "librosa", "face": "fer", "video": "motion", "text": "minilm"}
"""Zero-download extractor per modality."""


def build_extractors(spec: Mapping[str, Any] | None = None) -> dict[str, Extractor]:
    """modality -> extractor from ``spec``: each value is an extractor name or ``{"extractor": name, **config}``.

    ``None`` gives ``DEFAULTS``. The extractor must fill the modality it is listed under.
    """
    out: dict[str, Extractor] = {}
    for modality, entry in (DEFAULTS if spec is None else spec).items():
        config = dict(entry) if isinstance(entry, Mapping) else {"extractor": entry}
        name = config.pop("extractor", None)
        if name not in EXTRACTORS:
            raise ValueError(f"{modality}: unknown extractor {name!r}; known: {', '.join(EXTRACTORS)}")
        cls = EXTRACTORS[name]
        if cls.modality != modality:
            raise ValueError(f"extractor {name!r} describes {cls.modality}, not {modality}")
        out[modality] = cls(**config)
    return out


def parse_spec(text: str, options: list[str] = ()) -> dict[str, dict[str, Any]]:
    """``audio=librosa,face=fer`` plus ``audio.path=/models/hubert`` options -> a ``build_extractors`` spec."""
    spec: dict[str, dict[str, Any]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        modality, sep, name = part.partition("=")
        if not sep or not name:
            raise ValueError(f"--extractors {text!r}: expected modality=extractor pairs, e.g. audio=librosa,face=fer")
        spec[modality] = {"extractor": name}
    for option in options:
        key, sep, value = option.partition("=")
        modality, dot, field = key.partition(".")
        if not sep or not dot or modality not in spec:
            raise ValueError(f"extractor option {option!r}: expected <modality>.<option>=<value> for a modality "
                             f"listed in --extractors ({', '.join(spec)})")
        spec[modality][field] = value
    return spec
