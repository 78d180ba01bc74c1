"""Clips per second of ``datasets/extract_features.py``'s path with 1 and with 2 worker processes, on the same
clips (PyAV-written h264 + AAC ``.mp4`` of a face and a tone sweep) and the default extractors.

    python bench/extract.py [--clips 24] [--seconds 2]

Each run extracts into a fresh store, so both do equal work; worker start-up (spawn, imports, model loads) is
included, as a user pays it. Last line: ``ratio: R`` (2 workers over 1).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from media_clips import write_clip  # noqa: E402
from minigpt4.extract import build_extractors  # noqa: E402
from minigpt4.extract.run import clip_jobs, extract_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp) / "clips"
        clips.mkdir()
        for i in range(args.clips):
            write_clip(clips / f"clip{i:03d}.mp4", seconds=args.seconds, seed=i)
        extractors = build_extractors({"audio": "librosa", "face": "fer", "video": "motion"})
        rates = {}
        for workers in (1, 2):
            summary = extract_store(clip_jobs([clips]), Path(tmp) / f"store{workers}", extractors, workers)
            assert summary["ok"] == args.clips, summary["failed"]
            rates[workers] = args.clips / summary["seconds"]
            print(f"{workers} worker(s): {args.clips} clips of {args.seconds:g} s in {summary['seconds']:.1f} s = "
                  f"{rates[workers]:.2f} clips/s")
    print(f"ratio: {rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
