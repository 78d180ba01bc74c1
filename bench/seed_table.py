"""Compare settings over seeds: each setting's runs (one ``metrics.json`` per seed, as ``eval_emotion.py``
writes them) become mean ± std, and each setting is compared with the first one; a difference within the
spread is printed as a tie (rule: ``minigpt4/evaluation/spread.py``).

    python bench/seed_table.py [--metric weighted_f1] NAME=PATTERN [NAME=PATTERN ...]

PATTERN is a glob of ``metrics.json`` files or of the folders holding them (quote it), one per seed, e.g.
``"classifier=runs/meld_cls/seed_*/eval"``. The output is the markdown table; its last line counts the ties.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minigpt4.evaluation.spread import Spread, comparison_table, verdict  # noqa: E402  (root put on the path first)


def metric_files(pattern: str) -> list[Path]:
    """The ``metrics.json`` files a pattern names (a folder stands for its ``metrics.json``), sorted."""
    paths = [Path(p) for p in sorted(glob.glob(pattern))]
    files = [p / "metrics.json" if p.is_dir() else p for p in paths]
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        raise FileNotFoundError(f"pattern {pattern!r}: " + (f"no metrics.json in {', '.join(missing)}" if missing
                                                             else "matches nothing"))
    return files


def read_metric(path: Path, metric: str) -> float:
    """One run's value of ``metric``; an error names the file and the metrics it has."""
    metrics = json.loads(path.read_text())
    value = metrics.get(metric)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        numbers = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise KeyError(f"{path}: no numeric metric {metric!r}; it has: {', '.join(numbers)}")
    return float(value)


def parse_setting(arg: str) -> tuple[str, str]:
    name, sep, pattern = arg.partition("=")
    if not sep or not name or not pattern:
        raise argparse.ArgumentTypeError(f"{arg!r}: expected NAME=PATTERN")
    return name, pattern


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metric", default="weighted_f1", help="metric key of metrics.json")
    parser.add_argument("settings", nargs="+", type=parse_setting, help="NAME=PATTERN, the first is the reference")
    args = parser.parse_args(argv)
    rows = []
    for name, pattern in args.settings:
        files = metric_files(pattern)
        rows.append((name, Spread.of([read_metric(f, args.metric) for f in files])))
        print(f"{name}: {len(files)} run(s): {', '.join(str(f) for f in files)}")
    print()
    print("\n".join(comparison_table(rows, args.metric)))
    ties = sum(verdict(s, rows[0][1]) == "tie" for _, s in rows[1:])
    print(f"ties: {ties} of {len(rows) - 1} comparison(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
