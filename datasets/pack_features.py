"""Pack a corpus's per-sample ``<id>.npy`` feature folders into one memory-mapped store (and, optionally,
pre-decode one frame per sample into it), so training reads slices instead of opening thousands of files.

    python datasets/pack_features.py --corpus demo --out features/demo --frames first --frame-size 32
    python datasets/pack_features.py --corpus meld --root MELD --out MELD/packed options.splits=[train,dev]

Then train with ``data.feature_store=<out>``. Every array is validated while packing (dimension, dtype,
finiteness); a missing file stops packing unless ``on_missing=skip`` (skipped ids are printed). Re-packing
replaces the whole folder, frames included.
"""
from __future__ import annotations

import argparse
import json
import sys

from omegaconf import OmegaConf

from minigpt4.config import DataConfig
from minigpt4.corpora import load_corpus
from minigpt4.features import pack_features
from minigpt4.frames import pack_frames


def _dims(text: str) -> dict[str, int]:
    pairs = [p.split("=") for p in text.split(",") if p]
    if any(len(p) != 2 or not p[1].isdigit() for p in pairs):
        raise SystemExit(f"--dims {text!r}: expected modality=width pairs, e.g. face=1024,audio=1024")
    return {m: int(d) for m, d in pairs}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    overrides = [a.removeprefix("data.") for a in argv if "=" in a and not a.startswith("-")]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, choices=["merr", "mer2023", "iemocap", "meld", "ecf", "demo"])
    parser.add_argument("--root", default=None)
    parser.add_argument("--out", required=True, help="store folder to write")
    parser.add_argument("--modalities", default="face,video,audio")
    parser.add_argument("--dims", default="face=1024,video=1024,audio=1024", help="expected widths")
    parser.add_argument("--frames", default=None, help="also pre-decode this frame (first, middle, an index)")
    parser.add_argument("--frame-size", type=int, default=None, help="resize packed frames to N x N")
    args = parser.parse_args([a for a in argv if a.removeprefix("data.") not in overrides])
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.from_dotlist(overrides))
    if cfg.feature_store:
        raise SystemExit("pack_features reads per-sample folders; unset data.feature_store")
    cfg.corpus, cfg.root = args.corpus, args.root
    modalities = [m for m in args.modalities.split(",") if m]
    corpus = load_corpus(cfg, modalities + (["image"] if args.frames else []), _dims(args.dims))
    ids = [s.id for s in corpus.samples]
    pack_features(corpus.features, ids, modalities, args.out, _dims(args.dims))
    if args.frames:
        pack_frames(corpus.samples, args.frames, args.out, args.frame_size)
    print(json.dumps({"out": args.out, "samples": len(ids), "modalities": modalities, "frames": args.frames,
                      "skipped": [list(x) for x in corpus.skipped]}))


if __name__ == "__main__":
    main()
