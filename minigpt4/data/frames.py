"""One RGB frame per sample for the image modality, decoded from the sample's media or read pre-decoded.

Media kinds: ``.mp4`` (``.avi`` tried when the ``.mp4`` is absent, as upstream MER2023 folders mix both),
``.avi``, ``.png``/``.jpg`` images, Emotion-llama-scratch ``.npy`` frame arrays ``[N, H, W, 3]`` (RGB), and
IEMOCAP dialogue videos, where ``sample.meta["segment"] = (start_s, end_s)`` picks the utterance's frames and
``sample.meta["side"]`` (``left``/``right``) crops the speaker's half (rows H/4..3H/4, as Emotion-llama-scratch
crops 120:360 of 480).

Decoding video per item is the slow part of the data path, so ``pack_frames`` decodes once into
``frames-<which>.npy`` (memory-mapped) inside a feature store folder and ``FrameReader`` serves from it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from minigpt4.data.samples import Sample
from minigpt4.features.store import FRAMES_FORMAT
from minigpt4.runtime.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class FrameError(UserError, ValueError):
    """A frame that cannot be read; the message names the sample and the file."""


def media_path(sample: Sample) -> Path | None:
    """The file that will be read for ``sample``: its media, or the ``.avi`` twin of a missing ``.mp4``."""
    if not sample.media:
        return None
    path = Path(sample.media)
    if path.suffix.lower() == ".mp4" and not path.exists():
        avi = path.with_suffix(".avi")
        if avi.exists():
            return avi
    return path


def _pick(which: str, count: int, sample: Sample, path: Path) -> int:
    if which == "first":
        return 0
    if which == "middle":
        return count // 2
    try:
        index = int(which)
    except ValueError:
        raise FrameError(f"data.frame={which!r}: expected 'first', 'middle' or a frame index") from None
    if not 0 <= index < count:
        raise FrameError(f"sample {sample.id!r}: frame {index} requested but {path} has {count} frame(s) "
                         "in the utterance")
    return index


def _video_frame(path: Path, which: str, sample: Sample) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FrameError(f"sample {sample.id!r}: cannot open video {path}")
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        first, stop = 0, count
        segment = sample.meta.get("segment")
        if segment is not None:
            if fps <= 0:
                raise FrameError(f"sample {sample.id!r}: video {path} reports no frame rate; cannot seek to "
                                 f"segment {segment}")
            first = int(round(float(segment[0]) * fps))
            stop = max(first + 1, min(count, int(round(float(segment[1]) * fps))))
            if first >= count > 0:
                raise FrameError(f"sample {sample.id!r}: segment {segment} starts after the end of {path} "
                                 f"({count} frames at {fps:g} fps)")
        if count <= 0 and which != "first":
            raise FrameError(f"sample {sample.id!r}: video {path} reports no frame count; only frame 'first' "
                             "can be read")
        index = first + _pick(which, stop - first, sample, path)
        if index:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok or frame is None:
        raise FrameError(f"sample {sample.id!r}: cannot decode frame {index} of {path} (corrupt or truncated file?)")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _crop_side(frame: np.ndarray, side: str, sample: Sample) -> np.ndarray:
    h, w = frame.shape[:2]
    rows = frame[h // 4: h - h // 4]
    if side == "left":
        return np.ascontiguousarray(rows[:, : w // 2])
    if side == "right":
        return np.ascontiguousarray(rows[:, w // 2:])
    raise FrameError(f"sample {sample.id!r}: meta side={side!r}, expected 'left' or 'right'")


def load_frame(sample: Sample, which: str = "first") -> np.ndarray:
    """Decode one frame of ``sample`` as uint8 RGB ``[H, W, 3]``; ``which`` is first / middle / an index."""
    path = media_path(sample)
    if path is None:
        raise FrameError(f"sample {sample.id!r} has no media file; the image modality needs one")
    if not path.is_file():
        raise FrameError(f"sample {sample.id!r}: media file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        frame = _video_frame(path, which, sample)
    elif suffix in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FrameError(f"sample {sample.id!r}: cannot decode image {path}")
        frame = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif suffix == ".npy":
        try:
            frames = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as err:  # EOFError: an empty or truncated file
            raise FrameError(f"sample {sample.id!r}: cannot read frame array {path} ({type(err).__name__}: "
                             f"{err}); expected a .npy [N, H, W, 3] uint8 array") from None
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise FrameError(f"sample {sample.id!r}: frame array {path} has shape {frames.shape}, "
                             "expected [N, H, W, 3] with N >= 1")
        frame = np.asarray(frames[_pick(which, frames.shape[0], sample, path)])
    else:
        raise FrameError(f"sample {sample.id!r}: media {path} has unsupported type {suffix!r}; expected one of "
                         f"{', '.join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)}, .npy")
    side = sample.meta.get("side")
    if side is not None and sample.meta.get("segment") is not None:
        frame = _crop_side(frame, side, sample)
    if frame.dtype != np.uint8:
        raise FrameError(f"sample {sample.id!r}: frame from {path} has dtype {frame.dtype}, expected uint8")
    return frame


def _frames_files(folder: Path, which: str) -> tuple[Path, Path]:
    return folder / f"frames-{which}.npy", folder / f"frames-{which}.json"


def pack_frames(samples: Sequence[Sample], which: str, folder: str | Path, size: int | None = None) -> None:
    """Decode one frame per sample once into ``<folder>/frames-<which>.npy`` ``[N, H, W, 3]`` uint8.

    ``size`` resizes every frame to ``size x size`` (the vision encoder resizes anyway); without it all frames
    must already share one shape. Files are written under temporary names and renamed when complete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for sample in tqdm(samples, desc=f"decoding {which} frames", unit="clip", leave=False):
        frame = load_frame(sample, which)
        if size is not None:
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        if frames and frame.shape != frames[0].shape:
            raise FrameError(f"sample {sample.id!r}: frame shape {frame.shape} differs from {frames[0].shape}; "
                             "pass a size to resize frames while packing")
        frames.append(frame)
    if not frames:
        raise FrameError(f"packing frames into {folder}: no samples")
    data_path, index_path = _frames_files(folder, which)
    tmp_data = data_path.with_name(f".{data_path.name}.tmp-{os.getpid()}.npy")
    np.save(tmp_data, np.stack(frames))
    tmp_index = index_path.with_name(f".{index_path.name}.tmp-{os.getpid()}")
    tmp_index.write_text(json.dumps({"format": FRAMES_FORMAT, "which": which,
                                     "ids": {s.id: i for i, s in enumerate(samples)}}))
    os.replace(tmp_data, data_path)
    os.replace(tmp_index, index_path)


