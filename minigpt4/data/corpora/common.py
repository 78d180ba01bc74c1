"""What every corpus reader shares: its result record, its error type and small parsing helpers."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import OmegaConf

from minigpt4.config import DataConfig
from minigpt4.data.labels import LabelSet
from minigpt4.data.samples import Sample
from minigpt4.runtime.errors import UserError


class CorpusError(UserError, ValueError):
    """Bad corpus input: the message names the file, the line or sample, and what was expected."""

@dataclass
class ReadResult:
    """What a reader hands to ``load_corpus``: samples plus where the corpus keeps its feature folders."""

    samples: list[Sample]
    label_set: LabelSet
    feature_dirs: dict[str, Path]
    """Default per-sample ``<id>.npy`` folder of each feature modality (``data.feature_dirs`` overrides)."""
    excluded: dict[str, int] = field(default_factory=dict)
    """Utterances left out by the label setup itself (e.g. IEMOCAP ``xxx``, classes outside 4-class): reason ->
    count. These are protocol choices, not missing files, so they are counted rather than listed."""

def options(data_cfg: DataConfig, allowed: Mapping[str, Any], corpus: str) -> dict[str, Any]:
    """``data.options`` merged over the reader's defaults; an unknown key is an error (typos fail loudly)."""
    given = data_cfg.options or {}
    if hasattr(given, "items") and not isinstance(given, dict):
        given = OmegaConf.to_container(given, resolve=True)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise CorpusError(f"data.options for corpus {corpus!r}: unknown key(s) {', '.join(unknown)}; "
                          f"accepted: {', '.join(sorted(allowed))}")
    return {**allowed, **given}


def label_setup(data_cfg: DataConfig, accepted: Mapping[str, str], corpus: str) -> str:
    """Resolve ``data.labels`` (``default`` or a named setup) to a setup name of this corpus."""
    name = data_cfg.labels or "default"
    if name not in accepted:
        raise CorpusError(f"data.labels={name!r} is not a label setup of corpus {corpus!r}; "
                          f"expected one of {', '.join(accepted)}")
    return accepted[name]


def root_dir(data_cfg: DataConfig, corpus: str) -> Path:
    root = data_cfg.root
    if not root:
        raise CorpusError(f"data.root is required for corpus {corpus!r} (the folder holding its files)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise CorpusError(f"data.root for corpus {corpus!r}: folder not found: {path}")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise CorpusError(f"{what} not found: expected file {path}")
    return path


def check_fields(row: Mapping[str | None, Any], fieldnames: Sequence[str], path: Path, line: int) -> None:
    """A ``csv.DictReader`` row must have exactly the header's field count.

    A row with a field missing is otherwise read shifted (every later value lands in the wrong column: the
    sentiment becomes the label, the utterance number the dialogue), and one with an extra field loses it.
    """
    extra = list(row.get(None) or [])
    missing = sum(value is None for key, value in row.items() if key is not None)
    if extra or missing:
        first = next(iter(row.values()))
        raise CorpusError(f"{path}:{line}: row starting {first!r} has {len(fieldnames) - missing + len(extra)} "
                          f"field(s), the header has {len(fieldnames)}; a field is missing or a comma is not quoted")


def check_unique(samples: Iterable[Sample], source: str) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise CorpusError(f"{source}: duplicate sample id {sample.id!r}")
        seen.add(sample.id)


def resolve(root: Path, path: str | Path) -> Path:
    """A configured path: absolute as given, relative to the corpus root otherwise."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def context_line(speaker: str | None, text: str) -> str:
    """One earlier utterance as quoted in the prompt's dialogue context."""
    return f"{speaker}: {text}" if speaker else text
