"""Hyper-parameter sweeps: every setting of the swept keys trained (or cross-validated) in its own run folder
under one sweep folder, then ranked in ``sweep.md`` / ``sweep.json``. Hydra's sweepers and launchers do the
launching (sequentially here, N at a time, or on SLURM through hydra-submitit-launcher); the project's own
config loader reads every setting, exactly as train.py would.

    python sweep.py [--cfg-path FILE.yaml] [--sweep-dir DIR] [--cross] [--jobs N] [--fold-jobs N]
                    [--launcher local|submitit-local|slurm] [--launcher-param NAME VALUE]
                    [--search grid|optuna] [--trials N] [--seed S] [--overwrite] [key=value | key=a,b ...]

``key=a,b`` (or ``choice(a,b)``, ``range(1,4)``; with ``--search optuna`` also ``interval(1e-4,1e-2)``) sweeps a
key; a plain ``key=value`` applies to every setting. A ``sweep:`` block in the config file gives the same
(flags and command-line keys win). Every setting is checked before the first one runs, and rerunning the
same command skips finished settings and resumes interrupted ones.
"""
from __future__ import annotations

import sys

from minigpt4 import entry
from minigpt4.runtime import child_process

KEYS = ("run.lr", "run.max_steps", "model.lora.r", "model.projector_hidden", "run.seed")
EXAMPLES = ("python sweep.py --cfg-path train_configs/sweep_demo.yaml",
            "python sweep.py run.lr=3e-3,1e-2 model.lora.r=8,16 run.max_steps=300",
            "python sweep.py --cross --fold-jobs 2 run.lr=3e-3,1e-2",
            "python sweep.py --search optuna --trials 8 --seed 0 'run.lr=tag(log,interval(1e-3,3e-2))'",
            "python sweep.py --launcher slurm --launcher-param partition gpu --launcher-param gpus_per_node 1 "
            "--cfg-path train_configs/iemocap_4class.yaml data.root=/data/IEMOCAP run.lr=1e-4,3e-4")
SPEC_FLAGS = ("sweep_dir", "cross", "jobs", "fold_jobs", "launcher", "search", "trials", "seed")


def main(argv: list[str] | None = None) -> int:
    parser = entry.make_parser("sweep.py", __doc__, KEYS, EXAMPLES,
                               default="; sweep folder runs/sweeps/<config file name>")
    parser.add_argument("--sweep-dir", help="the sweep folder (default: runs/sweeps/<config file name>)")
    parser.add_argument("--cross", action="store_true", default=None,
                        help="cross-validate every setting (ranked by fold mean) instead of one training run")
    parser.add_argument("--jobs", type=int, help="settings at once, each with its share of the cores (default 1)")
    parser.add_argument("--fold-jobs", type=int, help="folds of a setting at once (cross_train.py --jobs)")
    parser.add_argument("--launcher", choices=("local", "submitit-local", "slurm"),
                        help="where settings run: here (default), SLURM through hydra-submitit-launcher, or "
                             "submitit's local executor (the same submission path, without a cluster)")
    parser.add_argument("--launcher-param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a hydra-submitit-launcher parameter, repeatable: timeout_min 600, gpus_per_node 1, "
                             "cpus_per_task 8, mem_gb 64, partition gpu, account X ...")
    parser.add_argument("--search", choices=("grid", "optuna"), help="every combination (default) or optuna")
    parser.add_argument("--trials", type=int, help="optuna: the trial budget (default 8)")
    parser.add_argument("--seed", type=int, help="optuna: the sampler's seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="discard an earlier sweep in the sweep folder")
    args, overrides = entry.parse(parser, sys.argv[1:] if argv is None else argv)
    from minigpt4.sweep import Options, SweepError, run

    child_process.exit_on_sigterm()
    recipe = entry.recipe(args.cfg_path)
    entry.announce("sweep.py", args.cfg_path)
    flags = {name: getattr(args, name) for name in SPEC_FLAGS}
    flags["output_dir"] = flags.pop("sweep_dir")
    if args.launcher_param:
        flags["launcher_params"] = dict(args.launcher_param)
    try:
        run(Options(recipe, overrides, flags, args.overwrite))
    except SweepError as err:
        print(f"sweep.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