class PackedFrames:
    """Frames written by ``pack_frames``, memory-mapped."""

    def __init__(self, folder: str | Path, which: str) -> None:
        data_path, index_path = _frames_files(Path(folder), which)
        if not (data_path.is_file() and index_path.is_file()):
            raise FrameError(f"no packed {which!r} frames in {folder} (expected {data_path.name} and "
                             f"{index_path.name}; build them with datasets/pack_features.py --frames {which})")
        index = json.loads(index_path.read_text())
        if index.get("format") != FRAMES_FORMAT:
            raise FrameError(f"{index_path}: format {index.get('format')!r}, expected {FRAMES_FORMAT!r}")
        self.path = data_path
        self.frames = np.load(data_path, mmap_mode="r")
        self.ids: dict[str, int] = index["ids"]

    @staticmethod
    def exists(folder: str | Path, which: str) -> bool:
        return all(p.is_file() for p in _frames_files(Path(folder), which))

    def get(self, sample_id: str) -> np.ndarray:
        try:
            return np.array(self.frames[self.ids[sample_id]])
        except KeyError:
            raise FrameError(f"sample {sample_id!r} is missing from packed frames {self.path}; repack them for "
                             "this corpus") from None


class FrameReader:
    """The image modality's source: packed frames when the feature store holds them, else decoding media."""

    def __init__(self, which: str = "first", store: str | Path | None = None) -> None:
        self.which = str(which)
        if self.which not in ("first", "middle") and not self.which.isdigit():
            raise FrameError(f"data.frame={self.which!r}: expected 'first', 'middle' or a frame index")
        self.packed = PackedFrames(store, self.which) if store and PackedFrames.exists(store, self.which) else None

    def has(self, sample: Sample) -> bool:
        if self.packed is not None:
            return sample.id in self.packed.ids
        path = media_path(sample)
        return path is not None and path.is_file()

    def describe(self, sample: Sample) -> str:
        return str(self.packed.path) if self.packed is not None else str(media_path(sample))

    def get(self, sample: Sample) -> np.ndarray:
        return self.packed.get(sample.id) if self.packed is not None else load_frame(sample, self.which)
