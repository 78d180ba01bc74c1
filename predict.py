"""Predict the emotion of clips with a trained checkpoint: one JSON line per clip.

    python predict.py [--cfg-path eval_configs/X.yaml] [model.checkpoint=DIR] CLIP [CLIP ... | FOLDER]
                      [--transcript TEXT] [--output preds.jsonl [--overwrite]] [key=value ...]

Features come from the extractors the checkpoint was trained with (its feature store's manifest), through
the one extraction path (minigpt4.extract). Model and data settings are the checkpoint's own (config.yaml);
--cfg-path contributes its eval: section (eval.mode score or generate). A clip's transcript is --transcript,
else the text of a <clip>.txt beside it, else none (the text modality is then left out). Each line holds
id, labels, probabilities, answer (and a generated reason when the LLM reads words or was trained on the
reason task), modalities used, left_out (modality -> why), face_found, out_of_distribution (how far the
clip's features lie from the training split's, and whether that flags it), seconds. A clip that cannot be
decoded gets {"id", "file", "error"} and the others go on; the exit status is then 1.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

from minigpt4 import entry

KEYS = ("model.checkpoint", "eval.mode", "eval.max_new_tokens", "eval.threshold", "eval.top_k")
EXAMPLES = ("python predict.py clip.mp4",
            "python predict.py clips/ --output runs/demo/predictions_clips.jsonl",
            "python predict.py model.checkpoint=runs/demo/final clip.mp4 --transcript 'I told you so!'",
            "python predict.py --cfg-path eval_configs/demo.yaml model.checkpoint=runs/demo/final clip.mp4")


def parse_args(argv: list[str]):
    parser = entry.make_serving_parser("predict.py", __doc__, KEYS, EXAMPLES)
    parser.usage = "%(prog)s [options] CLIP [CLIP ... | FOLDER] [key=value ...]"
    parser.add_argument("clips", nargs="+", type=Path, help="clip files and/or folders of clips")
    parser.add_argument("--transcript", help="what is said in the clip(s) (default: <clip>.txt when present)")
    parser.add_argument("--output", type=Path, help="write JSON lines here instead of standard output")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="refuse clips longer than this (that clip's error line); decoding stops at the limit")
    args, overrides = entry.parse(parser, argv)
    output = args.output
    if output is not None and output.is_dir():
        parser.error(f"--output {output} is a folder; name a file for the JSON lines (e.g. {output / 'preds.jsonl'})")
    if output is not None and output.exists() and not args.overwrite:
        parser.error(f"--output {output} exists; pass --overwrite to replace it")
    return args, overrides


def clip_files(paths: list[Path]) -> list[tuple[str, Path]]:
    """(id, file) per clip: a file's id is its stem, a folder's clips (recursive) are named by relative path."""
    from minigpt4.extract.media import MEDIA_SUFFIXES

    out: list[tuple[str, Path]] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
            if not found:
                raise SystemExit(f"predict.py: error: folder {path} holds no clips ({', '.join(MEDIA_SUFFIXES)})")
            out += [(p.relative_to(path).with_suffix("").as_posix(), p) for p in found]
        else:
            out.append((path.stem, path))
    return out


def transcript_for(clip: Path, given: str | None) -> str | None:
    """``--transcript``, else the UTF-8 text of ``<clip>.txt`` beside the clip (a ``MediaError`` naming the
    file when it is not UTF-8: that clip's error line), else None."""
    from minigpt4.serving.predictor import MediaError

    if given is not None:
        return given
    side = clip.with_suffix(".txt")
    if not side.is_file():
        return None
    try:
        return side.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as err:
        raise MediaError(f"{side}: the transcript is not UTF-8 text (byte {err.start}: {err.reason}); save it as "
                         f"UTF-8") from None


def predict_all(predictor, clips: list[tuple[str, Path]], transcript: str | None, out: TextIO,
                max_seconds: float | None = None) -> int:
    """Write one line per clip, flushed as it comes; return how many clips failed."""
    from tqdm import tqdm

    from minigpt4.serving.predictor import MediaError

    failed = 0
    for clip_id, path in tqdm(clips, desc="predicting", unit="clip", disable=len(clips) < 2 or None):
        try:
            record = predictor.predict(path, clip_id, transcript_for(path, transcript), max_seconds=max_seconds)
        except MediaError as err:
            failed += 1
            record = {"id": clip_id, "file": str(path), "error": str(err)}
            print(f"predict.py: {clip_id}: {err}", file=sys.stderr)
        out.write(json.dumps(record) + "\n")
        out.flush()
    return failed


@contextmanager
def _opened(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        yield f


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    from minigpt4.serving.predictor import with_checkpoint

    overrides, weights = with_checkpoint("predict.py", args.cfg_path, overrides)
    entry.announce("predict.py", args.cfg_path, weights)
    clips = clip_files(args.clips)
    from minigpt4.serving.predictor import Predictor, load_predict_config

    predictor = Predictor(load_predict_config(args.cfg_path, overrides))
    with _opened(args.output) as out:
        failed = predict_all(predictor, clips, args.transcript, out, args.max_seconds)
    if failed:
        print(f"predict.py: {failed} of {len(clips)} clip(s) failed (error lines written)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(entry.run_main("predict.py", main))
