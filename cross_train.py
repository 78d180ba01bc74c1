"""Cross-validation by corpus groups (IEMOCAP: leave one session out), a test run, and a summary.

With no arguments this is the project's demo (``make demo``): ``train_configs/demo.yaml`` on the embedded demo
corpus, 5 folds plus the held-out test session, in a few minutes on a laptop CPU.

    python cross_train.py [--cfg-path train_configs/X.yaml] [--eval-cfg eval_configs/Y.yaml] [--folds 1,3,test]
                          [--nproc-per-node N] [--ablations] [--prompts N] [--label-mode multi] [--overwrite]
                          [key=value ...]

Rerunning the same command skips finished folds; see ``minigpt4/cross_validation.py`` for the run folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minigpt4 import child_process
from minigpt4.config import split_cli
from minigpt4.cross_validation import CrossValidationError, Options, run

DEFAULT_CONFIG = Path(__file__).resolve().parent / "train_configs" / "demo.yaml"


def parse_args(argv: list[str]) -> Options:
    flags, overrides = split_cli(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="key=value arguments override the config (e.g. run.max_steps=50 "
                                            "run.output_dir=runs/cross/mine).")
    parser.add_argument("--cfg-path", type=Path, default=DEFAULT_CONFIG, help="training config (default: demo)")
    parser.add_argument("--eval-cfg", type=Path, help="config whose eval: section every fold is evaluated with")
    parser.add_argument("--folds", help="comma-separated fold numbers and/or 'test' to run (default: all + test)")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="training processes per fold (torchrun)")
    parser.add_argument("--ablations", action="store_true",
                        help="also evaluate every fold with each modality left out in turn (ablation.md)")
    parser.add_argument("--prompts", type=int, default=0, metavar="N",
                        help="also evaluate every fold under N instructions of the pool (prompts.md)")
    parser.add_argument("--label-mode", choices=("single", "multi"), help="sets data.label_mode")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing run folder of this name")
    args = parser.parse_args(flags)
    units = [u.strip() for u in args.folds.split(",") if u.strip()] if args.folds else None
    return Options(cfg_path=args.cfg_path, overrides=overrides, eval_cfg=args.eval_cfg, units=units,
                   nproc=args.nproc_per_node, ablations=args.ablations, prompts=args.prompts,
                   label_mode=args.label_mode, overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    child_process.exit_on_sigterm()  # SIGTERM stops the fold's trainer, which then checkpoints
    try:
        run(parse_args(sys.argv[1:] if argv is None else argv))
    except CrossValidationError as err:
        print(f"cross_train.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
