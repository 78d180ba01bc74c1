"""Extraction at scale: only sampled frames are converted, the face search skips only tiny faces, one thread
per worker, and a store that does not depend on the worker count."""
from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from media_clips import face_image, write_clip, write_scene_clip

from minigpt4.extract import decode_clip
from minigpt4.extract.faces import FACE_CASCADE, MIN_FACE, _cascade, detect
from minigpt4.extract.registry import build_extractors
from minigpt4.extract.run import clip_jobs, extract_store

ROOT = Path(__file__).resolve().parents[1]


def every_frame(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


@pytest.mark.parametrize("max_frames", [1, 5, 16])
def test_sampled_frames_are_those_of_a_full_decode(tmp_path, max_frames):
    clip = write_scene_clip(tmp_path / "c.mp4", 320, 180, 3.2, np.random.default_rng(0))
    frames = every_frame(clip)
    # The documented rule: every stride-th frame is kept, the stride doubling whenever 2 * max_frames are
    # held; then max_frames are picked evenly from the kept ones.
    stride = 1
    while len(range(0, len(frames), stride)) > 2 * max_frames - 1:
        stride *= 2
    kept = list(range(0, len(frames), stride))
    pick = np.unique(np.linspace(0, len(kept) - 1, min(max_frames, len(kept))).round().astype(int))
    np.testing.assert_array_equal(decode_clip(clip, max_frames).frames, np.stack([frames[kept[i]] for i in pick]))


def full_search(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    faces = _cascade(FACE_CASCADE).detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4,
                                                     minSize=(MIN_FACE, MIN_FACE))
    return None if len(faces) == 0 else tuple(int(v) for v in max(faces, key=lambda f: int(f[2]) * int(f[3])))


@pytest.mark.parametrize("size,face", [((1280, 720), 300), ((1920, 1080), 420), ((320, 240), 120)])
def test_face_search_finds_what_the_full_search_finds(size, face):
    frame = cv2.resize(cv2.GaussianBlur(face_image(64), (0, 0), 3), size, interpolation=cv2.INTER_LINEAR)
    frame[50: 50 + face, 60: 60 + face] = face_image(face)
    grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    found = detect(grey)
    assert found is not None and found == full_search(grey)


def test_a_worker_computes_on_one_thread():
    code = ("import cv2, torch; from threadpoolctl import threadpool_info; "
            "from minigpt4.extract.threads import single_thread; from minigpt4.extract import media; "
            "single_thread(); "
            "print(torch.get_num_threads(), cv2.getNumThreads(), media._DECODE_THREADS, "
            "sorted({p['num_threads'] for p in threadpool_info()}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1", "[1]"]


@pytest.mark.slow
def test_stores_are_byte_identical_whatever_the_worker_count(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(1)
    for i, (w, h) in enumerate([(640, 360), (1280, 720), (480, 270), (854, 480)]):
        write_scene_clip(clips / f"scene{i}.mp4", w, h, 2.0 + i, rng)
    write_clip(clips / "black.mp4", black=True)
    extractors = build_extractors({"audio": "librosa", "face": "fer", "video": "motion"})
    stores = [tmp_path / f"store{n}" for n in (1, 2)]
    for workers, store in zip((1, 2), stores):
        summary = extract_store(clip_jobs([clips]), store, extractors, workers, frames="first", frame_size=32)
        assert summary["clips"] == 5 and summary["face_found"] == 4 and list(summary["failed"]) == ["black"]
    files = sorted(p.name for p in stores[0].iterdir() if p.is_file())
    assert "face.npy" in files and files == sorted(p.name for p in stores[1].iterdir() if p.is_file())
    for name in files:
        assert filecmp.cmp(stores[0] / name, stores[1] / name, shallow=False), name
