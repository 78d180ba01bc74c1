"""Extract features from raw media into a packed feature store (with a manifest per modality).

    python datasets/extract_features.py --corpus meld --root MELD --output MELD/store --workers 2
    python datasets/extract_features.py --corpus demo --output store/demo --frames first --frame-size 32
    python datasets/extract_features.py --clips clips/ more.mp4 --output store/clips
    python datasets/extract_features.py --clips clips/ --output store/up --extractors audio=hubert,face=mae-face \\
        --option audio.path=/models/chinese-hubert-large --option face.path=/models/mae

The first form reads a corpus's own media (IEMOCAP utterances are cut from the dialogue video by segment and
speaker side, their audio read from the per-utterance .wav); the second any .mp4/.avi/.mkv/.wav. Default
extractors need no download (librosa statistics, Haar face + fer expression network, motion statistics).
Rerunning resumes: finished clips are skipped (a rerun listing fewer clips than the store holds is refused
without --overwrite). A clip that cannot be decoded, is truncated, runs past --max-seconds, or lacks a
modality (silent, no face), is listed with its reason. The last line printed is one JSON object: clips, ok,
failed, face_found, seconds. Train with ``data.feature_store=<output>``; widths come from the store's manifest.
"""
from __future__ import annotations

import argparse
import json
import sys

from omegaconf import OmegaConf

from minigpt4.config import DataConfig
from minigpt4.data.corpora import READERS, demo
from minigpt4.extract import DEFAULTS, build_extractors, parse_spec
from minigpt4.data.jobs import sample_jobs
from minigpt4.extract.run import clip_jobs, extract_store
from minigpt4.modalities import STORE_MODALITIES

DEFAULT_SPEC = ",".join(f"{m}={DEFAULTS[m]}" for m in STORE_MODALITIES)


def corpus_samples(name: str, root: str | None, overrides: list[str]) -> list:
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.from_dotlist(overrides))
    cfg.corpus, cfg.root, cfg.transcript = name, root, False
    if name == "demo":
        demo.root(cfg)  # generated on first use
    return READERS[name](cfg).samples


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", choices=sorted(READERS), help="extract a corpus's own media")
    source.add_argument("--clips", nargs="+", help="media files and/or folders of them")
    parser.add_argument("--root", default=None, help="corpus root folder (not needed for demo)")
    parser.add_argument("--output", required=True, help="store folder (created; resumed if this tool made it)")
    parser.add_argument("--extractors", default=DEFAULT_SPEC, help=f"modality=extractor list (default {DEFAULT_SPEC})")
    parser.add_argument("--option", action="append", default=[], help="extractor option, e.g. audio.path=DIR")
    parser.add_argument("--workers", type=int, default=1, help="extraction processes")
    parser.add_argument("--frames", choices=["first"], default=None, help="also pack each clip's first frame")
    parser.add_argument("--frame-size", type=int, default=None, help="packed frame size N x N")
    parser.add_argument("--overwrite", action="store_true", help="replace a store this tool made at --output")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="refuse clips (or utterance segments) longer than this, listing them as failed with "
                             "the reason; decoding stops at the limit (default: no limit)")
    args, extra = parser.parse_known_args(argv)
    if any("=" not in a or a.startswith("-") for a in extra):
        parser.error(f"unrecognized arguments: {' '.join(extra)} (corpus options are key=value, e.g. "
                     "options.splits=[train])")
    overrides = [a.removeprefix("data.") for a in extra]
    if args.frames and not args.frame_size:
        parser.error("--frames needs --frame-size (packed frames share one size)")
    spec = parse_spec(args.extractors, args.option)
    extractors = build_extractors({**{"text": DEFAULTS["text"]}, **spec})
    jobs = sample_jobs(corpus_samples(args.corpus, args.root, overrides)) if args.corpus else clip_jobs(args.clips)
    summary = extract_store(jobs, args.output, extractors, args.workers, args.frames, args.frame_size,
                            args.overwrite, args.max_seconds)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    from minigpt4 import entry

    sys.exit(entry.run_main("extract_features.py", main))
