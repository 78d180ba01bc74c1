"""How a cross-validation unit is launched: its command line, log and environment. Light on purpose: the launcher
and the submitit pickle import only this, while the fold job itself (:mod:`fold_job`) pays the torch start-up."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from minigpt4.runtime import child_process

JOB_MODULE = "minigpt4.cross_validation.fold_job"
LOG_ENV = {"PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
"""Complete logs, no progress-bar redraws: a fold's output goes to a file."""

def command(train_config: Path | None, eval_config: Path, resume: bool, nproc: int) -> list[str]:
    """The command line of one unit: this module, under torchrun when the fold has several processes."""
    args = [*(["--train-config", str(train_config)] if train_config else []), *(["--resume"] if resume else []),
            "--eval-config", str(eval_config)]
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                "-m", JOB_MODULE, *args]
    return [sys.executable, "-m", JOB_MODULE, *args]


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
