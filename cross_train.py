"""Cross-validation by corpus groups (IEMOCAP: leave one session out), a test run, and a summary.

With no arguments this is the project's demo (``make demo``): ``train_configs/demo.yaml`` on the embedded demo
corpus, 5 folds plus the held-out test session, in a few minutes on a laptop CPU.

    python cross_train.py [--cfg-path train_configs/X.yaml] [--eval-cfg eval_configs/Y.yaml] [--folds 1,3,test]
                          [--nproc-per-node N] [--ablations] [--prompts N] [--label-mode multi] [--overwrite]
                          [key=value ...]

Rerunning the same command skips finished folds; see ``minigpt4/cross_validation.py`` for the run folder.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from minigpt4 import child_process, entry

if TYPE_CHECKING:
    from minigpt4.cross_validation import Options

KEYS = ("run.output_dir", "run.num_folds", "run.max_steps", "run.lr", "run.seed", "data.corpus", "data.root",
        "data.label_mode", "eval.mode")
EXAMPLES = ("python cross_train.py",
            "python cross_train.py --folds 1,test run.max_steps=100 run.output_dir=runs/cross/short",
            "python cross_train.py --ablations --prompts 3 run.output_dir=runs/cross/studies",
            "python cross_train.py --cfg-path train_configs/iemocap_4class.yaml data.root=/data/IEMOCAP")


def parse_args(argv: list[str]) -> Options:
    parser = entry.make_parser("cross_train.py", __doc__, KEYS, EXAMPLES,
                               default="; writes runs/cross/demo (run.output_dir of a --cfg-path X.yaml: runs/cross/X)")
    parser.add_argument("--eval-cfg", type=Path, help="config whose eval: section every fold is evaluated with")
    parser.add_argument("--folds", help="comma-separated fold numbers and/or 'test' to run (default: all + test)")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="training processes per fold (torchrun)")
    parser.add_argument("--ablations", action="store_true",
                        help="also evaluate every fold with each modality left out in turn (ablation.md)")
    parser.add_argument("--prompts", type=int, default=0, metavar="N",
                        help="also evaluate every fold under N instructions of the pool (prompts.md)")
    parser.add_argument("--label-mode", choices=("single", "multi"), help="sets data.label_mode")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing run folder of this name")
    args, overrides = entry.parse(parser, argv)
    entry.announce("cross_train.py", args.cfg_path)
    from minigpt4.cross_validation import Options

    units = [u.strip() for u in args.folds.split(",") if u.strip()] if args.folds else None
    return Options(cfg_path=entry.recipe(args.cfg_path), overrides=overrides, eval_cfg=args.eval_cfg, units=units,
                   nproc=args.nproc_per_node, ablations=args.ablations, prompts=args.prompts,
                   label_mode=args.label_mode, overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    from minigpt4.cross_validation import CrossValidationError, run

    child_process.exit_on_sigterm()  # SIGTERM stops the fold's trainer, which then checkpoints
    try:
        run(parse_args(sys.argv[1:] if argv is None else argv))
    except CrossValidationError as err:
        print(f"cross_train.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
