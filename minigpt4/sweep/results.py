"""One row per finished setting, read from its run folder, and the sweep summary (``sweep.md``/``sweep.json``).

A setting is ranked by what may choose a setting without touching its held-out data: one run by the
validation metric its checkpoint was chosen by (``run.best_metric`` on the inner validation split); a
cross-validated setting by that metric's mean over the held-out folds. Test figures are shown, never ranked on.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Sequence

from minigpt4.evaluation.report import mean_std, write_table

RESULT = "setting.json"
"""Written last into a setting's folder: the setting is finished (a rerun skips it)."""
SUMMARY = "sweep"
HEADLINE = ("accuracy", "weighted_f1")


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def best_validation(unit_dir: Path, metric: str) -> float | None:
    """The best ``val/<metric>`` a training run logged: the value its ``final/`` checkpoint was chosen by."""
    path = unit_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        values = [float(r["value"]) for r in csv.DictReader(f) if r["name"] == f"val/{metric}"]
    if not values:
        return None
    return min(values) if lower_is_better(metric) else max(values)


def held_out(unit_dir: Path) -> dict[str, Any]:
    return json.loads((unit_dir / "eval" / "metrics.json").read_text())


def collect(folder: Path, setting: Sequence[str], metric: str, cross: bool) -> dict[str, Any]:
    """The summary row of a finished setting and its ranking value (``objective``)."""
    row: dict[str, Any] = {"setting": " ".join(setting)}
    test = folder / "test"
    if cross:
        folds = sorted(p for p in folder.glob("fold_*") if (p / "eval" / "metrics.json").is_file())
        vals = [v for v in (best_validation(p, metric) for p in folds) if v is not None]
        row[f"val {metric}"] = mean_std(vals) if vals else None
        for name in dict.fromkeys((metric, *HEADLINE)):
            scores = [held_out(p).get(name) for p in folds]
            if all(isinstance(s, (int, float)) for s in scores):
                row[f"folds {name}"] = mean_std(scores)
        ranked = row.get(f"folds {metric}") or row[f"val {metric}"]
        objective = ranked["mean"] if ranked else None
    else:
        objective = best_validation(test, metric)
        row[f"val {metric}"] = objective
    if (test / "eval" / "metrics.json").is_file():
        metrics = held_out(test)
        row |= {f"test {name}": metrics.get(name) for name in HEADLINE}
    if objective is None:
        raise ValueError(f"{folder}: no validation {metric} was logged (run.eval_every=0 and no validation "
                         f"split?); a sweep needs it to rank settings")
    return {"objective": objective, "setting": list(setting), "row": row}


def write_result(folder: Path, result: dict[str, Any]) -> None:
    tmp = folder / f".{RESULT}.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, folder / RESULT)


def read_result(folder: Path) -> dict[str, Any] | None:
    path = folder / RESULT
    return json.loads(path.read_text()) if path.is_file() else None


def summarize(sweep_dir: Path, metric: str) -> list[dict[str, Any]]:
    """``sweep.md`` / ``sweep.json`` over every finished setting in the sweep folder, best first."""
    results = [r for r in (read_result(p) for p in sorted(sweep_dir.iterdir()) if p.is_dir()) if r]
    results.sort(key=lambda r: r["objective"], reverse=not lower_is_better(metric))
    rows = [{"rank": i, **r["row"]} for i, r in enumerate(results, 1)]
    columns = list(dict.fromkeys(c for row in rows for c in row))
    if rows:
        write_table(sweep_dir, SUMMARY, rows, columns)
    return rows
