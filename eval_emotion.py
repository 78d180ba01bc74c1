"""Evaluate a checkpoint, or rescore saved predictions without a model.

    python eval_emotion.py [--cfg-path eval_configs/X.yaml] [model.checkpoint=RUN/final] [key=value ...]
    torchrun --nproc-per-node 4 eval_emotion.py --cfg-path eval_configs/eval_emotion.yaml ...
    python eval_emotion.py --from-predictions runs/x/predictions.jsonl --labels happy,sad,neutral,angry \
        --output-dir runs/x_rescored [--label-mode multi]

A config that names no checkpoint is refused (pass --untrained to evaluate the initial weights on purpose).

A model run writes into ``run.output_dir``: metrics.json, predictions.jsonl, report.md, report.txt, run.json,
confusion_matrix.png, confusion_matrix_normalized.png and the resolved config.yaml, plus ablation.* /
prompts.* when ``eval.ablations`` / ``eval.prompts`` ask for them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


KEYS = ("model.checkpoint", "run.output_dir", "eval.mode", "eval.split", "eval.ablations", "eval.prompts",
        "eval.max_samples", "eval.batch_size", "data.label_mode", "data.corpus")
EXAMPLES = ("python eval_emotion.py",
            "python eval_emotion.py 'eval.ablations=[[audio],[face,video,text]]'",
            "python eval_emotion.py model.checkpoint=runs/demo/final eval.mode=generate run.output_dir=runs/demo/eval_gen",
            "python eval_emotion.py --from-predictions runs/demo/eval/predictions.jsonl --labels demo "
            "--output-dir runs/demo/rescored")
DEFAULT = ("; model.checkpoint defaults to the newest demo checkpoint\n  (runs/demo/final from `python train.py`, "
           "runs/cross/demo/test/final from `make demo`); writes runs/demo/eval")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from minigpt4 import entry

    parser = entry.make_parser("eval_emotion.py", __doc__, KEYS, EXAMPLES, default=DEFAULT)
    parser.add_argument("--untrained", action="store_true",
                        help="evaluate the initial (untrained) weights on purpose when no checkpoint is named")
    parser.add_argument("--from-predictions", type=Path, help="rescore this predictions.jsonl (no model)")
    parser.add_argument("--labels", help="with --from-predictions: label-set name or comma-separated labels, "
                                         "in report order")
    parser.add_argument("--output-dir", type=Path, help="with --from-predictions: where to write (required: the "
                                                        "original reports are never rewritten)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier evaluation in the output folder (never a folder it did not create)")
    parser.add_argument("--label-mode", choices=("single", "multi"),
                        help="with --from-predictions (default: multi when any sample has several gold labels)")
    args, overrides = entry.parse(parser, argv)
    if args.from_predictions is None:
        for flag in ("labels", "output_dir", "label_mode"):
            if getattr(args, flag) is not None:
                parser.error(f"--{flag.replace('_', '-')} only applies with --from-predictions")
    else:
        if args.labels is None:
            parser.error("--from-predictions needs --labels (a label-set name or a comma-separated list)")
        if args.output_dir is None:
            parser.error("--from-predictions needs --output-dir (a new folder: the original reports are kept)")
        if args.cfg_path or overrides or args.untrained:
            parser.error("--from-predictions takes no --cfg-path, --untrained or key=value overrides")
    return args, overrides


def claim_output(folder: Path, overwrite: bool) -> None:
    """Write only into a new or empty folder, or an earlier evaluation's under ``--overwrite``."""
    from minigpt4.runtime.output_folder import OutputFolderError, claim_folder

    try:
        if claim_folder(folder, "eval_emotion.py", overwrite) is not None:
            raise OutputFolderError(f"{folder} holds an earlier evaluation: pass --overwrite to replace it, or "
                                    f"write elsewhere")
    except OutputFolderError as err:
        raise SystemExit(f"eval_emotion.py: error: {err}") from None


def rescore_main(args: argparse.Namespace) -> dict:
    # Only the report stack is imported: rescoring needs no model, torch or data.
    from minigpt4.evaluation.report import rescore

    if not args.from_predictions.is_file():
        raise SystemExit(f"--from-predictions: file not found: {args.from_predictions}")
    claim_output(args.output_dir, args.overwrite)
    return rescore(args.from_predictions, args.labels, args.label_mode, args.output_dir)


def evaluate_main(args: argparse.Namespace, overrides: list[str]) -> dict | None:
    from minigpt4 import entry

    cfg, weights = entry.load_trained("eval_emotion.py", args.cfg_path, overrides, untrained=args.untrained)
    if not args.cfg_path and not any(o.startswith("run.output_dir=") for o in overrides):
        # The demo recipe's run.output_dir is the training run's folder: evaluate beside it, not into it.
        cfg.run.output_dir = str(Path(cfg.run.output_dir) / "eval")
    entry.announce("eval_emotion.py", args.cfg_path, f"{weights}; writing {cfg.run.output_dir}")
    from minigpt4.evaluation.runner import evaluate_checkpoint

    out_dir = Path(cfg.run.output_dir)
    if os.environ.get("RANK", "0") == "0":  # before any rank writes; a refusal ends the torchrun job
        claim_output(out_dir, args.overwrite)
    return evaluate_checkpoint(cfg)


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    metrics = rescore_main(args) if args.from_predictions is not None else evaluate_main(args, overrides)
    if metrics is not None:
        from minigpt4.evaluation.report import HEADLINE

        print(json.dumps({k: metrics[k] for k in HEADLINE if k in metrics}, indent=2))


if __name__ == "__main__":
    from minigpt4 import entry

    sys.exit(entry.run_main("eval_emotion.py", main))
