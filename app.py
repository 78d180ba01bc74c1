"""The demo page and JSON API for a trained checkpoint (``make app``).

    python app.py [--cfg-path eval_configs/X.yaml] [model.checkpoint=DIR] [--host 127.0.0.1] [--port 7860]
                  [--max-upload-mb 50] [--examples FOLDER] [key=value ...]

With no arguments it serves the demo checkpoint that ``make demo`` trains and offers held-out demo clips as
examples. Open http://127.0.0.1:7860/ ; the API is ``POST /predict`` (multipart: ``clip`` file, optional
``transcript``), answering the JSON line ``predict.py`` prints, and ``GET /health``. It binds to 127.0.0.1
unless ``--host`` says otherwise.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from minigpt4.config import split_cli
    from minigpt4.web import DEFAULT_MAX_UPLOAD_MB

    rest, overrides = split_cli(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg-path", help="evaluation YAML whose eval: section says how to predict "
                                           "(default: the checkpoint's own)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help="uploads larger than this are refused with 413")
    parser.add_argument("--examples", type=Path,
                        help="offer the clips in this folder as examples (default: demo clips for the demo corpus)")
    return parser.parse_args(rest), overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    import uvicorn

    from minigpt4.inference import Predictor, default_checkpoint, example_clips, folder_examples, load_predict_config
    from minigpt4.web import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_predict_config(args.cfg_path, default_checkpoint(overrides))
        examples = folder_examples(args.examples) if args.examples else example_clips(cfg)
    except (FileNotFoundError, ValueError) as err:
        print(f"app.py: error: {err}", file=sys.stderr)
        return 2
    app = create_app(Predictor(cfg), examples, args.max_upload_mb)
    print(f"serving {cfg.model.checkpoint} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
