"""One cross-validation unit in one process: train (or resume) it, then evaluate its held-out samples.

Why one process: every Python process pays the torch/transformers start-up (seconds on a laptop), and a fold
that trains and then evaluates in the same process pays it once. ``cross_validation`` runs this as an owned
child (``python -m minigpt4.cross_validation.fold_job``), under ``torchrun -m`` for a multi-process fold, or inside a SLURM job
(:class:`~minigpt4.cross_validation.fold_command.FoldCommand`, pickled by submitit).

    python -m minigpt4.cross_validation.fold_job [--train-config fold/config.yaml [--resume]] --eval-config fold/eval_config.yaml
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minigpt4.data.run_config import load_config
from minigpt4.evaluation.runner import evaluate_checkpoint
from minigpt4.runtime.output_folder import OutputFolderError
from minigpt4.runtime.run_lock import RunLocked
from minigpt4.training.loop import TrainingInterrupted, fit


def run_fold(train_config: Path | None, eval_config: Path, resume: bool) -> None:
    """Train the unit (or resume it) when it has a training config, then evaluate it."""
    if train_config is not None:
        fit(load_config(train_config, ["run.resume=true"] if resume else []))
    evaluate_checkpoint(load_config(eval_config))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-config", type=Path, help="the unit's training config (omitted: trained already)")
    parser.add_argument("--resume", action="store_true", help="continue from the unit's last checkpoint")
    parser.add_argument("--eval-config", type=Path, required=True, help="the unit's evaluation config")
    args = parser.parse_args(argv)

    try:
        run_fold(args.train_config, args.eval_config, args.resume)
    except (OutputFolderError, RunLocked) as err:
        print(f"fold_job: error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:
        print(f"fold_job: {err}", file=sys.stderr)
        return err.exit_status  # 128 + the signal, as train.py: the checkpoint it wrote is resumed by the next run
    return 0


if __name__ == "__main__":
    sys.exit(main())
