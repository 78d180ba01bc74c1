"""A sweep: every setting checked, then run by Hydra's sweeper and launcher, each as a cross_train run folder.

A setting is a cross-validation run (``minigpt4.cross_validation``) of the recipe plus the setting's overrides:
the test unit only (one training run on the training pool, checkpoint chosen on the inner validation split,
scored on the test split) or, with ``cross``, every fold as well. So each setting has exactly the typed
config loading, run-folder fingerprint, lock, resume and skip-finished of ``cross_train.py``.

Layout of the sweep folder::

    created_by.json     sweep.py's marker: the base config every setting starts from (a rerun must match)
    recipe.yaml         the config file without its sweep: block: the --cfg-path of every setting
    multirun.yaml       Hydra's record of the sweep (its sweeper and launcher settings)
    <key-value,...>/    one setting: a cross_train.py run folder (test/, fold_<k>/, summary) + setting.json
    submitit/           submitit's job files (--launcher slurm / submitit-local, or --jobs above 1)
    sweep.md  sweep.json    one row per finished setting, best first
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from minigpt4.config import ConfigError
from minigpt4.cross_validation.plan import CrossValidationError, cross_validate
from minigpt4.cross_validation.plan import Options as CrossOptions
from minigpt4.data.run_config import load_config
from minigpt4.runtime import output_folder
from minigpt4.runtime.run_folder import differences
from minigpt4.sweep import results
from minigpt4.sweep.hydra_run import Job, Slot, hydra_overrides, multirun
from minigpt4.sweep.spec import SweepError, check_settings, make_spec, read_recipe, split_overrides, sweep_params

TOOL = "sweep.py"
RECIPE = "recipe.yaml"


@dataclass
class Options:
    """What sweep.py was asked: the config file, its ``key=value`` overrides and the sweep flags."""

    cfg_path: Path
    overrides: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)
    """Command-line values of :class:`~minigpt4.sweep.spec.SweepSpec` fields (None: not given)."""
    overwrite: bool = False


@dataclass
class SettingRun:
    """Runs one setting into its folder (or finds it finished) and returns the value it is ranked by."""

    recipe: Path
    fixed: list[str]
    metric: str
    cross: bool
    fold_jobs: int

    def __call__(self, setting: list[str], folder: Path) -> float:
        done = results.read_result(folder)
        if done is not None and done["setting"] == setting:
            print(f"[sweep] {' '.join(setting)}: finished earlier, skipped", flush=True)
            return float(done["objective"])
        print(f"[sweep] {' '.join(setting)}: run folder {folder}", flush=True)
        cross_validate(CrossOptions(cfg_path=self.recipe, overrides=[*self.fixed, *setting, f"run.output_dir={folder}"],
                               units=None if self.cross else ["test"], jobs=self.fold_jobs))
        result = results.collect(folder, setting, self.metric, self.cross)
        results.write_result(folder, result)
        return float(result["objective"])


def checked_base(cfg_path: Path, recipe: DictConfig, fixed: list[str], params: list[str], search: str,
                 had_block: bool) -> DictConfig:
    """The base config (recipe + fixed overrides), after loading every setting: nothing runs on a bad one."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / RECIPE
        OmegaConf.save(recipe, path)
        try:
            base = load_config(path, fixed)
            count = check_settings(path, fixed, params, search)
        except (ConfigError, SweepError) as err:
            shown = f"{cfg_path} (without its sweep: block)" if had_block else str(cfg_path)
            raise SweepError(str(err).replace(str(path), shown)) from None
    print(f"[sweep] {count} setting(s) checked: {', '.join(params)}", flush=True)
    return base


def claim(sweep_dir: Path, identity: dict[str, Any], overwrite: bool) -> None:
    """Make ``sweep_dir`` this sweep's folder, or check that it holds a sweep of the same base config."""
    try:
        marker = output_folder.claim_folder(sweep_dir, TOOL, overwrite, identity)
    except output_folder.OutputFolderError as err:
        raise SweepError(str(err)) from None
    if marker is not None and marker["fingerprint"] != output_folder.fingerprint(identity):
        diff = differences(marker["identity"], identity)
        raise SweepError(f"{sweep_dir} holds a sweep of another base config:\n  " + "\n  ".join(diff[:20])
                         + "\nrerun with --overwrite to discard it, or choose another --sweep-dir")


def run(opts: Options) -> Path:
    """Check, run (skipping finished settings) and summarise a sweep; return the path of ``sweep.md``."""
    block, recipe = read_recipe(opts.cfg_path)
    spec = make_spec(block, opts.flags, str(opts.cfg_path))
    fixed, swept = split_overrides(opts.overrides)
    if any(o.split("=", 1)[0].strip() == "run.output_dir" for o in fixed):
        raise SweepError("run.output_dir is set per setting (under the sweep folder): give --sweep-dir instead")
    params = sweep_params(spec, swept)
    base = checked_base(opts.cfg_path, recipe, fixed, params, spec.search, bool(block))
    sweep_dir = Path(spec.output_dir or Path("runs") / "sweeps" / opts.cfg_path.stem).resolve()
    identity = OmegaConf.to_container(base, resolve=True)
    identity["run"].pop("output_dir")
    claim(sweep_dir, {"config": identity, "cross": spec.cross}, opts.overwrite)
    OmegaConf.save(recipe, sweep_dir / RECIPE)
    metric = base.run.best_metric
    job = Job(SettingRun(sweep_dir / RECIPE, fixed, metric, spec.cross, spec.fold_jobs), Slot(spec.jobs))
    try:
        multirun(job, hydra_overrides(spec, sweep_dir, params, maximize=not results.lower_is_better(metric)))
    except CrossValidationError as err:
        raise SweepError(str(err)) from None
    finally:
        rows = results.summarize(sweep_dir, metric)
    print(f"[sweep] {len(rows)} finished setting(s), best first: {sweep_dir / 'sweep.md'}", flush=True)
    return sweep_dir / f"{results.SUMMARY}.md"
