"""Cross-validation by corpus groups: one process per fold (train, then evaluate), folds in parallel, a summary.

Why subprocesses: each fold starts from a clean interpreter (same base checkpoint, same seeded init, no state
leaking from another fold) and a fold that fails stops the run with its own log tail. Why one process per fold
(``fold_job``): the torch/transformers start-up is paid once, not once for training and again for evaluation.
Why parallel: folds are independent; ``--jobs N`` runs N at once, each on its own device set, here or as
SLURM jobs through submitit (``launch``), and the result does not depend on N. Why a run folder with a
fingerprint: a rerun of the same command skips finished folds, and a rerun of a *different* command never
mixes its folds into an old summary. Tracked config files are never written: every fold's resolved config
lives in the run folder.

Layout of ``<output_dir>``::

    cross_run.json      fingerprint and options of the run (what a rerun must match)
    base_config.yaml    the resolved base config every fold derives from
    folds.json          held-out / inner-validation groups and sizes of every fold
    cross_train.log     the progress lines printed on the console
    fold_<k>/           config.yaml, eval_config.yaml, fold.out (the fold process's output), train.log,
                        checkpoints/, final/, eval/
    test/               the same for the run trained on the whole pool and evaluated on the test split
    submitit/           submitit's job files (with --launcher slurm / submitit-local)
    summary.json  summary.md  confusion_matrix_folds.png   (report.summarize_folds)
    ablation.md/.json  prompts.md/.json                    (with --ablations / --prompts)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from minigpt4.config import ConfigError, save_config
from minigpt4.cross_validation import fold_command, launch
from minigpt4.cross_validation.fold_command import FoldCommand
from minigpt4.data.corpora import load_corpus
from minigpt4.data.labels import LabelSet
from minigpt4.data.run_config import load_config
from minigpt4.data.splits import select_splits
from minigpt4.evaluation.report import mean_std, summarize_folds, write_table
from minigpt4.runtime import run_folder, run_lock
from minigpt4.runtime.output_folder import fingerprint
from minigpt4.runtime.errors import UserError

RUN_FILE = "cross_run.json"
BASE_CONFIG = "base_config.yaml"
FOLDS_FILE = "folds.json"
PROGRESS_LOG = "cross_train.log"
TEST = "test"
FOLD_LOG = "fold.out"
PARTIAL_EVAL = "eval.partial"
SUBMITIT_DIR = "submitit"
SUBMITIT_CLUSTERS = {"slurm": "slurm", "submitit-local": "local"}
LAUNCHERS = ("local", *SUBMITIT_CLUSTERS)
TAIL_LINES = 40
STUDIES = {"ablation": "ablations", "prompts": "prompts"}
"""Study table name (``<name>.json`` written by eval_emotion.py) -> the option that requests it."""


class CrossValidationError(UserError, RuntimeError):
    """A cross-validation run cannot start or continue; the message says why and what to do."""


@dataclass
class Options:
    """What ``cross_train.py`` was asked to do, beyond the base config file and its overrides."""

    cfg_path: Path | None
    overrides: list[str] = field(default_factory=list)
    eval_cfg: Path | None = None
    units: list[str] | None = None
    """Fold numbers (as strings) and/or ``test`` to run; None runs every fold and the test run."""
    nproc: int = 1
    ablations: bool = False
    prompts: int = 0
    label_mode: str | None = None
    overwrite: bool = False
    jobs: int = 0
    """Units run at once; 0: as many as the devices hold (local), every unit (submitit)."""
    launcher: str = "local"
    """``local`` (owned child processes), ``slurm`` or ``submitit-local`` (submitit jobs; see launch.py)."""
    submitit: list[str] = field(default_factory=list)
    """``key=value`` executor parameters for submitit (``slurm_partition=gpu``, ``gpus_per_node=4`` ...)."""


@dataclass
class FoldPlan:
    """Which samples each fold trains, validates and holds out: what the fold subprocesses will see."""

    label_set: LabelSet
    folds: list[dict[str, list[str]]]
    """Per fold (fold 1 first): ``train`` / ``val`` / ``fold`` sample ids."""
    test: list[str]
    groups: dict[str, str]
    """Sample id -> group (sample id itself when the corpus gives none)."""

    def describe(self) -> dict[str, Any]:
        def groups(ids: list[str]) -> list[str]:
            return sorted({self.groups[i] for i in ids})

        return {
            "num_folds": len(self.folds),
            "folds": [{"fold": k, **{f"{split}_groups": groups(ids) for split, ids in f.items()},
                       **{f"n_{split}": len(ids) for split, ids in f.items()}}
                      for k, f in enumerate(self.folds, 1)],
            "test": {"groups": groups(self.test), "n": len(self.test)},
        }


def _say(out_dir: Path | None, start: float, message: str) -> None:
    """One progress line on the console (and in ``cross_train.log``), with the elapsed wall time."""
    elapsed = int(time.monotonic() - start)
    line = f"[cross {elapsed // 60:02d}:{elapsed % 60:02d}] {message}"
    print(line, flush=True)
    if out_dir is not None:
        with (out_dir / PROGRESS_LOG).open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 90 else f"{seconds / 60:.1f}min"


def base_config(opts: Options) -> DictConfig:
    """The resolved config every fold derives from, with ``run.output_dir`` set to the run folder."""
    overrides = list(opts.overrides)
    if opts.label_mode is not None:
        overrides.append(f"data.label_mode={opts.label_mode}")
    cfg = load_config(opts.cfg_path, overrides)
    if not any(o.split("=", 1)[0].strip() == "run.output_dir" for o in overrides):
        name = opts.cfg_path.stem if opts.cfg_path is not None else "default"
        if opts.label_mode is not None and opts.label_mode != load_config(opts.cfg_path, allow_missing=True).data.label_mode:
            name += f"_{opts.label_mode}"  # another label mode is another study: never the config's own folder
        cfg.run.output_dir = str(Path("runs") / "cross" / name)
    cfg.run.output_dir = str(Path(cfg.run.output_dir).resolve())
    cfg.run.fold = None
    cfg.run.resume = False
    return cfg


def eval_section(opts: Options, base: DictConfig) -> DictConfig:
    """The ``eval`` settings of every fold: the base config's, updated by ``--eval-cfg``'s ``eval`` section.

    Only that section is taken from the eval config: a fold is always evaluated with the model and data of
    its own training config, or the checkpoint would not match what it is fed.
    """
    section = base.eval.copy()
    if opts.eval_cfg is not None:
        section = load_config(opts.eval_cfg, [o for o in opts.overrides if o.startswith("eval.")]).eval
    if opts.ablations:
        section.ablations = ablation_subsets(list(base.data.modalities))
    if opts.prompts:
        section.prompts = opts.prompts
    return section


def ablation_subsets(modalities: Sequence[str]) -> list[list[str]]:
    """All modalities, then each one left out in turn (a single-modality run has nothing to leave out)."""
    subsets = [list(modalities)]
    if len(modalities) > 1:
        subsets += [[m for m in modalities if m != left_out] for left_out in modalities]
    return subsets


def plan_folds(cfg: DictConfig) -> FoldPlan:
    """Load the corpus as training will and split it for every fold with :func:`select_splits`."""
    dims = {k: m.dim for k, m in cfg.model.features.items()}
    # Text features are computed for every sample and never missing, so leaving them out changes no split.
    corpus = load_corpus(cfg.data, [m for m in cfg.data.modalities if m != "text"], dims)
    folds = []
    for k in range(1, cfg.run.num_folds + 1):
        splits = select_splits(corpus.samples, seed=cfg.run.seed, val_fraction=cfg.data.val_fraction, fold=k,
                               num_folds=cfg.run.num_folds)
        folds.append({split: [s.id for s in splits[split]] for split in ("train", "val", "fold")})
    test = [s.id for s in select_splits(corpus.samples, seed=cfg.run.seed, val_fraction=cfg.data.val_fraction)["test"]]
    groups = {s.id: s.group if s.group is not None else s.id for s in corpus.samples}
    return FoldPlan(corpus.label_set, folds, test, groups)


def unit_config(base: DictConfig, unit: str) -> DictConfig:
    """Resolved training config of one unit: fold ``k`` (held out, inner validation) or ``test``.

    Everything but ``run.fold`` and ``run.output_dir`` is the base config's: the same base checkpoint, model
    seed and run seed for every fold. ``run.seed`` also draws the folds themselves on corpora with more
    groups than folds, so it must not change from fold to fold; a fixed seed makes each fold reproducible.
    """
    cfg = base.copy()
    cfg.run.fold = None if unit == TEST else int(unit)
    cfg.run.output_dir = str(Path(base.run.output_dir) / unit_dir_name(unit))
    cfg.run.resume = False
    return cfg


def unit_dir_name(unit: str) -> str:
    return TEST if unit == TEST else f"fold_{unit}"


def eval_config(train_cfg: DictConfig, section: DictConfig, unit: str, out: Path) -> DictConfig:
    """The unit's training config with its ``final/`` checkpoint, the eval section and the split to score."""
    cfg = OmegaConf.merge(train_cfg, {"eval": section})
    cfg.eval.split = "test" if unit == TEST else "fold"
    cfg.model.checkpoint = str(Path(train_cfg.run.output_dir) / "final")
    cfg.run.output_dir = str(out)
    return cfg


