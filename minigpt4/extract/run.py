"""Extract a list of clips into a feature store: worker processes, a progress bar, resume, a summary.

Each clip is one job (an id, a media file, and for utterances of a longer recording the segment, speaker
side and separate audio file). A clip that cannot be decoded, or a modality it lacks (no face, silent audio),
is recorded with its reason and the run goes on; any other exception is a bug and stops the run.
Each process computes on one thread (``threads.single_thread``): ``workers`` processes use that many cores, and
a store does not depend on ``workers`` (packed byte for byte alike, tested).
"""
from __future__ import annotations

import json
import multiprocessing
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from minigpt4 import modalities
from minigpt4.extract.base import ClipInputs, Extractor, extract_clip, extract_inputs
from minigpt4.extract.media import MEDIA_SUFFIXES, SAMPLE_RATE, DecodedClip, MediaError, require_regular_file
from minigpt4.extract.registry import build_extractors
from minigpt4.extract.store import (
    MANIFEST,
    PartInfo,
    manifest,
    pack,
    packed_ids,
    part_path,
    remove_stale_parts,
    write_part,
)
from minigpt4.extract.threads import single_thread
from minigpt4.runtime.output_folder import OutputFolderError, claim_folder, fingerprint

TOOL = "datasets/extract_features.py"


@dataclass(frozen=True)
class Job:
    """One clip to extract: its id, media path, decode options and any error known before decoding."""
    clip_id: str
    path: str
    decode: dict[str, Any] = field(default_factory=dict)
    """``segment`` / ``side`` / ``audio_path`` for ``decode_clip``."""
    error: str | None = None
    """Known before decoding (media file missing, clip known to be corrupt)."""

def clip_jobs(inputs: Sequence[str | Path]) -> list[Job]:
    """Jobs for files and folders of ``.mp4``/``.avi``/``.mkv``/``.wav``...; ids are paths relative to the
    folder without suffix (a file given directly: its stem). Duplicate ids are an error."""
    jobs: dict[str, Job] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file())
            pairs = [(p.relative_to(item).with_suffix("").as_posix(), p) for p in files]
        else:
            require_regular_file(item)  # a FIFO or device is named as such, a missing file as not found
            pairs = [(item.stem, item)]
        if not pairs:
            raise FileNotFoundError(f"--clips {item}: no media files ({', '.join(MEDIA_SUFFIXES)})")
        for clip_id, path in pairs:
            if clip_id in jobs:
                raise ValueError(f"clip id {clip_id!r} given twice ({jobs[clip_id].path} and {path})")
            jobs[clip_id] = Job(clip_id, str(path))
    return list(jobs.values())


_WORKER: dict[str, Any] = {}


def _init(spec: Mapping[str, Any], store: str, frame_size: int | None) -> None:
    single_thread()
    _WORKER.update(extractors=build_extractors(spec), store=Path(store), frame_size=frame_size)


def _extract(job: Job) -> PartInfo:
    store, extractors = _WORKER["store"], _WORKER["extractors"]
    if job.error:
        return write_part(store, job.clip_id, None, job.error)
    try:
        result = extract_clip(job.path, extractors, **job.decode)
    except MediaError as err:
        return write_part(store, job.clip_id, None, str(err))
    return write_part(store, job.clip_id, result, frame_size=_WORKER["frame_size"])


def stored_spec(extractors: Mapping[str, Extractor]) -> dict[str, Any]:
    return {m: {"extractor": e.name, **e.config} for m, e in extractors.items()
            if modalities.get(m).source == "store"}


def warm_up(extractors: Mapping[str, Extractor]) -> None:
    """Run every extractor once on noise, so lazy imports and model loads (librosa's first call alone takes
    seconds) happen at start-up rather than in some client's request. Run once in the parent before worker
    processes start, it also writes librosa's numba caches from one process: workers compiling them at the
    same time can leave a mixed cache that crashes every later call (numba #10128)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    extract_inputs(ClipInputs(DecodedClip("warm-up", frames, audio, SAMPLE_RATE, 1.0), "warm up"), extractors)


def extract_store(jobs: Sequence[Job], output: str | Path, extractors: Mapping[str, Extractor], workers: int = 1,
                  frames: str | None = None, frame_size: int | None = None, overwrite: bool = False,
                  max_seconds: float | None = None) -> dict[str, Any]:
    """Extract ``jobs`` into ``output`` (resuming a store this tool started there) and pack it.

    A clip longer than ``max_seconds`` is not decoded past the limit and is listed as failed with that reason.
    A store holding clips that ``jobs`` does not list is refused unless ``overwrite``: packing would drop them.
    Returns the summary: clips, ok, failed (id -> reason), face_found, seconds.
    """
    start = time.perf_counter()
    output = Path(output)
    if frames not in (None, "first"):
        raise ValueError(f"--frames {frames!r}: extraction packs the clip's first frame only ('first')")
    spec = stored_spec(extractors)
    decode = {"frames": frames, "frame_size": frame_size}
    info = manifest(extractors, list(spec), decode)
    earlier = claim_folder(output, TOOL, overwrite, identity=info)
    if earlier is not None and earlier.get("fingerprint") != fingerprint(info):
        raise OutputFolderError(f"{output} holds a store extracted with other extractors or settings "
                                f"(see {output / MANIFEST}); rerun with --overwrite to replace it, or choose "
                                "another --output")
    dropped = sorted(packed_ids(output) - {j.clip_id for j in jobs})
    if dropped:
        shown = ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else "")
        raise OutputFolderError(f"{output} holds {len(dropped)} clip(s) this run does not list ({shown}); packing "
                                f"would drop them: list them too, or rerun with --overwrite to make a store of just "
                                f"these {len(jobs)} clip(s)")
    (output / MANIFEST).write_text(json.dumps(info, indent=1) + "\n")
    remove_stale_parts(output)
    todo = [replace(j, decode={**j.decode, "max_seconds": max_seconds}) if max_seconds else j
            for j in jobs if not part_path(output, j.clip_id).is_file()]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="extracting", unit="clip")
    if workers <= 1:
        _init(spec, str(output), frame_size)
        for job in todo:
            _extract(job)
            bar.update()
    else:
        warm_up(extractors)
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init, initargs=(spec, str(output), frame_size)) as pool:
            for _ in pool.imap_unordered(_extract, todo):
                bar.update()
    bar.close()
    ids = [j.clip_id for j in jobs]
    dims = {m: extractors[m].dim for m in spec}
    failed, face_found = pack(output, ids, dims, frames)
    return {"clips": len(ids), "ok": len(ids) - len(failed), "failed": failed, "face_found": face_found,
            "seconds": round(time.perf_counter() - start, 2)}
