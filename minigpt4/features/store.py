"""Precomputed per-utterance features, keyed by sample id, one array per modality.

Two sources serve the same ``get(modality, sample_id)`` call:

- ``NpyFolderFeatures`` reads upstream's per-sample ``<id>.npy`` folders (``mae_340_UTT/`` ...) directly and
  validates every array it returns;
- ``PackedFeatureStore`` reads one memory-mapped ``<modality>.npy`` per modality plus ``index.json``
  (id -> row offset, row count), written once by ``pack_features``; its rows were validated when packed, so
  the hot path is a slice.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from tqdm import tqdm

from minigpt4.runtime.errors import UserError

STORE_FORMAT = "emotion-llama-features-v1"
INDEX_FILE = "index.json"
FRAMES_FORMAT = "emotion-llama-frames-v1"
"""Format tag of packed frames (``frames-<which>.npy`` + index), written by extraction and ``pack_frames``."""


class FeatureError(UserError, ValueError):
    """A feature file or store entry that is missing or not what the configuration expects."""


def default_cache_dir() -> Path:
    """Where generated data (demo corpus, text embeddings) lives: ``$EMOTION_LLAMA_CACHE`` or
    ``~/.cache/emotion-llama``."""
    return Path(os.environ.get("EMOTION_LLAMA_CACHE") or Path.home() / ".cache" / "emotion-llama")


@runtime_checkable
class FeatureSource(Protocol):
    """Anything that returns a float32 ``[T, D]`` array (T >= 1) per modality and sample id."""

    def get(self, modality: str, sample_id: str) -> np.ndarray: ...

    def has(self, modality: str, sample_id: str) -> bool: ...

    def describe(self, modality: str, sample_id: str) -> str:
        """Where the entry lives (a file path or store entry), for error messages."""
        ...


def validate_array(array: np.ndarray, modality: str, sample_id: str, where: str, dim: int | None) -> np.ndarray:
    """Return ``array`` as float32 ``[T, D]``; raise naming the sample, the file and what was expected."""
    if not np.issubdtype(array.dtype, np.floating):
        raise FeatureError(f"{modality} feature of sample {sample_id!r} in {where}: dtype {array.dtype}, "
                           "expected a floating-point array")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] < 1:
        raise FeatureError(f"{modality} feature of sample {sample_id!r} in {where}: shape {array.shape}, "
                           f"expected (D,) or (T, D) with T >= 1" + (f" and D = {dim}" if dim else ""))
    if dim is not None and array.shape[1] != dim:
        raise FeatureError(f"{modality} feature of sample {sample_id!r} in {where}: dimension {array.shape[1]}, "
                           f"expected {dim} (model.features.{modality}.dim)")
    array = np.asarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise FeatureError(f"{modality} feature of sample {sample_id!r} in {where}: contains NaN or infinity")
    return array


class NpyFolderFeatures:
    """Upstream layout: one folder per modality holding ``<sample id>.npy`` (``(D,)`` or ``(T, D)``)."""

    def __init__(self, dirs: Mapping[str, str | Path], dims: Mapping[str, int] | None = None) -> None:
        self.dirs = {m: Path(d) for m, d in dirs.items()}
        self.dims = dict(dims or {})

    def path(self, modality: str, sample_id: str) -> Path:
        if modality not in self.dirs:
            raise FeatureError(f"no feature folder configured for modality {modality!r} "
                               f"(configured: {', '.join(self.dirs) or 'none'}); set data.feature_dirs.{modality}")
        return self.dirs[modality] / f"{sample_id}.npy"

    def has(self, modality: str, sample_id: str) -> bool:
        return modality in self.dirs and self.path(modality, sample_id).is_file()

    def describe(self, modality: str, sample_id: str) -> str:
        return str(self.path(modality, sample_id))

    def get(self, modality: str, sample_id: str) -> np.ndarray:
        path = self.path(modality, sample_id)
        if not path.is_file():
            raise FeatureError(f"{modality} feature of sample {sample_id!r} is missing: expected file {path}")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:  # EOFError: an empty or truncated file
            raise FeatureError(f"{modality} feature of sample {sample_id!r}: cannot read {path} "
                               f"({type(err).__name__}: {err}); expected a .npy [T, D] float32 array") from None
        return validate_array(array, modality, sample_id, str(path), self.dims.get(modality))


class PackedFeatureStore:
    """One memory-mapped ``<modality>.npy`` ``[rows, D]`` per modality and ``index.json`` id -> (offset, length).

    Opening checks the format, the dimensions against ``dims`` and that every file is present; rows were
    validated (shape, dtype, finiteness) when the store was packed.
    """

    def __init__(self, folder: str | Path, dims: Mapping[str, int] | None = None) -> None:
        self.folder = Path(folder)
        index_path = self.folder / INDEX_FILE
        if not index_path.is_file():
            raise FeatureError(f"feature store {self.folder}: {INDEX_FILE} not found "
                               "(build one with datasets/pack_features.py)")
        index = json.loads(index_path.read_text())
        if index.get("format") != STORE_FORMAT:
            raise FeatureError(f"feature store {index_path}: format {index.get('format')!r}, expected {STORE_FORMAT!r}")
        self._arrays: dict[str, np.ndarray] = {}
        self._ids: dict[str, dict[str, tuple[int, int]]] = {}
        for modality, entry in index["modalities"].items():
            path = self.folder / entry["file"]
            if not path.is_file():
                raise FeatureError(f"feature store {self.folder}: {modality} data file {path} is missing")
            try:
                array = np.load(path, mmap_mode="r")
            except (ValueError, OSError, EOFError) as err:
                raise FeatureError(f"feature store {self.folder}: cannot read {modality} data file {path} "
                                   f"({type(err).__name__}: {err}); pack the store again") from None
            if array.ndim != 2 or array.dtype != np.float32:
                raise FeatureError(f"feature store {path}: shape {array.shape} dtype {array.dtype}, "
                                   "expected a 2-d float32 array")
            expected = (dims or {}).get(modality)
            if expected is not None and array.shape[1] != expected:
                raise FeatureError(f"feature store {path}: {modality} dimension {array.shape[1]}, expected {expected} "
                                   f"(model.features.{modality}.dim)")
            self._arrays[modality] = array
            self._ids[modality] = {k: (int(v[0]), int(v[1])) for k, v in entry["ids"].items()}

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self._arrays)

    def ids(self, modality: str) -> list[str]:
        return list(self._ids.get(modality, {}))

    def has(self, modality: str, sample_id: str) -> bool:
        return sample_id in self._ids.get(modality, {})

    def describe(self, modality: str, sample_id: str) -> str:
        return f"feature store {self.folder} ({modality}.npy, id {sample_id!r})"

    def get(self, modality: str, sample_id: str) -> np.ndarray:
        if modality not in self._arrays:
            raise FeatureError(f"feature store {self.folder} has no {modality!r} features "
                               f"(it holds: {', '.join(self._arrays) or 'none'})")
        try:
            offset, length = self._ids[modality][sample_id]
        except KeyError:
            raise FeatureError(f"{modality} feature of sample {sample_id!r} is missing from feature store "
                               f"{self.folder}") from None
        return np.array(self._arrays[modality][offset:offset + length])


class RoutedFeatures:
    """One source per modality (e.g. audio/face/video from a store, text from the embedding cache)."""

    def __init__(self, sources: Mapping[str, FeatureSource], fallback: FeatureSource | None = None) -> None:
        self.sources = dict(sources)
        self.fallback = fallback

    def _source(self, modality: str) -> FeatureSource:
        source = self.sources.get(modality, self.fallback)
        if source is None:
            raise FeatureError(f"no feature source for modality {modality!r}")
        return source

    def get(self, modality: str, sample_id: str) -> np.ndarray:
        return self._source(modality).get(modality, sample_id)

    def has(self, modality: str, sample_id: str) -> bool:
        return self._source(modality).has(modality, sample_id)

    def describe(self, modality: str, sample_id: str) -> str:
        return self._source(modality).describe(modality, sample_id)


def write_store(out_dir: str | Path, arrays: Mapping[str, Mapping[str, np.ndarray]]) -> PackedFeatureStore:
    """Write ``{modality: {sample id: [T, D] float32}}`` as a packed store, atomically (temp folder, rename).

    An existing store at ``out_dir`` is replaced only after the new one is complete.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        index: dict = {"format": STORE_FORMAT, "modalities": {}}
        for modality, by_id in arrays.items():
            if not by_id:
                raise FeatureError(f"packing {out_dir}: no {modality} features to pack")
            dims = {a.shape[1] for a in by_id.values()}
            if len(dims) != 1:
                raise FeatureError(f"packing {out_dir}: {modality} features have mixed dimensions {sorted(dims)}")
            rows = sum(a.shape[0] for a in by_id.values())
            data = np.lib.format.open_memmap(tmp / f"{modality}.npy", mode="w+", dtype=np.float32,
                                             shape=(rows, dims.pop()))
            ids: dict[str, list[int]] = {}
            offset = 0
            for sample_id, array in by_id.items():
                data[offset:offset + len(array)] = array
                ids[sample_id] = [offset, len(array)]
                offset += len(array)
            data.flush()
            del data
            index["modalities"][modality] = {"file": f"{modality}.npy", "ids": ids}
        (tmp / INDEX_FILE).write_text(json.dumps(index))
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            try:
                tmp.rename(out_dir)
            except OSError:
                # Another process (a torchrun rank) finished the same content-addressed store first.
                if not (out_dir / INDEX_FILE).is_file():
                    raise
                shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackedFeatureStore(out_dir)


def pack_features(source: FeatureSource, sample_ids: Sequence[str], modalities: Iterable[str],
                  out_dir: str | Path, dims: Mapping[str, int] | None = None) -> PackedFeatureStore:
    """Read every (modality, id) from ``source`` (validated), then write them as one packed store.

    Any missing or invalid entry stops packing with the error naming the sample and file: a store is either
    complete for ``sample_ids`` or not written.
    """
    if len(set(sample_ids)) != len(sample_ids):
        raise FeatureError(f"packing {out_dir}: duplicate sample ids")
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for modality in modalities:
        dim = (dims or {}).get(modality)
        arrays[modality] = {
            sid: validate_array(source.get(modality, sid), modality, sid, source.describe(modality, sid), dim)
            for sid in tqdm(sample_ids, desc=f"reading {modality} features", unit="file", leave=False)
        }
    return write_store(out_dir, arrays)