def _flat(cfg: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _identity(base: DictConfig, section: DictConfig, opts: Options) -> dict[str, Any]:
    """What must match for a rerun to continue a run folder (not the fold selection, not ``--overwrite``)."""
    config = OmegaConf.to_container(base, resolve=True)
    config["run"].pop("output_dir")  # the folder is the run's identity, not part of it
    config["eval"] = OmegaConf.to_container(section, resolve=True)
    return {"config": config, "nproc_per_node": opts.nproc}


def prepare_run_dir(out: Path, identity: dict[str, Any], base: DictConfig, opts: Options) -> None:
    """Create the run folder, or check that an existing one was made by the same config and options."""
    digest = fingerprint(identity)
    run_file = out / RUN_FILE
    if out.exists() and any(out.iterdir()):
        if not run_file.is_file():
            raise CrossValidationError(
                f"{out} exists and is not a cross-validation run folder (no {RUN_FILE}); refusing to write "
                f"into or delete it: choose another run.output_dir=DIR")
        stored = json.loads(run_file.read_text())
        if opts.overwrite:
            shutil.rmtree(out)
        elif stored["fingerprint"] != digest:
            old, new = _flat(stored["identity"]), _flat(json.loads(json.dumps(identity, default=str)))
            diff = [f"{k.removeprefix('config.')}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}"
                    for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
            raise CrossValidationError(
                f"{out} holds a run of a different configuration:\n  " + "\n  ".join(diff[:20])
                + "\nrerun with --overwrite to discard it, or choose another run.output_dir=DIR")
    out.mkdir(parents=True, exist_ok=True)
    if not run_file.is_file():
        save_config(base, out / BASE_CONFIG)
        run_file.write_text(json.dumps({"fingerprint": digest, "identity": identity,
                                        "cfg_path": str(opts.cfg_path) if opts.cfg_path else None,
                                        "overrides": opts.overrides}, indent=2, default=str) + "\n")


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    with path.open(encoding="utf-8", errors="replace") as f:
        return "".join(deque(f, maxlen=lines))


def _has_checkpoint(unit_dir: Path) -> bool:
    """A finished ``checkpoints/step_<N>`` folder to resume from (temporary ``.step_<N>.tmp`` ones never count)."""
    folder = unit_dir / "checkpoints"
    return folder.is_dir() and any(re.fullmatch(r"step_\d+", p.name) and p.is_dir() for p in folder.iterdir())


def is_finished(base: DictConfig, unit: str) -> bool:
    return (Path(base.run.output_dir) / unit_dir_name(unit) / "eval" / "metrics.json").is_file()


@dataclass
class UnitTask:
    """One unit started as one fold process (train or resume if needed, then evaluate) and where it writes."""

    label: str
    unit_dir: Path
    command: FoldCommand
    work: str
    """What the process does, for the progress line."""
    started: float = field(default_factory=time.monotonic)


def prepare_unit(unit: str, base: DictConfig, section: DictConfig, opts: Options) -> UnitTask:
    """Write the unit's configs and return its fold command: training (resumed from the last checkpoint, or
    restarted cleanly when an earlier start left none) unless ``final/`` exists, then evaluation."""
    train_cfg = unit_config(base, unit)
    unit_dir = Path(train_cfg.run.output_dir)
    train_config, resume = None, False
    if not (unit_dir / "final").is_dir():
        resume = _has_checkpoint(unit_dir)
        holder = run_lock.holder(unit_dir)
        if holder is not None:
            raise CrossValidationError(f"{unit_label(unit, base)}: {unit_dir} is still in use by {holder}; "
                                       f"stop it or wait for it before rerunning")
        if not resume and unit_dir.exists():
            shutil.rmtree(unit_dir)  # a start that left no checkpoint: restart cleanly
        if not resume:
            run_folder.claim_run(train_cfg)  # the fold's run folder, as the fold's fit will find it
        train_config = unit_dir / "config.yaml"
        save_config(train_cfg, train_config)
    partial = unit_dir / PARTIAL_EVAL  # renamed to eval/ on success: eval/metrics.json means complete
    if partial.exists():
        shutil.rmtree(partial)
    eval_path = unit_dir / "eval_config.yaml"
    save_config(eval_config(train_cfg, section, unit, partial), eval_path)
    held_out = "the test split" if unit == TEST else f"held-out fold {unit}"
    work = (f"{'resume training' if resume else 'train'}, then evaluate on {held_out}" if train_config
            else f"evaluate on {held_out}")
    return UnitTask(unit_label(unit, base), unit_dir, FoldCommand(
        fold_command.command(train_config, eval_path, resume, opts.nproc), unit_dir / FOLD_LOG), work)


def finish_unit(task: UnitTask, status: int) -> dict:
    """Check what the fold process left, move its evaluation into ``eval/`` and return its metrics."""
    log = task.command.log
    if status != 0:
        raise CrossValidationError(f"{task.label} failed (exit status {status}); last lines of {log}:\n{_tail(log)}")
    partial, eval_dir = task.unit_dir / PARTIAL_EVAL, task.unit_dir / "eval"
    for needed in (task.unit_dir / "final", partial / "metrics.json"):
        if not needed.exists():
            raise CrossValidationError(f"{task.label} exited cleanly but wrote no {needed}; see {log}")
    if eval_dir.exists():
        shutil.rmtree(eval_dir)
    os.replace(partial, eval_dir)
    return json.loads((eval_dir / "metrics.json").read_text())


def launch_units(units: list[str], base: DictConfig, section: DictConfig, opts: Options, out: Path,
                 progress: Callable[[str], None]) -> None:
    """Run the units' fold processes, up to ``--jobs`` at once, here or through submitit; stop at a failure."""
    try:
        if opts.launcher == "local":
            gpus, cores = launch.visible_gpus(), launch.cpu_cores()
            jobs = min(opts.jobs or launch.auto_jobs(opts.nproc, gpus, cores), len(units))
            slots = launch.device_sets(jobs, opts.nproc, gpus, cores)

            def launched(task: UnitTask, env: dict[str, str]) -> launch.Launched:
                return launch.LocalFold(replace(task.command, env=env))
        else:
            params = OmegaConf.to_container(OmegaConf.from_dotlist(opts.submitit)) if opts.submitit else {}
            executor = launch.submitit_executor(out / SUBMITIT_DIR, SUBMITIT_CLUSTERS[opts.launcher], params)
            jobs = min(opts.jobs or len(units), len(units))
            threads = str(max(1, int(params["cpus_per_task"]) // opts.nproc)) if "cpus_per_task" in params else None
            slots = [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} if threads else {}] * jobs

            def launched(task: UnitTask, env: dict[str, str]) -> launch.Launched:
                return launch.SubmititFold(executor, replace(task.command, env=env))
    except launch.FoldLaunchError as err:
        raise CrossValidationError(str(err)) from None
    where = "here" if opts.launcher == "local" else f"as {opts.launcher} jobs"
    progress(f"{len(units)} unit(s) to run {where}, up to {jobs} at once"
             + (f"; each with {_describe(slots[0])}" if slots[0] else ""))

    tasks: dict[str, UnitTask] = {}

    def start(unit: str, env: dict[str, str]) -> launch.Launched:
        task = tasks[unit] = prepare_unit(unit, base, section, opts)
        handle = launched(task, env)
        progress(f"{task.label}: {task.work}; {handle.where}" + (f"; {_describe(env)}" if env and len(slots) > 1 else ""))
        return handle

    def done(unit: str, status: int) -> None:
        task = tasks[unit]
        metrics = finish_unit(task, status)
        progress(f"{task.label}: accuracy {metrics['accuracy']:.4f}, done in {_duration(time.monotonic() - task.started)}")

    launch.run_all(units, slots, start, done)


def _describe(env: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in env.items() if k != "MKL_NUM_THREADS")


def unit_label(unit: str, base: DictConfig) -> str:
    return "test run" if unit == TEST else f"fold {unit}/{base.run.num_folds}"


def aggregate_study(tables: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """Mean and std across folds of every numeric column of a per-fold study table (ablation, prompts).

    Rows are matched by their first column (the modality subset or the instruction index); text columns
    (the prompt) are kept as they are; ``folds`` counts the folds that had the row. A fold table's own
    summary row (a ``mean ± std`` over its rows) is left out: the cross-fold statistics replace it.
    """
    columns = next(iter(tables.values()))["columns"]
    key = columns[0]
    rows: dict[str, list[dict]] = {}
    for table in tables.values():
        for row in table["rows"]:
            if not any(isinstance(v, dict) for v in row.values()):
                rows.setdefault(json.dumps(row[key]), []).append(row)

    def numeric(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    numbers = [c for c in columns[1:] if all(numeric(r.get(c)) for group in rows.values() for r in group)]
    texts = [c for c in columns[1:] if c not in numbers]
    out = [{key: group[0][key], **{c: group[0].get(c) for c in texts}, "folds": len(group),
            **{c: mean_std([r[c] for r in group]) for c in numbers}} for group in rows.values()]
    return out, [key, *texts, "folds", *numbers]


def summarize(out: Path, plan: FoldPlan, section: DictConfig) -> Path | None:
    """Write the summary (and study tables) over every finished fold, whether run now or earlier."""
    metrics = {}
    for k in range(1, len(plan.folds) + 1):
        path = out / f"fold_{k}" / "eval" / "metrics.json"
        if path.is_file():
            metrics[f"fold_{k}"] = json.loads(path.read_text())
    test_path = out / TEST / "eval" / "metrics.json"
    test = json.loads(test_path.read_text()) if test_path.is_file() else None
    if not metrics:
        return None
    summarize_folds(out, metrics, test, plan.label_set)
    for name, option in STUDIES.items():
        if section[option]:
            tables = {fold: json.loads((out / fold / "eval" / f"{name}.json").read_text()) for fold in metrics}
            rows, columns = aggregate_study(tables)
            write_table(out, name, rows, columns)
    return out / "summary.md"


def select_units(requested: list[str] | None, num_folds: int) -> list[str]:
    units = requested or [*map(str, range(1, num_folds + 1)), TEST]
    for unit in units:
        if unit != TEST and not (unit.isdigit() and 1 <= int(unit) <= num_folds):
            raise CrossValidationError(f"--folds names {unit!r}: expected fold numbers 1..{num_folds} or 'test'")
    return list(dict.fromkeys(units))


def cross_validate(opts: Options) -> Path | None:
    """Run every requested fold (and the test run), then summarise; return the summary's path."""
    start = time.monotonic()
    try:
        base = base_config(opts)
        section = eval_section(opts, base)
    except ConfigError as err:
        raise CrossValidationError(str(err)) from None
    if opts.nproc < 1 or opts.jobs < 0:
        raise CrossValidationError(f"--nproc-per-node={opts.nproc} and --jobs={opts.jobs}: expected at least 1 "
                                   f"process per fold and a non-negative number of folds at once (0: automatic)")
    if opts.launcher not in LAUNCHERS:
        raise CrossValidationError(f"--launcher {opts.launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    if opts.submitit and opts.launcher == "local":
        raise CrossValidationError("--submitit-param only applies with --launcher slurm or submitit-local")
    plan = plan_folds(base)
    units = select_units(opts.units, len(plan.folds))
    out = Path(base.run.output_dir)
    prepare_run_dir(out, _identity(base, section, opts), base, opts)
    (out / FOLDS_FILE).write_text(json.dumps(plan.describe(), indent=2) + "\n")

    def progress(message: str) -> None:
        _say(out, start, message)

    progress(f"{len(plan.folds)} folds of corpus {base.data.corpus} by group; run folder {out}")
    if TEST in units and not plan.test:
        progress(f"corpus {base.data.corpus} has no test split: test run skipped")
        units.remove(TEST)
    for unit in units:
        if unit != TEST:
            fold = plan.describe()["folds"][int(unit) - 1]
            progress(f"fold {unit}/{len(plan.folds)}: holds out {', '.join(fold['fold_groups'])} "
                     f"({fold['n_fold']} samples), trains on {fold['n_train']}, validates on {fold['n_val']}")
        if is_finished(base, unit):
            progress(f"{unit_label(unit, base)}: finished earlier, skipped")
    todo = [unit for unit in units if not is_finished(base, unit)]
    if todo:
        launch_units(todo, base, section, opts, out, progress)
    summary = summarize(out, plan, section)
    if summary is None:
        progress("no fold has finished yet: no summary")
    else:
        progress(f"done in {_duration(time.monotonic() - start)}; report: {summary}")
    return summary
