"""``load_corpus``: read a corpus (MERR / MER2023 / IEMOCAP / MELD / ECF / demo) into samples plus features.

Every reader returns the same ``Sample`` records; this module adds what is common: the feature source
(packed store, per-sample folders, text embeddings), the frame source, and one presence check of every file
the requested modalities need, so a missing file fails (or is skipped and reported) at load time, not
mid-epoch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from omegaconf import OmegaConf

from minigpt4 import modalities as registry
from minigpt4.config import DataConfig
from minigpt4.data.corpora import demo, ecf, iemocap, meld, merr
from minigpt4.data.corpora.common import (
    CorpusError,
    ReadResult,
    check_unique,
    label_setup,
    resolve,
)
from minigpt4.data.frames import FrameReader
from minigpt4.data.labels import LabelSet, get_label_set
from minigpt4.data.samples import Sample
from minigpt4.data.text_features import DIM, text_feature_store
from minigpt4.extract.store import read_manifest
from minigpt4.features.store import (
    FeatureSource,
    NpyFolderFeatures,
    PackedFeatureStore,
    RoutedFeatures,
)
from minigpt4.modalities import FEATURE_MODALITIES, MODALITIES

__all__ = ["Corpus", "CorpusError", "label_set_of", "load_corpus", "READERS"]

READERS: dict[str, Callable[[Any], ReadResult]] = {
    "merr": merr.read_merr,
    "mer2023": merr.read_mer2023,
    "iemocap": iemocap.read,
    "meld": meld.read,
    "ecf": ecf.read,
    "demo": demo.read,
}
MAX_LISTED = 10


@dataclass
class Corpus:
    """A loaded corpus: samples, their features and frames, and the samples dropped with the reason."""
    name: str
    label_set: LabelSet
    """The label set of the chosen label setup (``iemocap_4class``, ``meld``, ``merr``, ``demo`` ...)."""
    samples: list[Sample]
    features: FeatureSource
    skipped: list[tuple[str, str]]
    """(sample id, reason) of samples dropped because a needed file is missing (``on_missing: skip``)."""
    frames: FrameReader = field(default_factory=FrameReader)
    """Source of the image modality (packed frames from the feature store, else decoded from media)."""
    excluded: dict[str, int] = field(default_factory=dict)
    """Utterances the label setup leaves out (e.g. IEMOCAP ``xxx``): reason -> count."""

def store_path(data_cfg: DataConfig) -> Path | None:
    """The packed feature store a run reads: ``data.feature_store`` (relative to the corpus root), else the
    corpus's own (the demo corpus ships one extracted from its media). Computed without generating anything."""
    store = data_cfg.feature_store
    name = data_cfg.corpus
    root_value = data_cfg.root
    root = demo.location(data_cfg) if name == "demo" else Path(root_value).expanduser() if root_value else None
    if store:
        return resolve(root, store) if root is not None else Path(store)
    return root / demo.STORE if name == "demo" else None


def recorded_dims(data_cfg: DataConfig) -> dict[str, Any]:
    """modality -> width recorded in the run's feature store manifest (plus ``__store__``: its path); the demo
    corpus's store, not generated yet, is made by known extractors. Empty when nothing is recorded."""

    if any(OmegaConf.is_missing(data_cfg, k) for k in ("corpus", "root", "feature_store")
           if OmegaConf.is_config(data_cfg)):
        return {}
    store = store_path(data_cfg)
    if store is not None and (store / "manifest.json").is_file():
        entries = read_manifest(store)["modalities"]
        return {"__store__": str(store), **{m: int(e["dim"]) for m, e in entries.items() if e["stored"]}}
    if data_cfg.corpus == "demo" and not data_cfg.feature_store:
        return {"__store__": str(store), **demo.store_dims()}
    return {}


def _features(data_cfg: DataConfig, result: ReadResult, root: Path | None, dims: Mapping[str, int] | None) -> FeatureSource:
    store = store_path(data_cfg)
    if store is not None:
        return PackedFeatureStore(store, dims)
    dirs = dict(result.feature_dirs)
    for modality, folder in dict(data_cfg.feature_dirs or {}).items():
        if modality not in FEATURE_MODALITIES:
            raise CorpusError(f"data.feature_dirs names unknown modality {modality!r}; "
                              f"expected {', '.join(FEATURE_MODALITIES)}")
        dirs[modality] = resolve(root, folder) if root is not None else Path(folder)
    return NpyFolderFeatures(dirs, dims)


