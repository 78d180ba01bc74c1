"""Clips are read as they are, within bounds: upright as displayed, whole or refused, never longer than asked,
and only from regular files."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from media_clips import faststart_cut, portrait, sweep, write_audio, write_frames
from minigpt4.extract.faces import track_faces
from minigpt4.extract.media import ClipTooLong, MediaError, decode_clip

REPO = Path(__file__).resolve().parents[1]


def test_display_matrix_turns_frames_upright(tmp_path):
    upright = write_frames(tmp_path / "upright.mp4", [portrait()] * 10)
    phone = write_frames(tmp_path / "phone.mp4", [np.rot90(portrait(), 1)] * 10, rotation=-90)  # stored sideways
    a, b = decode_clip(upright), decode_clip(phone)
    assert b.frames.shape == a.frames.shape == (10, 160, 96, 3)
    assert np.abs(a.frames.astype(int) - b.frames).mean() < 6  # h264 noise only
    assert track_faces(b.frames).crops


def test_truncated_faststart_clip_is_an_error_naming_what_was_decoded(tmp_path):
    cut = faststart_cut(tmp_path / "cut.mp4")
    with pytest.raises(MediaError, match=rf"{cut}: truncated: only [0-9.]+ s of the 13.6 s its header states"):
        decode_clip(cut)


def test_truncated_wav_is_an_error(tmp_path):
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, sweep(4.0), 16000, subtype="PCM_16")
    assert len(decode_clip(wav).audio) == 64000
    wav.write_bytes(wav.read_bytes()[: wav.stat().st_size // 2])
    with pytest.raises(MediaError, match=r"truncated: only 2.0 s of the 4.0 s"):
        decode_clip(wav)


@pytest.mark.parametrize("suffix", [".mp4", ".wav"])
def test_clip_over_the_duration_cap_is_refused_naming_the_limit(tmp_path, suffix):
    path = tmp_path / f"long{suffix}"
    if suffix == ".wav":
        soundfile.write(path, np.tile(sweep(10.0), 7), 16000, subtype="PCM_16")
    else:
        write_audio(path, 70.0)
    with pytest.raises(ClipTooLong, match=rf"{path}: the clip lasts 70.0 s, over the 30 s limit per clip"):
        decode_clip(path, max_seconds=30)
    assert abs(decode_clip(path, max_seconds=80).duration - 70.0) < 0.1


def test_fifo_device_and_folder_are_named_for_what_they_are(tmp_path):
    fifo, zero = tmp_path / "pipe.mp4", tmp_path / "zero.mp4"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    for path, what in ((fifo, "is a FIFO \\(named pipe\\)"), (zero, "is a device \\(a symbolic link to /dev/zero\\)"),
                       (tmp_path, "is a folder"), (tmp_path / "gone.mp4", "file not found")):
        with pytest.raises(MediaError, match=rf"{path}: {what}"):
            decode_clip(path)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_long_media", REPO / "bench" / "long_media.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_thirty_minutes_of_audio_is_refused_without_memory_growth(tmp_path):
    path = write_audio(tmp_path / "long.mp4", 1800.0)
    assert path.stat().st_size < 5 * 2**20  # well under the page's 50 MB upload cap
    grown, _ = _bench().decode_peak(path, 60)
    assert grown < 300
