"""The feature store that extraction writes: one part file per finished clip, packed into the memory-mapped
store ``features.PackedFeatureStore`` reads, plus ``manifest.json`` saying how each modality was made.

Parts make extraction resumable (a clip whose part exists is not extracted again) and safe to kill (each
part is written under a temporary name, then renamed). Packing sorts clips by id, so the store does not
depend on the order workers finished in. ``extractors_from_store`` rebuilds the exact extractors a store
(and so a model trained on it) was made with.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np

from minigpt4.extract.base import ClipFeatures, Extractor
from minigpt4.extract.registry import EXTRACTORS, build_extractors
from minigpt4.features.store import (
    FRAMES_FORMAT,
    INDEX_FILE,
    STORE_FORMAT,
    FeatureError,
)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "emotion-llama-extraction-v1"
PARTS = "parts"
FAILURES = "failures.json"


def manifest(extractors: Mapping[str, Extractor], stored: list[str], decode: Mapping[str, Any]) -> dict[str, Any]:
    """What a store was made with: per modality the extractor's name, version, config, dim and tokens, and
    whether its rows are in the store (transcript modalities are embedded by the training pipeline)."""
    return {"format": MANIFEST_FORMAT, "decode": dict(decode),
            "modalities": {m: {**e.manifest(), "stored": m in stored} for m, e in extractors.items()}}


def read_manifest(store: str | Path) -> dict[str, Any]:
    path = Path(store) / MANIFEST
    if not path.is_file():
        raise FeatureError(f"feature store {store}: no {MANIFEST} (it was not written by datasets/extract_features.py)")
    data = json.loads(path.read_text())
    if data.get("format") != MANIFEST_FORMAT:
        raise FeatureError(f"{path}: format {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    return data


def store_shapes(store: str | Path) -> dict[str, tuple[int, int]]:
    """modality -> (tokens, dim) of every modality the store's manifest lists."""
    return {m: (int(e["tokens"]), int(e["dim"])) for m, e in read_manifest(store)["modalities"].items()}


def extractors_from_store(store: str | Path) -> dict[str, Extractor]:
    """The extractors recorded in a store's manifest, rebuilt with their exact configs (versions checked)."""

    entries = read_manifest(store)["modalities"]
    for modality, entry in entries.items():
        cls = EXTRACTORS.get(entry["extractor"])
        if cls is None or cls.version != entry["version"]:
            have = f"version {cls.version}" if cls else "no such extractor"
            raise FeatureError(f"feature store {store}: {modality} was extracted with {entry['extractor']} version "
                               f"{entry['version']}, this code has {have}")
    return build_extractors({m: {"extractor": e["extractor"], **e["config"]} for m, e in entries.items()})


def part_path(store: Path, clip_id: str) -> Path:
    return store / PARTS / f"{hashlib.sha1(clip_id.encode()).hexdigest()}.npz"


@dataclass
class PartInfo:
    """What one clip's part file says: its id, per-modality failures and whether a face was found."""
    clip_id: str
    failures: dict[str, str] = field(default_factory=dict)
    face_found: bool = False


def write_part(store: Path, clip_id: str, result: ClipFeatures | None, error: str | None = None,
               frame_size: int | None = None) -> PartInfo:
    """Save one clip's outcome atomically: its features, or why it (or a modality of it) failed."""

    info = PartInfo(clip_id, {"clip": error} if error else dict(result.failures), bool(result and result.face_found))
    arrays: dict[str, np.ndarray] = {}
    if result is not None:
        arrays = {f"feature:{m}": x for m, x in result.features.items()}
        if frame_size and result.frame is not None:
            arrays["frame"] = cv2.resize(result.frame, (frame_size, frame_size), interpolation=cv2.INTER_AREA)
    meta = json.dumps({"id": clip_id, "failures": info.failures, "face_found": info.face_found})
    path = part_path(store, clip_id)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, meta=np.array(meta), **arrays)
    os.replace(tmp, path)
    return info


def read_part(path: Path) -> tuple[PartInfo, dict[str, np.ndarray], np.ndarray | None]:
    with np.load(path, allow_pickle=False) as part:
        meta = json.loads(str(part["meta"]))
        features = {k.split(":", 1)[1]: part[k] for k in part.files if k.startswith("feature:")}
        frame = part["frame"] if "frame" in part.files else None
    return PartInfo(meta["id"], meta["failures"], meta["face_found"]), features, frame


def remove_stale_parts(store: Path) -> list[Path]:
    """Delete part files a killed run left half-written (``.<hash>.tmp-<pid>.npz`` of a process that is gone);
    a running extraction's own temporaries are kept. Returns what was removed."""
    stale = [p for p in (store / PARTS).glob(".*.tmp-*.npz") if not _running(int(p.stem.rsplit("-", 1)[1]))]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def packed_ids(store: Path) -> set[str]:
    """Clip ids an earlier pack of ``store`` holds: rows of any modality, plus clips recorded as failed."""
    ids: set[str] = set()
    if (store / INDEX_FILE).is_file():
        for entry in json.loads((store / INDEX_FILE).read_text()).get("modalities", {}).values():
            ids |= set(entry["ids"])
    if (store / FAILURES).is_file():
        ids |= set(json.loads((store / FAILURES).read_text()))
    return ids


def _replace(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def pack(store: Path, clip_ids: list[str], dims: Mapping[str, int], frames: str | None) -> tuple[dict[str, str], int]:
    """Pack the parts of ``clip_ids`` (sorted) into ``<modality>.npy`` + ``index.json`` (+ packed frames);
    returns (clip id -> failure reasons, clips with a face). The index is written last, so a reader never sees
    half a store."""
    rows: dict[str, dict[str, np.ndarray]] = {m: {} for m in dims}
    failures: dict[str, str] = {}
    frame_rows: dict[str, np.ndarray] = {}
    faces = 0
    for clip_id in sorted(clip_ids):
        info, features, frame = read_part(part_path(store, clip_id))
        faces += info.face_found
        if info.failures:
            failures[clip_id] = "; ".join(f"{m}: {why}" for m, why in info.failures.items())
        for modality, x in features.items():
            if modality in rows:
                rows[modality][clip_id] = x
        if frame is not None:
            frame_rows[clip_id] = frame
    index: dict[str, Any] = {"format": STORE_FORMAT, "modalities": {}}
    for modality, by_id in rows.items():
        if not by_id:
            continue
        ids, offset = {}, 0
        for clip_id, x in by_id.items():
            if x.shape[1] != dims[modality]:
                raise FeatureError(f"{store}: {modality} part of {clip_id!r} has width {x.shape[1]}, the manifest "
                                   f"says {dims[modality]}")
            ids[clip_id] = [offset, len(x)]
            offset += len(x)
        _replace(store / f"{modality}.npy", lambda p, a=by_id: np.save(p, np.concatenate(list(a.values()))))
        index["modalities"][modality] = {"file": f"{modality}.npy", "ids": ids}
    if frames and frame_rows:
        _replace(store / f"frames-{frames}.npy", lambda p: np.save(p, np.stack(list(frame_rows.values()))))
        _replace(store / f"frames-{frames}.json", lambda p: p.write_text(json.dumps(
            {"format": FRAMES_FORMAT, "which": frames, "ids": {k: i for i, k in enumerate(frame_rows)}})))
    _replace(store / FAILURES, lambda p: p.write_text(json.dumps(failures, indent=1, sort_keys=True)))
    _replace(store / INDEX_FILE, lambda p: p.write_text(json.dumps(index)))
    return failures, faces

