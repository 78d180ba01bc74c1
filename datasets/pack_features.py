"""Pack a corpus's per-sample ``<id>.npy`` feature folders into one memory-mapped store (and, optionally,
pre-decode one frame per sample into it), so training reads slices instead of opening thousands of files.

    python datasets/pack_features.py --corpus demo --out features/demo --frames first --frame-size 32
    python datasets/pack_features.py --corpus meld --root MELD --out MELD/packed options.splits=[train,dev]

Then train with ``data.feature_store=<out>``. Every array is validated while packing (dimension, dtype,
finiteness); a missing file stops packing unless ``on_missing=skip`` (skipped ids are printed). ``--out``
must be a new or empty folder, or one packed earlier by this tool (``created_by.json``), which only
``--overwrite`` replaces, as a whole (frames included) and only once the new store is complete.
"""
from __future__ import annotations

import argparse
import json
import sys

from omegaconf import OmegaConf

from minigpt4.runtime import output_folder
from minigpt4.config import DataConfig
from minigpt4.data.corpora import load_corpus
from minigpt4.features.store import pack_features
from minigpt4.data.frames import pack_frames

TOOL = "pack_features.py"


def _dims(text: str) -> dict[str, int]:
    pairs = [p.split("=") for p in text.split(",") if p]
    if any(len(p) != 2 or not p[1].isdigit() for p in pairs):
        raise SystemExit(f"--dims {text!r}: expected modality=width pairs, e.g. face=1024,audio=1024")
    return {m: int(d) for m, d in pairs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, choices=["merr", "mer2023", "iemocap", "meld", "ecf", "demo"])
    parser.add_argument("--root", default=None)
    parser.add_argument("--out", required=True, help="store folder to write (new, empty, or packed earlier)")
    parser.add_argument("--overwrite", action="store_true", help="replace a store this tool packed earlier")
    parser.add_argument("--modalities", default="face,video,audio")
    parser.add_argument("--dims", default="face=1024,video=1024,audio=1024", help="expected widths")
    parser.add_argument("--frames", default=None, help="also pre-decode this frame (first, middle, an index)")
    parser.add_argument("--frame-size", type=int, default=None, help="resize packed frames to N x N")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="data config overrides (data. optional)")
    args = parser.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"unexpected argument(s) {' '.join(bad)}: overrides are key=value")
    overrides = [o.removeprefix("data.") for o in args.overrides]
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.from_dotlist(overrides))
    if cfg.feature_store:
        raise SystemExit("pack_features reads per-sample folders; unset data.feature_store")
    identity = {k: v for k, v in vars(args).items() if k not in ("out", "overwrite")}
    try:
        if output_folder.check(args.out, TOOL) is not None and not args.overwrite:
            raise output_folder.OutputFolderError(f"{args.out} holds a store packed earlier: pass --overwrite to "
                                                  f"replace it, or choose another --out")
    except output_folder.OutputFolderError as err:
        raise SystemExit(f"pack_features.py: error: {err}") from None
    cfg.corpus, cfg.root = args.corpus, args.root
    modalities = [m for m in args.modalities.split(",") if m]
    corpus = load_corpus(cfg, modalities + (["image"] if args.frames else []), _dims(args.dims))
    ids = [s.id for s in corpus.samples]
    pack_features(corpus.features, ids, modalities, args.out, _dims(args.dims))  # replaces --out when complete
    if args.frames:
        pack_frames(corpus.samples, args.frames, args.out, args.frame_size)
    output_folder.mark(args.out, TOOL, identity)
    print(json.dumps({"out": args.out, "samples": len(ids), "modalities": modalities, "frames": args.frames,
                      "skipped": [list(x) for x in corpus.skipped]}))


if __name__ == "__main__":
    from minigpt4 import entry

    sys.exit(entry.run_main("pack_features.py", main))
