"""Cross-validation by corpus groups: one training and one evaluation subprocess per fold, then a summary.

Why subprocesses: each fold starts from a clean interpreter (same base checkpoint, same seeded init, no state
leaking from the previous fold) and a fold that fails stops the run with its own log tail. Why a run folder
with a fingerprint: a rerun of the same command skips finished folds, and a rerun of a *different* command
never mixes its folds into an old summary. Tracked config files are never written: every fold's resolved
config lives in the run folder.

Layout of ``<output_dir>``::

    cross_run.json      fingerprint and options of the run (what a rerun must match)
    base_config.yaml    the resolved base config every fold derives from
    folds.json          held-out / inner-validation groups and sizes of every fold
    cross_train.log     the progress lines printed on the console
    fold_<k>/           config.yaml, train.log, checkpoints/, final/, train.out, eval_config.yaml, eval.out, eval/
    test/               the same for the run trained on the whole pool and evaluated on the test split
    summary.json  summary.md  confusion_matrix_folds.png   (report.summarize_folds)
    ablation.md/.json  prompts.md/.json                    (with --ablations / --prompts)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from . import child_process, run_folder, run_lock
from .config import ConfigError, load_config, save_config
from .corpora import load_corpus
from .labels import LabelSet
from .report import mean_std, summarize_folds, write_table
from .splits import select_splits

REPO = Path(__file__).resolve().parents[1]
RUN_FILE = "cross_run.json"
BASE_CONFIG = "base_config.yaml"
FOLDS_FILE = "folds.json"
PROGRESS_LOG = "cross_train.log"
TEST = "test"
TAIL_LINES = 40
STUDIES = {"ablation": "ablations", "prompts": "prompts"}
"""Study table name (``<name>.json`` written by eval_emotion.py) -> the option that requests it."""


class CrossValidationError(RuntimeError):
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
    scripts: Path = REPO
    """Folder holding ``train.py`` and ``eval_emotion.py``."""


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
        fold_cfg = cfg.copy()
        fold_cfg.run.fold = k
        splits = select_splits(corpus.samples, fold_cfg)
        folds.append({split: [s.id for s in splits[split]] for split in ("train", "val", "fold")})
    test = [s.id for s in select_splits(corpus.samples, cfg)["test"]]
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


def fingerprint(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


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


def launch(cmd: list[str], log_path: Path, what: str) -> None:
    """Run one fold step as an owned child (it dies with this process); a failure raises with the log's tail."""
    env = os.environ | {"PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}  # complete logs, no bar redraws
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        status = child_process.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    if status != 0:
        raise CrossValidationError(f"{what} failed (exit status {status}); last lines of {log_path}:\n{_tail(log_path)}")


def _python(script: Path, nproc: int) -> list[str]:
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                str(script)]
    return [sys.executable, str(script)]


def _has_checkpoint(unit_dir: Path) -> bool:
    """A finished ``checkpoints/step_<N>`` folder to resume from (temporary ``.step_<N>.tmp`` ones never count)."""
    folder = unit_dir / "checkpoints"
    return folder.is_dir() and any(re.fullmatch(r"step_\d+", p.name) and p.is_dir() for p in folder.iterdir())


