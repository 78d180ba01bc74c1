"""Decode a clip into what extractors read: sampled RGB frames and 16 kHz mono float32 audio.

Video containers go through PyAV (which bundles FFmpeg); plain ``.wav``/``.flac`` through soundfile. A file
that cannot be decoded, or that has none of the streams asked for, raises ``MediaError`` naming the file and
why: a partially decoded clip is never passed on as if it were whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile

from minigpt4.runtime.errors import UserError

SAMPLE_RATE = 16000
AUDIO_SUFFIXES = (".wav", ".flac")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + AUDIO_SUFFIXES


class MediaError(UserError, ValueError):
    """A clip that cannot be decoded or lacks a usable stream; the message names the file and why."""


@dataclass
class DecodedClip:
    """A decoded clip: sampled RGB frames and 16 kHz mono audio, with their timing."""
    path: str
    frames: np.ndarray | None
    """``[T, H, W, 3]`` uint8 RGB, sampled uniformly over the clip (or segment); None without video."""
    audio: np.ndarray | None
    """``[N]`` float32 mono at ``sample_rate``; None without an audio track."""
    sample_rate: int
    duration: float
    """Seconds covered (the segment's length when one was asked for)."""


def decode_clip(path: str | Path, max_frames: int = 16, segment: tuple[float, float] | None = None,
                side: str | None = None, audio_path: str | Path | None = None) -> DecodedClip:
    """Decode ``path``: at most ``max_frames`` frames spread evenly over it, plus its audio at 16 kHz mono.

    ``segment`` (start, end seconds) restricts decoding to one utterance of a longer recording; ``side``
    (``left``/``right``) keeps the speaker's half of each frame (rows H/4..3H/4, as IEMOCAP dialogue videos are
    cropped); ``audio_path`` takes the audio from a separate file (IEMOCAP's per-utterance ``.wav``).
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        audio = read_audio_file(path, segment)
        return DecodedClip(str(path), None, audio, SAMPLE_RATE, len(audio) / SAMPLE_RATE)
    if suffix not in VIDEO_SUFFIXES:
        raise MediaError(f"{path}: unsupported media type {suffix!r}; expected one of {', '.join(MEDIA_SUFFIXES)}")
    frames, audio, duration = _decode_container(path, max_frames, segment)
    if audio_path is not None:
        audio = read_audio_file(Path(audio_path), None)
    if side is not None and frames is not None:
        frames = crop_side(frames, side, path)
    if frames is None and audio is None:
        raise MediaError(f"{path}: no video or audio stream")
    return DecodedClip(str(path), frames, audio, SAMPLE_RATE, duration)


def crop_side(frames: np.ndarray, side: str, path: Path) -> np.ndarray:
    h, w = frames.shape[1:3]
    rows = frames[:, h // 4: h - h // 4]
    if side not in ("left", "right"):
        raise MediaError(f"{path}: side={side!r}, expected 'left' or 'right'")
    return np.ascontiguousarray(rows[:, :, : w // 2] if side == "left" else rows[:, :, w // 2:])


def read_audio_file(path: Path, segment: tuple[float, float] | None) -> np.ndarray:
    """A ``.wav``/``.flac`` file as 16 kHz mono float32 (channels averaged, resampled when needed)."""

    if not path.is_file():
        raise MediaError(f"{path}: audio file not found")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise MediaError(f"{path}: cannot decode audio: {err}") from None
    audio = data.mean(axis=1)
    if segment is not None:
        audio = audio[int(segment[0] * rate): int(segment[1] * rate)]
    if rate != SAMPLE_RATE and len(audio):
        import librosa  # heavy import (numba): only audio feature extraction and resampling need it

        audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE)
    return np.ascontiguousarray(audio, dtype=np.float32)


def _decode_container(path: Path, max_frames: int, segment: tuple[float, float] | None
                      ) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    start, end = segment if segment is not None else (0.0, float("inf"))
    try:
        with av.open(str(path)) as container:
            duration = float(container.duration / av.time_base) if container.duration else 0.0
            frames = _video(container, max_frames, start, end, path) if max_frames and container.streams.video \
                else None
        with av.open(str(path)) as container:
            audio = _audio(container, start, end) if container.streams.audio else None
    except av.error.FFmpegError as err:
        raise MediaError(f"{path}: cannot decode (corrupt or truncated file?): {err}") from None
    if segment is not None:
        duration = end - start
    elif not duration:
        duration = len(audio) / SAMPLE_RATE if audio is not None else 0.0
    return frames, audio, duration


def _video(container, max_frames: int, start: float, end: float, path: Path) -> np.ndarray:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if start > 0:
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
    # Every stride-th frame is kept; when 2 * max_frames are held, every other one is dropped and the stride
    # doubles: memory stays bounded on long videos and the kept frames stay evenly spread.
    kept, stride, index = [], 1, 0
    for frame in container.decode(stream):
        t = float(frame.time) if frame.time is not None else 0.0
        if t < start - 1e-6:
            continue
        if t >= end:
            break
        if index % stride == 0:
            kept.append(frame.to_ndarray(format="rgb24"))
            if len(kept) >= 2 * max_frames:
                kept, stride = kept[::2], stride * 2
        index += 1
    if not kept:
        raise MediaError(f"{path}: the video stream has no decodable frame"
                         + (f" in segment {start:.3f}-{end:.3f} s" if end != float("inf") else ""))
    pick = np.unique(np.linspace(0, len(kept) - 1, min(max_frames, len(kept))).round().astype(int))
    return np.stack([kept[i] for i in pick])


def _audio(container, start: float, end: float) -> np.ndarray:

    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    if start > 0:
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
    chunks, first_time = [], None
    for frame in container.decode(stream):
        if first_time is None:
            first_time = float(frame.time) if frame.time is not None else 0.0
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
        if frame.time is not None and float(frame.time) > end:
            break
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    offset = max(0, int(round((start - (first_time or 0.0)) * SAMPLE_RATE)))
    stop = None if end == float("inf") else offset + int(round((end - start) * SAMPLE_RATE))
    return np.ascontiguousarray(audio[offset:stop], dtype=np.float32)
