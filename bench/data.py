"""Samples/s of reading one item's features (face, video, audio) and frame: our packed store against
upstream-style per-sample loading, on the same samples of the demo corpus.

    python bench/data.py [--n 2000] [--frame first]

Upstream style (Emotion-LLaMA's ``__getitem__``): three ``np.load`` of ``<id>.npy`` plus decoding the first frame
of the utterance's own ``.mp4`` clip with OpenCV, per item (the demo keeps IEMOCAP-style dialogue videos, so
per-utterance 32x32 clips are cut for the benchmark; seeking in the dialogue video is timed too, but the ratio uses
the cheaper clip path). Ours: slices of memory-mapped arrays written once by ``pack_features`` /
``pack_frames``. Both are timed with warm file caches after one untimed pass. Last line: ``ratio: R`` (ours over
upstream).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from minigpt4.config import DataConfig
from minigpt4.data.corpora import load_corpus
from minigpt4.features.store import pack_features
from minigpt4.data.frames import FrameReader, load_frame, media_path, pack_frames

MODALITIES = ("face", "video", "audio")


def upstream_item(sample, dirs: dict[str, Path], clips: Path) -> float:
    arrays = [np.load(dirs[m] / f"{sample.id}.npy") for m in MODALITIES]
    capture = cv2.VideoCapture(str(clips / f"{sample.id}.mp4"))
    ok, frame = capture.read()
    capture.release()
    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return float(arrays[0][0] + frame[0, 0, 0])


def dialogue_item(sample, dirs: dict[str, Path], which: str) -> float:
    arrays = [np.load(dirs[m] / f"{sample.id}.npy") for m in MODALITIES]
    frame = load_frame(sample, which)  # open the dialogue video, seek to the segment, decode, crop
    return float(arrays[0][0] + frame[0, 0, 0])


def write_clips(samples, folder: Path, which: str) -> None:
    """One short mp4 per utterance, as MER2023/MELD ship them."""
    folder.mkdir()
    for sample in samples:
        frame = cv2.cvtColor(load_frame(sample, which), cv2.COLOR_RGB2BGR)
        writer = cv2.VideoWriter(str(folder / f"{sample.id}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10,
                                 (frame.shape[1], frame.shape[0]))
        for _ in range(6):
            writer.write(frame)
        writer.release()


def write_npy_folders(corpus, folder: Path) -> dict[str, Path]:
    """Upstream's layout, one ``<id>.npy`` per sample and modality (the demo's features live in its store)."""
    dirs = {m: folder / m for m in MODALITIES}
    for modality, path in dirs.items():
        path.mkdir(parents=True)
        for sample in corpus.samples:
            np.save(path / f"{sample.id}.npy", corpus.features.get(modality, sample.id)[0])  # upstream: (D,)
    return dirs


def ours_item(sample, store, frames: FrameReader) -> float:
    arrays = [store.get(m, sample.id) for m in MODALITIES]
    frame = frames.get(sample)
    return float(arrays[0][0, 0] + frame[0, 0, 0])


def rate(fn, items, repeat_until: float = 1.0) -> float:
    """Items per second over whole passes, repeated until at least ``repeat_until`` seconds were spent."""
    for item in items[:50]:
        fn(item)
    done, start = 0, time.perf_counter()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= repeat_until:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="samples per pass (demo samples, cycled)")
    parser.add_argument("--frame", default="first")
    args = parser.parse_args()

    corpus = load_corpus(DataConfig(frame=args.frame), ["image", *MODALITIES])
    samples = [corpus.samples[i % len(corpus.samples)] for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp:
        dirs = write_npy_folders(corpus, Path(tmp) / "npy")
        store = pack_features(corpus.features, [s.id for s in corpus.samples], MODALITIES, Path(tmp) / "store")
        pack_frames(corpus.samples, args.frame, Path(tmp) / "store")
        frames = FrameReader(args.frame, Path(tmp) / "store")
        for s in samples[:20]:  # same data on both paths
            assert np.array_equal(frames.get(s), load_frame(s, args.frame))
            assert np.array_equal(store.get("audio", s.id), corpus.features.get("audio", s.id))
        write_clips(corpus.samples, Path(tmp) / "clips", args.frame)
        dialogue = rate(lambda s: dialogue_item(s, dirs, args.frame), samples)
        upstream = rate(lambda s: upstream_item(s, dirs, Path(tmp) / "clips"), samples)
        ours = rate(lambda s: ours_item(s, store, frames), samples)
    print(f"samples per pass: {len(samples)} (demo corpus, frame {args.frame})")
    print(f"upstream np.load x3 + cv2 seek in dialogue {media_path(samples[0]).suffix}: {dialogue:,.0f} samples/s")
    print(f"upstream np.load x3 + cv2 first frame of clip .mp4:  {upstream:,.0f} samples/s")
    print(f"ours packed memmap store + packed frames:            {ours:,.0f} samples/s")
    print(f"ratio: {ours / upstream:.1f}")


if __name__ == "__main__":
    main()