def run_unit(unit: str, base: DictConfig, section: DictConfig, opts: Options, progress: Any) -> dict:
    """Train (or resume) and evaluate one unit unless already finished; return its metrics."""
    train_cfg = unit_config(base, unit)
    unit_dir = Path(train_cfg.run.output_dir)
    eval_dir = unit_dir / "eval"
    if (eval_dir / "metrics.json").is_file():
        progress(f"{unit_label(unit, base)}: finished earlier, skipped")
        return json.loads((eval_dir / "metrics.json").read_text())

    if not (unit_dir / "final").is_dir():
        resume = _has_checkpoint(unit_dir)
        holder = run_lock.holder(unit_dir)
        if holder is not None:
            raise CrossValidationError(f"{unit_label(unit, base)}: {unit_dir} is still in use by {holder}; "
                                       f"stop it or wait for it before rerunning")
        if not resume and unit_dir.exists():
            shutil.rmtree(unit_dir)  # a start that left no checkpoint: restart cleanly
        if not resume:
            run_folder.claim(train_cfg)  # the fold's run folder, as train.py will find it
        config = unit_dir / "config.yaml"
        save_config(train_cfg, config)
        progress(f"{unit_label(unit, base)} train{' (resuming)' if resume else ''}: log {unit_dir / 'train.out'}")
        started = time.monotonic()
        launch([*_python(opts.scripts / "train.py", opts.nproc), "--cfg-path", str(config),
                *(["run.resume=true"] if resume else [])], unit_dir / "train.out", f"{unit_label(unit, base)} training")
        if not (unit_dir / "final").is_dir():
            raise CrossValidationError(f"{unit_label(unit, base)} training exited cleanly but wrote no "
                                       f"{unit_dir / 'final'}; see {unit_dir / 'train.out'}")
        progress(f"{unit_label(unit, base)} train: done in {_duration(time.monotonic() - started)}")

    partial = unit_dir / "eval.partial"  # renamed to eval/ on success: eval/metrics.json means complete
    if partial.exists():
        shutil.rmtree(partial)
    config = unit_dir / "eval_config.yaml"
    save_config(eval_config(train_cfg, section, unit, partial), config)
    progress(f"{unit_label(unit, base)} eval on {'the test split' if unit == TEST else f'held-out fold {unit}'}")
    started = time.monotonic()
    launch([sys.executable, str(opts.scripts / "eval_emotion.py"), "--cfg-path", str(config)],
           unit_dir / "eval.out", f"{unit_label(unit, base)} evaluation")
    if not (partial / "metrics.json").is_file():
        raise CrossValidationError(f"{unit_label(unit, base)} evaluation exited cleanly but wrote no metrics.json "
                                   f"in {partial}; see {unit_dir / 'eval.out'}")
    if eval_dir.exists():
        shutil.rmtree(eval_dir)
    os.replace(partial, eval_dir)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    progress(f"{unit_label(unit, base)} eval: accuracy {metrics['accuracy']:.4f} "
             f"in {_duration(time.monotonic() - started)}")
    return metrics


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


def run(opts: Options) -> Path | None:
    """Run every requested fold (and the test run), then summarise; return the summary's path."""
    start = time.monotonic()
    try:
        base = base_config(opts)
        section = eval_section(opts, base)
    except ConfigError as err:
        raise CrossValidationError(str(err)) from None
    if opts.nproc < 1:
        raise CrossValidationError(f"--nproc-per-node={opts.nproc}: expected at least 1")
    plan = plan_folds(base)
    units = select_units(opts.units, len(plan.folds))
    out = Path(base.run.output_dir)
    prepare_run_dir(out, _identity(base, section, opts), base, opts)
    (out / FOLDS_FILE).write_text(json.dumps(plan.describe(), indent=2) + "\n")

    def progress(message: str) -> None:
        _say(out, start, message)

    progress(f"{len(plan.folds)} folds of corpus {base.data.corpus} by group; run folder {out}")
    for unit in units:
        if unit == TEST and not plan.test:
            progress(f"corpus {base.data.corpus} has no test split: test run skipped")
            continue
        if unit != TEST:
            fold = plan.describe()["folds"][int(unit) - 1]
            progress(f"fold {unit}/{len(plan.folds)}: holds out {', '.join(fold['fold_groups'])} "
                     f"({fold['n_fold']} samples), trains on {fold['n_train']}, validates on {fold['n_val']}")
        run_unit(unit, base, section, opts, progress)
    summary = summarize(out, plan, section)
    if summary is None:
        progress("no fold has finished yet: no summary")
    else:
        progress(f"done in {_duration(time.monotonic() - start)}; report: {summary}")
    return summary
