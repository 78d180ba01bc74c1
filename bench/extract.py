"""Extraction throughput with 1 and with 2 worker processes on a workload shaped like a real corpus: ``--clips``
(120) H.264 + AAC ``.mp4`` clips of 2-8 s at mixed resolutions up to 1080p (a face on a textured background,
48 kHz stereo voice-like audio), through ``datasets/extract_features.py``'s path with the default extractors.

    python bench/extract.py [--clips 120] [--workers 2]

The clips are generated once (seeded) into the cache (``<cache>/bench-extract/<version>``) and reused. Each run
extracts into a fresh store, so both runs do equal work, and worker start-up (spawn, imports, model loads) is
included, as a user pays it; each worker computes on one thread (``minigpt4.extract.threads``), so ``N``
workers use ``N`` cores. The two stores are checked to be byte-identical. Printed per run: clips/s and seconds
of video per second (above 1: faster than real time). Last line: ``ratio: R`` (``--workers`` over 1).
"""
from __future__ import annotations

import argparse
import filecmp
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from media_clips import write_scene_clip  # noqa: E402
from minigpt4.extract.registry import build_extractors  # noqa: E402
from minigpt4.extract.run import Job, extract_store  # noqa: E402
from minigpt4.features.store import default_cache_dir  # noqa: E402

SIZES = ((640, 360), (854, 480), (1280, 720), (1920, 1080), (672, 378), (1280, 720), (854, 480), (480, 270))
"""Resolutions cycled over the clips: MELD is 1280x720, MER2023 672x378 to 1920x1080, IEMOCAP 480 lines."""
SECONDS = (2.0, 8.0)
FPS = 25
AUDIO_RATE = 48000
PRESET = "veryfast"
SEED = 22
GENERATOR = 2
"""Bumped whenever ``media_clips.write_scene_clip`` changes, so stale cached clips are never read."""
VERSION = hashlib.sha1(repr((SIZES, SECONDS, FPS, AUDIO_RATE, PRESET, SEED, GENERATOR)).encode()).hexdigest()[:10]


def write_clip(path: Path, index: int) -> float:
    """Clip ``index`` of the workload (seeded by it), written unless it exists; returns its duration in seconds."""
    rng = np.random.default_rng(SEED * 1000 + index)
    width, height = SIZES[index % len(SIZES)]
    seconds = round(float(rng.uniform(*SECONDS)), 2)
    if not path.is_file():
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.mp4")
        write_scene_clip(tmp, width, height, seconds, rng, FPS, AUDIO_RATE, PRESET)
        os.replace(tmp, path)
    return seconds


def workload(count: int) -> tuple[list[Job], float]:
    """Jobs for the first ``count`` clips of the cached workload (generated on first use), and their seconds."""
    folder = default_cache_dir() / "bench-extract" / VERSION
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"clip{i:04d}.mp4" for i in range(count)]
    if not all(p.is_file() for p in paths):
        print(f"generating the workload into {folder} (once)", flush=True)
    seconds = [write_clip(path, i) for i, path in enumerate(paths)]
    return [Job(p.stem, str(p)) for p in paths], sum(seconds)


def same_store(a: Path, b: Path) -> bool:
    """Every packed file (not the per-clip parts) byte for byte."""
    files = sorted(p.name for p in a.iterdir() if p.is_file())
    return files == sorted(p.name for p in b.iterdir() if p.is_file()) and all(
        filecmp.cmp(a / f, b / f, shallow=False) for f in files if f != "manifest.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the second run")
    args = parser.parse_args()
    jobs, video_seconds = workload(args.clips)
    extractors = build_extractors({"audio": "librosa", "face": "fer", "video": "motion"})
    print(f"{len(jobs)} clips, {video_seconds:.0f} s of video, {' / '.join(f'{w}x{h}' for w, h in sorted(set(SIZES)))}")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, args.workers):
            summary = extract_store(jobs, Path(tmp) / f"store{workers}", extractors, workers)
            rates[workers] = len(jobs) / summary["seconds"]
            print(f"{workers} worker(s): {summary['seconds']:.1f} s = {rates[workers]:.2f} clips/s, "
                  f"{video_seconds / summary['seconds']:.1f} s of video per second; faces found in "
                  f"{summary['face_found']}/{len(jobs)} clips, {summary['ok']} without a failure", flush=True)
        if not same_store(Path(tmp) / "store1", Path(tmp) / f"store{args.workers}"):
            raise SystemExit("bench/extract.py: the stores differ between 1 and "
                             f"{args.workers} workers")
    print("stores byte-identical: yes")
    print(f"ratio: {rates[args.workers] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
