"""Cross-validation by corpus groups (IEMOCAP: leave one session out), a test run, and a summary.

With no arguments this is the project's demo (``make demo``): ``train_configs/demo.yaml`` on the embedded demo
corpus, 5 folds plus the held-out test session, in a few minutes on a laptop CPU.

    python cross_train.py [--cfg-path train_configs/X.yaml] [--eval-cfg eval_configs/Y.yaml] [--folds 1,3,test]
                          [--nproc-per-node N] [--jobs N] [--launcher local|slurm|submitit-local]
                          [--submitit-param NAME VALUE] [--ablations] [--prompts N] [--label-mode multi]
                          [--overwrite] [key=value ...]

Each fold is one process (train, then evaluate); ``--jobs N`` runs N at once. Rerunning the same command skips
finished folds; see ``minigpt4/cross_validation/plan.py`` for the run folder.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from minigpt4.runtime import child_process

from minigpt4 import entry

if TYPE_CHECKING:
    from minigpt4.cross_validation.plan import Options

KEYS = ("run.output_dir", "run.num_folds", "run.max_steps", "run.lr", "run.seed", "data.corpus", "data.root",
        "data.label_mode", "eval.mode")
EXAMPLES = ("python cross_train.py",
            "python cross_train.py --folds 1,test run.max_steps=100 run.output_dir=runs/cross/short",
            "python cross_train.py --ablations --prompts 3 run.output_dir=runs/cross/studies",
            "python cross_train.py --jobs 2 --nproc-per-node 4 --cfg-path train_configs/iemocap_4class.yaml "
            "data.root=/data/IEMOCAP",
            "python cross_train.py --launcher slurm --submitit-param slurm_partition gpu --submitit-param "
            "gpus_per_node 4 --nproc-per-node 4 --cfg-path train_configs/iemocap_4class.yaml data.root=/data/IEMOCAP",
            "python cross_train.py --cfg-path train_configs/iemocap_4class.yaml data.root=/data/IEMOCAP")


def parse_args(argv: list[str]) -> Options:
    parser = entry.make_parser("cross_train.py", __doc__, KEYS, EXAMPLES,
                               default="; writes runs/cross/demo (run.output_dir of a --cfg-path X.yaml: runs/cross/X)")
    parser.add_argument("--eval-cfg", type=Path, help="config whose eval: section every fold is evaluated with")
    parser.add_argument("--folds", help="comma-separated fold numbers and/or 'test' to run (default: all + test)")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="training processes per fold (torchrun)")
    parser.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="folds at once, each on its own device set: a CUDA device subset per fold, else an "
                             "equal share of the CPU cores (default 0: as many as the devices hold; the "
                             "per-fold results do not depend on N)")
    parser.add_argument("--launcher", choices=("local", "slurm", "submitit-local"), default="local",
                        help="where folds run: child processes here (default), SLURM jobs through submitit, or "
                             "submitit's local executor (the same submission path, without a cluster)")
    parser.add_argument("--submitit-param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a submitit executor parameter, repeatable: timeout_min 600, gpus_per_node 4, "
                             "cpus_per_task 8, mem_gb 64, slurm_partition gpu, slurm_account X ...")
    parser.add_argument("--ablations", action="store_true",
                        help="also evaluate every fold with each modality left out in turn (ablation.md)")
    parser.add_argument("--prompts", type=int, default=0, metavar="N",
                        help="also evaluate every fold under N instructions of the pool (prompts.md)")
    parser.add_argument("--label-mode", choices=("single", "multi"), help="sets data.label_mode")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing run folder of this name")
    args, overrides = entry.parse(parser, argv)
    entry.announce("cross_train.py", args.cfg_path)
    from minigpt4.cross_validation.plan import Options

    units = [u.strip() for u in args.folds.split(",") if u.strip()] if args.folds else None
    return Options(cfg_path=entry.recipe(args.cfg_path), overrides=overrides, eval_cfg=args.eval_cfg, units=units,
                   nproc=args.nproc_per_node, ablations=args.ablations, prompts=args.prompts,
                   label_mode=args.label_mode, overwrite=args.overwrite, jobs=args.jobs, launcher=args.launcher,
                   submitit=[f"{name}={value}" for name, value in args.submitit_param])


def main(argv: list[str] | None = None) -> int:
    from minigpt4.cross_validation.plan import CrossValidationError, cross_validate

    child_process.exit_on_sigterm()  # SIGTERM stops the fold's trainer, which then checkpoints
    try:
        cross_validate(parse_args(sys.argv[1:] if argv is None else argv))
    except CrossValidationError as err:
        print(f"cross_train.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(entry.run_main("cross_train.py", main))
