"""One cross-validation unit in one process: train (or resume) it, then evaluate its held-out samples.

Why one process: every Python process pays the torch/transformers start-up (seconds on a laptop), and a fold
that trains and then evaluates in the same process pays it once. ``cross_validation`` runs this as an owned
child (``python -m minigpt4.cross_validation.fold_job``), under ``torchrun -m`` for a multi-process fold, or inside a SLURM job
(:class:`FoldCommand`, pickled by submitit).

    python -m minigpt4.cross_validation.fold_job [--train-config fold/config.yaml [--resume]] --eval-config fold/eval_config.yaml
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from minigpt4.data.run_config import load_config
from minigpt4.evaluation.runner import evaluate_checkpoint
from minigpt4.runtime import child_process
from minigpt4.runtime.output_folder import OutputFolderError
from minigpt4.runtime.run_lock import RunLocked
from minigpt4.training.loop import TrainingInterrupted, fit

LOG_ENV = {"PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
"""Complete logs, no progress-bar redraws: a fold's output goes to a file."""

def command(train_config: Path | None, eval_config: Path, resume: bool, nproc: int) -> list[str]:
    """The command line of one unit: this module, under torchrun when the fold has several processes."""
    args = [*(["--train-config", str(train_config)] if train_config else []), *(["--resume"] if resume else []),
            "--eval-config", str(eval_config)]
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                "-m", __name__, *args]
    return [sys.executable, "-m", __name__, *args]


@dataclass
class FoldCommand:
    """A unit's command with its log file and extra environment: what a SLURM job (or the local executor of
    submitit) runs on its node. Returns the exit status, so a failing fold is reported like a local one."""

    cmd: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> subprocess.Popen:
        """Start it as an owned child writing into its log (the child keeps the file open, this process not)."""
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(self.cmd)}\n")
            log.flush()
            return child_process.start(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=os.environ | LOG_ENV | self.env)

    def __call__(self) -> int:
        return child_process.wait(self.start())


def run_fold(train_config: Path | None, eval_config: Path, resume: bool) -> None:

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
        return 143  # 128 + SIGTERM, as train.py: the checkpoint it wrote is resumed by the next run
    return 0


if __name__ == "__main__":
    sys.exit(main())
