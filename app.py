"""The demo page and JSON API for a trained checkpoint (``make app``).

    python app.py [--cfg-path eval_configs/X.yaml] [model.checkpoint=DIR] [--host 127.0.0.1] [--port 7860]
                  [--max-upload-mb 50] [--max-clip-seconds 60] [--allowed-host NAME] [--examples FOLDER]
                  [key=value ...]

Open http://127.0.0.1:7860/ : upload a clip (or pick an example), optionally type its transcript, and see the
emotion, a bar chart of class probabilities, the face crop and waveform used and the answer. The API:
``POST /predict`` (multipart: ``clip`` file, optional ``transcript``) answers the JSON line ``predict.py``
prints; ``GET /health`` names the checkpoint, its labels and modalities. Uploads over the size cap and clips
over the duration cap get 413, non-media 415, undecodable clips 422. It binds to 127.0.0.1 unless ``--host``
says otherwise, answers only to local ``Host`` names (plus ``--host`` and each ``--allowed-host``), and refuses
POSTs from pages of other origins.
"""
from __future__ import annotations

import sys
from pathlib import Path

from minigpt4 import entry

KEYS = ("model.checkpoint", "eval.mode", "eval.max_new_tokens")
EXAMPLES = ("python app.py",
            "python app.py model.checkpoint=runs/demo/final --port 8080",
            "python app.py --examples my_clips/ --max-upload-mb 200",
            "curl -F clip=@clip.mp4 -F transcript='I told you so!' http://127.0.0.1:7860/predict")
DEFAULT = "; examples: held-out demo clips"


def parse_args(argv: list[str]):
    from minigpt4.serving.web import DEFAULT_MAX_CLIP_SECONDS, DEFAULT_MAX_UPLOAD_MB

    parser = entry.make_serving_parser("app.py", __doc__, KEYS, EXAMPLES, default=DEFAULT)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"uploads larger than this are refused with 413 (default {DEFAULT_MAX_UPLOAD_MB})")
    parser.add_argument("--max-clip-seconds", type=float, default=DEFAULT_MAX_CLIP_SECONDS,
                        help=f"clips longer than this are refused with 413 before decoding (default "
                             f"{DEFAULT_MAX_CLIP_SECONDS:g}; 0: no limit)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="also answer requests whose Host is NAME (the name clients use when --host is not "
                             "local; '*' for any)")
    parser.add_argument("--examples", type=Path,
                        help="offer the clips in this folder as examples (default: demo clips for the demo corpus)")
    return entry.parse(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    from minigpt4.serving.predictor import with_checkpoint

    overrides, weights = with_checkpoint("app.py", args.cfg_path, overrides)
    entry.announce("app.py", args.cfg_path, f"{weights}; http://{args.host}:{args.port}/")
    import uvicorn

    from minigpt4.serving.concurrent import ConcurrentPredictor
    from minigpt4.serving.predictor import Predictor, example_clips, folder_examples, load_predict_config
    from minigpt4.serving.web import LOCAL_HOSTS, create_app

    cfg = load_predict_config(args.cfg_path, overrides)
    examples = folder_examples(args.examples) if args.examples else example_clips(cfg)
    app_predictor = ConcurrentPredictor(Predictor(cfg))  # clients at once: extraction workers, batched model
    app = create_app(app_predictor, examples, args.max_upload_mb, max_clip_seconds=args.max_clip_seconds or None,
                     allowed_hosts=[*LOCAL_HOSTS, args.host, *args.allowed_host])
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        app_predictor.close()
    return 0


if __name__ == "__main__":
    sys.exit(entry.run_main("app.py", main))
