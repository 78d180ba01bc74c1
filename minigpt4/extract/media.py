"""Decode a clip into what extractors read: sampled RGB frames and 16 kHz mono float32 audio.

Video containers go through PyAV (which bundles FFmpeg); plain ``.wav``/``.flac`` through soundfile. A file
that cannot be decoded, or that has none of the streams asked for, raises ``MediaError`` naming the file and
why: a partially decoded clip is never passed on as if it were whole. So a clip whose streams end well before
the duration its container states (a download or copy cut short) is an error, and frames are turned upright
as the container's display matrix says (phone videos), as a player shows them.

``max_seconds`` bounds the work per clip: a clip longer than that is refused (``ClipTooLong``) before
decoding when its container states its duration, and as soon as decoding passes the limit otherwise.
"""
from __future__ import annotations

import os
import stat
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
TRUNCATION_SLACK_S = 0.5
"""A stream may end this much (or 2 %) before its stated duration: encoder padding, a last frame's length."""


class MediaError(UserError, ValueError):
    """A clip that cannot be decoded or lacks a usable stream; the message names the file and why."""


class ClipTooLong(MediaError):
    """A clip longer than the ``max_seconds`` asked for (HTTP 413 on the page)."""


@dataclass
class DecodedClip:
    """A decoded clip: sampled RGB frames and 16 kHz mono audio, with their timing."""

    path: str
    frames: np.ndarray | None
    """``[T, H, W, 3]`` uint8 RGB, upright, sampled uniformly over the clip (or segment); None without video."""
    audio: np.ndarray | None
    """``[N]`` float32 mono at ``sample_rate``; None without an audio track."""
    sample_rate: int
    duration: float
    """Seconds covered (the segment's length when one was asked for)."""


def decode_clip(path: str | Path, max_frames: int = 16, segment: tuple[float, float] | None = None,
                side: str | None = None, audio_path: str | Path | None = None,
                max_seconds: float | None = None) -> DecodedClip:
    """Decode ``path``: at most ``max_frames`` frames spread evenly over it, plus its audio at 16 kHz mono.

    ``segment`` (start, end seconds) restricts decoding to one utterance of a longer recording; ``side``
    (``left``/``right``) keeps the speaker's half of each frame (rows H/4..3H/4, as IEMOCAP dialogue videos are
    cropped); ``audio_path`` takes the audio from a separate file (IEMOCAP's per-utterance ``.wav``);
    ``max_seconds`` refuses a clip (or segment) longer than that with ``ClipTooLong``.
    """
    path = Path(path)
    require_regular_file(path)
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        audio = read_audio_file(path, segment, max_seconds)
        return DecodedClip(str(path), None, audio, SAMPLE_RATE, len(audio) / SAMPLE_RATE)
    if suffix not in VIDEO_SUFFIXES:
        raise MediaError(f"{path}: unsupported media type {suffix!r}; expected one of {', '.join(MEDIA_SUFFIXES)}")
    frames, audio, duration = _decode_container(path, max_frames, segment, max_seconds)
    if audio_path is not None:
        audio = read_audio_file(Path(audio_path), None, max_seconds)
    if side is not None and frames is not None:
        frames = crop_side(frames, side, path)
    if frames is None and audio is None:
        raise MediaError(f"{path}: no video or audio stream")
    return DecodedClip(str(path), frames, audio, SAMPLE_RATE, duration)


def require_regular_file(path: Path) -> None:
    """``MediaError`` unless ``path`` is a regular file: a FIFO or device would block or never end."""
    link = f" (a symbolic link to {os.readlink(path)})" if path.is_symlink() else ""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise MediaError(f"{path}: file not found{link}") from None
    if stat.S_ISREG(mode):
        return
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket or special file")
    raise MediaError(f"{path}: is {kind}{link}, not a regular media file")


