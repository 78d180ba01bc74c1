"""Launch a sweep's settings with Hydra: its sweepers expand the grid (or run optuna), its launchers place the
runs here or on SLURM. Hydra composes no project config: each job's overrides go to the project's own loader.

Why the compose API and not ``@hydra.main`` on train.py: Hydra's own command line claims ``--cfg`` (print the
config), changes what ``key=value`` means (``+key`` to add, ``~key`` to delete), writes ``outputs/`` and
``.hydra/`` folders and configures logging; train.py's ``--cfg-path FILE key=value`` must keep working as it
does. So sweep.py parses its own flags and drives Hydra from here: the primary config is the project's schema
(``Config``, registered in Hydra's ConfigStore) so a mistyped swept key fails in Hydra too, and the job function
ignores the config Hydra composes and reads only the job's overrides (``HydraConfig.overrides.task``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra import initialize
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from minigpt4.config import Config
from minigpt4.sweep.spec import SweepSpec

SCHEMA = "emotion_llama_schema"
HYDRA_LAUNCHERS = {"local": "basic", "submitit-local": "submitit_local", "slurm": "submitit_slurm"}
KV_SEP = "-"
"""Key/value separator of setting folder names (``model.lora.r-8,run.lr-0.01``): not ``=``, which entry points
read as an override wherever a folder is passed on their command line."""


@dataclass
class Slot:
    """The share of the cores of a job that runs beside ``jobs - 1`` others (``jobs`` per batch)."""

    jobs: int

    def pin(self, job_num: int) -> None:
        """Restrict this process (and the fold processes it starts) to its equal share of the cores."""
        if self.jobs < 2 or not hasattr(os, "sched_setaffinity"):
            return
        cores = sorted(os.sched_getaffinity(0))
        share = max(1, len(cores) // self.jobs)
        start = (job_num % self.jobs) * share % len(cores)
        os.sched_setaffinity(0, cores[start:start + share])


@dataclass
class Job:
    """What Hydra runs for one setting (pickled by submitit, so everything it needs is in its fields)."""

    run_setting: Callable[[list[str], Path], float]
    slot: Slot

    def __call__(self, _composed: DictConfig) -> float:
        hydra = HydraConfig.get()
        self.slot.pin(int(hydra.job.num))
        return self.run_setting(list(hydra.overrides.task), Path(hydra.runtime.output_dir))


def hydra_overrides(spec: SweepSpec, sweep_dir: Path, params: Sequence[str], maximize: bool) -> list[str]:
    """The Hydra configuration of a sweep: where settings go, which sweeper and launcher, and the swept keys."""
    out = [f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra.job.override_dirname}",
           f"hydra.job.config.override_dirname.kv_sep={KV_SEP}", "hydra.output_subdir=null",
           "hydra/job_logging=none", "hydra/hydra_logging=none", f"hydra/launcher={HYDRA_LAUNCHERS[spec.launcher]}"]
    if spec.launcher != "local" or spec.jobs > 1:
        if spec.launcher == "local":  # N at a time here: each setting its own process, submitit's local executor
            out[-1] = f"hydra/launcher={HYDRA_LAUNCHERS['submitit-local']}"
        out += [f"hydra.launcher.submitit_folder={sweep_dir / 'submitit' / '%j'}",
                *(f"hydra.launcher.{k}={v}" for k, v in spec.launcher_params.items())]
    if spec.search == "optuna":
        out += ["hydra/sweeper=optuna", f"hydra.sweeper.n_trials={spec.trials}", f"hydra.sweeper.n_jobs={spec.jobs}",
                f"hydra.sweeper.sampler.seed={spec.seed}",
                f"hydra.sweeper.direction={'maximize' if maximize else 'minimize'}"]
    else:
        out.append(f"hydra.sweeper.max_batch_size={spec.jobs}")
    return out + list(params)


def multirun(job: Job, overrides: Sequence[str]) -> Any:
    """Hydra's multirun (sweeper + launcher) over ``overrides``, with the schema as primary config."""
    ConfigStore.instance().store(name=SCHEMA, node=Config)
    with initialize(version_base="1.3", config_path=None):
        return GlobalHydra.instance().hydra.multirun(config_name=SCHEMA, task_function=job,
                                                     overrides=list(overrides))