def _missing(samples: list[Sample], modalities: Sequence[str], features: FeatureSource,
             frames: FrameReader) -> dict[str, str]:
    """Sample id -> what is missing, checking each needed file once."""
    missing: dict[str, str] = {}
    for sample in samples:
        for modality in modalities:
            if registry.get(modality).source == "frame":
                known = sample.meta.get("known_bad")  # a corrupt clip is present but unusable
                if known or not frames.has(sample):
                    missing[sample.id] = f"{modality}: media {frames.describe(sample)} " + (known or "not found")
                    break
            elif not features.has(modality, sample.id):
                missing[sample.id] = f"{modality}: {features.describe(modality, sample.id)} not found"
                break
    return missing


def load_corpus(data_cfg: DataConfig, modalities: Sequence[str], dims: Mapping[str, int] | None = None,
                cached_text: bool = True) -> Corpus:
    """Read ``data_cfg.corpus`` and check that every file ``modalities`` need is present.

    ``dims`` (modality -> feature width, from ``model.features.<m>.dim``) validates feature arrays. With
    ``data.on_missing: skip`` samples lacking a needed file are dropped and listed in ``Corpus.skipped``;
    with ``error`` the first missing files are named in the error. ``text`` features are sentence embeddings
    of the transcripts, computed once and cached (``minigpt4.features.minilm``), unless ``cached_text`` is False
    (a trainable text encoder reads the transcripts itself).
    """
    name = data_cfg.corpus
    if name not in READERS:
        raise CorpusError(f"data.corpus={name!r}: expected one of {', '.join(READERS)}")
    for modality in modalities:
        if modality not in MODALITIES:
            raise CorpusError(f"unknown modality {modality!r}; expected {', '.join(MODALITIES)}")
    result = READERS[name](data_cfg)
    check_unique(result.samples, f"corpus {name}")
    root = demo.root(data_cfg) if name == "demo" else Path(data_cfg.root).expanduser()
    features = _features(data_cfg, result, root, dims)
    frames = FrameReader(str(data_cfg.frame), store_path(data_cfg))
    if "text" in modalities and cached_text:
        if dims and dims.get("text", DIM) != DIM:
            raise CorpusError(f"model.features.text.dim={dims['text']}, but text features are all-MiniLM-L6-v2 "
                              f"sentence embeddings of width {DIM}")

        features = RoutedFeatures({"text": text_feature_store(result.samples)}, fallback=features)

    missing = _missing(result.samples, [m for m in modalities if registry.get(m).source != "transcript"], features, frames)
    skipped: list[tuple[str, str]] = []
    if missing:
        if data_cfg.on_missing != "skip":
            listed = "\n  ".join(f"{sid}: {why}" for sid, why in list(missing.items())[:MAX_LISTED])
            more = f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
            raise CorpusError(f"corpus {name}: {len(missing)} sample(s) lack a file needed by modalities "
                              f"{list(modalities)} (set data.on_missing=skip to drop and report them):\n  "
                              f"{listed}{more}")
        skipped = list(missing.items())
    samples = [s for s in result.samples if s.id not in missing]
    if not samples:
        raise CorpusError(f"corpus {name}: no samples left (read {len(result.samples)}, skipped {len(skipped)})")
    return Corpus(name, result.label_set, samples, features, skipped, frames, result.excluded)


def label_set_of(data_cfg: DataConfig) -> LabelSet:
    """The label set ``data.corpus`` + ``data.labels`` give, without reading the corpus (serving a checkpoint
    needs its labels, not its training data); the same setup names the readers accept."""
    name = data_cfg.corpus
    if name not in READERS:
        raise CorpusError(f"data.corpus={name!r}: expected one of {', '.join(READERS)}")
    if name == "iemocap":
        setup = label_setup(data_cfg, {"default": "4class", **{k: k for k in iemocap.SETUPS}}, name)
        return get_label_set(iemocap.SETUPS[setup][0])
    if name == "demo":
        label_setup(data_cfg, {"default": "4class", "4class": "4class"}, name)
        return get_label_set("demo")
    return get_label_set(label_setup(data_cfg, {"default": name, name: name}, name))