def crop_side(frames: np.ndarray, side: str, path: Path) -> np.ndarray:
    h, w = frames.shape[1:3]
    rows = frames[:, h // 4: h - h // 4]
    if side not in ("left", "right"):
        raise MediaError(f"{path}: side={side!r}, expected 'left' or 'right'")
    return np.ascontiguousarray(rows[:, :, : w // 2] if side == "left" else rows[:, :, w // 2:])


def too_long(path: Path, seconds: float, limit: float, stated: bool = True) -> ClipTooLong:
    how = f"lasts {seconds:.1f} s" if stated else f"runs past {limit:g} s"
    return ClipTooLong(f"{path}: the clip {how}, over the {limit:g} s limit per clip")


def read_audio_file(path: Path, segment: tuple[float, float] | None, max_seconds: float | None = None
                    ) -> np.ndarray:
    """A ``.wav``/``.flac`` file as 16 kHz mono float32 (channels averaged, resampled when needed)."""
    require_regular_file(path)
    try:
        info = soundfile.info(str(path))
        length = (segment[1] - segment[0]) if segment is not None else info.duration
        if max_seconds is not None and length > max_seconds:
            raise too_long(path, length, max_seconds)
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise MediaError(f"{path}: cannot decode audio: {err}") from None
    stated = wav_stated_frames(path)
    if stated is not None and stated - len(data) > _slack(stated / rate) * rate:
        raise _truncated(path, len(data) / rate, stated / rate)
    audio = data.mean(axis=1)
    if segment is not None:
        audio = audio[int(segment[0] * rate): int(segment[1] * rate)]
    if rate != SAMPLE_RATE and len(audio):
        import librosa  # heavy import (numba): only audio feature extraction and resampling need it

        audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE)
    return np.ascontiguousarray(audio, dtype=np.float32)


def wav_stated_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header's ``data`` chunk states (None: not a WAV, or a streamed one of unknown size).

    libsndfile silently shortens a truncated WAV to the bytes present; the header still says the whole length.
    """
    with path.open("rb") as f:
        if f.read(12)[8:12] != b"WAVE":
            return None
        block = None
        while len(head := f.read(8)) == 8:
            size = int.from_bytes(head[4:], "little")
            if head[:4] == b"fmt ":
                block = int.from_bytes(f.read(16)[12:14], "little")
                f.seek(size - 16 + (size & 1), os.SEEK_CUR)
            elif head[:4] == b"data":
                return size // block if block and size not in (0, 0xFFFFFFFF) else None
            else:
                f.seek(size + (size & 1), os.SEEK_CUR)
    return None


def _slack(seconds: float) -> float:
    return max(TRUNCATION_SLACK_S, 0.02 * seconds)


def _decodable(container, stream):
    """The stream's frames up to the first undecodable packet: a file cut short ends in garbage, and what came
    before it is checked against the stated duration (``_truncated``) instead of failing with FFmpeg's words."""
    try:
        yield from container.decode(stream)
    except av.error.InvalidDataError:
        return


def _truncated(path: Path, decoded: float, stated: float) -> MediaError:
    return MediaError(f"{path}: truncated: only {decoded:.1f} s of the {stated:.1f} s its header states could be "
                      f"decoded (an interrupted download or copy?)")


def _decode_container(path: Path, max_frames: int, segment: tuple[float, float] | None,
                      max_seconds: float | None) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    start, end = segment if segment is not None else (0.0, float("inf"))
    try:
        with av.open(str(path)) as container:
            stated = float(container.duration / av.time_base) if container.duration else 0.0
            length = min(end, stated or float("inf")) - start
            if max_seconds is not None and length > max_seconds and stated:
                raise too_long(path, length, max_seconds)
            limit = start + max_seconds if max_seconds is not None else float("inf")
            frames = _video(container, max_frames, start, end, limit, path) \
                if max_frames and container.streams.video else None
        with av.open(str(path)) as container:
            audio = _audio(container, start, end, limit, path) if container.streams.audio else None
    except av.error.FFmpegError as err:
        raise MediaError(f"{path}: cannot decode (corrupt or truncated file?): {err}") from None
    covered = max(audio.covered if audio is not None else 0.0, frames.covered if frames is not None else 0.0)
    expected = min(end, stated) - start if stated else 0.0
    if expected - covered > _slack(expected):
        raise _truncated(path, covered, expected)
    if segment is not None:
        duration = end - start
    else:
        duration = stated or (len(audio.data) / SAMPLE_RATE if audio is not None else 0.0)
    return (frames.data if frames is not None else None), (audio.data if audio is not None else None), duration


_DECODE_THREADS = 0


def set_decode_threads(threads: int) -> None:
    """Threads FFmpeg decodes video with in this process (0: one per core, FFmpeg's default). Extraction
    workers use 1: they scale by processes (``minigpt4.extract.threads``)."""
    global _DECODE_THREADS
    _DECODE_THREADS = threads


@dataclass
class _Decoded:
    """One decoded stream and how much of the clip it covered."""

    data: np.ndarray
    covered: float
    """Seconds from the start asked for to the end of the last decoded frame or sample."""


def upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded frame turned as its display matrix says (``rotation``: degrees counterclockwise, as PyAV's
    ``VideoFrame.rotation``; phone videos store 90 or -90), to the nearest quarter turn."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _video(container, max_frames: int, start: float, end: float, limit: float, path: Path) -> _Decoded:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = _DECODE_THREADS
    if start > 0:
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
    step = 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
    # Every stride-th frame is kept; when 2 * max_frames are held, every other one is dropped and the stride
    # doubles: memory stays bounded on long videos and the kept frames stay evenly spread. Frames are held
    # decoded (YUV) and only the max_frames picked at the end are converted to RGB (and turned upright):
    # conversion at full resolution cost more than decoding itself.
    kept, stride, index, last = [], 1, 0, start
    for frame in _decodable(container, stream):
        t = float(frame.time) if frame.time is not None else 0.0
        if t < start - 1e-6:
            continue
        if t >= end:
            break
        if t > limit:
            raise too_long(path, t - start, limit - start, stated=False)
        last = t + step
        if index % stride == 0:
            kept.append(frame)
            if len(kept) >= 2 * max_frames:
                kept, stride = kept[::2], stride * 2
        index += 1
    if not kept:
        raise MediaError(f"{path}: the video stream has no decodable frame"
                         + (f" in segment {start:.3f}-{end:.3f} s" if end != float("inf") else ""))
    pick = np.unique(np.linspace(0, len(kept) - 1, min(max_frames, len(kept))).round().astype(int))
    return _Decoded(np.stack([upright(kept[i].to_ndarray(format="rgb24"), kept[i].rotation) for i in pick]),
                    last - start)


def _audio(container, start: float, end: float, limit: float, path: Path) -> _Decoded:
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    if start > 0:
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
    chunks, first_time, last = [], None, start
    for frame in _decodable(container, stream):
        t = float(frame.time) if frame.time is not None else last
        if first_time is None:
            first_time = t
        if t > limit:
            raise too_long(path, t - start, limit - start, stated=False)
        last = t + frame.samples / frame.sample_rate
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
        if t > end:
            break
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    offset = max(0, int(round((start - (first_time or 0.0)) * SAMPLE_RATE)))
    stop = None if end == float("inf") else offset + int(round((end - start) * SAMPLE_RATE))
    return _Decoded(np.ascontiguousarray(audio[offset:stop], dtype=np.float32), min(last, end) - start)
