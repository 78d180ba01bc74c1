"""Run fold commands at the same time: owned local children, each on its own device set, or submitit jobs.

Why device sets: two folds sharing all cores both spin their OpenMP threads and each runs slower than alone;
two folds on the same GPU fight for its memory. Each concurrent slot therefore gets a disjoint CUDA device
subset on GPU machines, or an equal share of the cores as its thread count on CPU. Why one scheduler for both
launchers: the run folder, skip-finished/resume and the summary stay the orchestrator's, whether a fold runs
here or as a SLURM job.
"""
from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar

import torch

from minigpt4.cross_validation.fold_command import FoldCommand
from minigpt4.runtime import child_process

POLL_S = 0.5
Task = TypeVar("Task")


class FoldLaunchError(RuntimeError):
    """Folds cannot be placed or submitted as asked; the message says why."""

def visible_gpus() -> list[str]:
    """CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (an existing mask is kept)."""

    count = torch.cuda.device_count()
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [d.strip() for d in mask.split(",") if d.strip()] if mask is not None else [str(i) for i in range(count)]
    return names[:count]


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def auto_jobs(nproc: int, gpus: Sequence[str], cores: int) -> int:
    """As many folds at once as the devices hold: GPUs // processes per fold, else cores // processes."""
    return max(1, (len(gpus) if gpus else cores) // nproc)


def device_sets(jobs: int, nproc: int, gpus: Sequence[str], cores: int) -> list[dict[str, str]]:
    """Extra environment of each of ``jobs`` concurrent slots (a fold of ``nproc`` processes runs in one)."""
    if gpus:
        if jobs * nproc > len(gpus):
            raise FoldLaunchError(f"--jobs {jobs} x --nproc-per-node {nproc} needs {jobs * nproc} GPUs; "
                                  f"{len(gpus)} visible ({','.join(gpus)})")
        return [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * nproc:(i + 1) * nproc])} for i in range(jobs)]
    threads = str(max(1, cores // (jobs * nproc)))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(jobs)]


class Launched(Protocol):
    """A fold unit started by a launcher, local or a submitit job."""
    where: str
    """What a user opens to follow it (the log file, or the job id and its log)."""

    def poll(self) -> int | None:
        """The exit status once finished, else None."""

    def stop(self) -> None:
        """Ask it to end (SIGTERM: the trainer checkpoints) and wait for that."""

class LocalFold:
    """A fold unit run as an owned child process of this machine."""
    def __init__(self, command: FoldCommand) -> None:
        self.proc = command.start()
        self.where = str(command.log)

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        child_process.stop(self.proc)


class SubmititFold:
    """A fold unit run as a submitit job (SLURM, or its local executor in tests)."""
    def __init__(self, executor: Any, command: FoldCommand) -> None:
        self.job = executor.submit(command)
        self.log = command.log
        self.where = f"job {self.job.job_id}, log {command.log}"

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            return int(self.job.result())
        except Exception as err:  # the job itself failed (timeout, node failure, cancelled): say where to look
            with self.log.open("a", encoding="utf-8") as log:
                log.write(f"submitit job {self.job.job_id} failed: {err}\nits own output: {self.job.paths.stdout} "
                          f"and {self.job.paths.stderr}\n")
            return -1

    def stop(self) -> None:
        self.job.cancel(check=False)


def submitit_executor(folder: Path, cluster: str, params: Mapping[str, Any]) -> Any:
    """A submitit executor (``slurm``, or ``local`` to try the same path without a cluster); ``params`` are its
    ``update_parameters`` (``timeout_min``, ``gpus_per_node``, ``slurm_partition`` ...), checked by submitit."""
    import submitit  # optional: only the SLURM / submitit launchers need it

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    try:
        executor.update_parameters(**{"timeout_min": 24 * 60, "tasks_per_node": 1, "nodes": 1, **params})
    except (NameError, ValueError, TypeError, AssertionError) as err:  # submitit checks types with assert
        raise FoldLaunchError(f"--submitit-param {dict(params)}: {err}") from None
    return executor


def run_all(tasks: Sequence[Task], slots: Sequence[Mapping[str, str]],
            start: Callable[[Task, Mapping[str, str]], Launched], done: Callable[[Task, int], None]) -> None:
    """Run every task, at most one per slot at a time, in order; ``done`` gets each exit status as it comes.

    When anything raises (``done`` rejecting a failed fold, Ctrl-C, SIGTERM), every running fold is stopped
    before the exception goes on, so no fold outlives the run that started it.
    """
    pending = deque(tasks)
    free = list(slots)
    running: list[tuple[Task, Mapping[str, str], Launched]] = []
    try:
        while pending or running:
            while pending and free:
                task, slot = pending.popleft(), free.pop(0)
                running.append((task, slot, start(task, slot)))
            time.sleep(POLL_S)
            for entry in list(running):
                status = entry[2].poll()
                if status is not None:
                    running.remove(entry)
                    free.append(entry[1])
                    done(entry[0], status)
    except BaseException:
        for _, _, launched in running:
            if isinstance(launched, LocalFold):
                launched.proc.terminate()  # all at once: each gets its grace period in parallel
        for _, _, launched in running:
            launched.stop()
        raise

