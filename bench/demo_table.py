"""The README's demo table: ``python cross_train.py`` (the demo) rerun from scratch for each seed, with the
accuracy of every fold, their mean ± std (sample std over folds), the test-run accuracy, and the wall and CPU
seconds of the whole command (its child processes included); then one more row with each column's mean ± std
over the seeds (the per-fold spread: what another machine's figures should fall within).

    python bench/demo_table.py [--seeds 42 1 2] [--out runs/cross/demo_table] [--from-runs] [cross_train.py arguments ...]

Each seed runs ``cross_train.py run.seed=S run.output_dir=<out>/seed_S --overwrite`` plus the extra arguments,
one seed after another (the seconds are the demo's own, not shared with another seed), and records its seconds
in ``<out>/seed_S/timing.json``. ``--from-runs`` runs nothing and builds the table from those folders (seeds
run apart, e.g. at the same time or on a cluster). The last lines are
the markdown table and ``stable: yes|no`` against the demo's promise (fold mean >= 0.70, std <= 0.08).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minigpt4.evaluation.spread import Spread  # noqa: E402  (the repository root is put on the path first)

MIN_MEAN, MAX_STD = 0.70, 0.08
TIMING = "timing.json"


def run_demo(seed: int, out: Path, extra: list[str]) -> tuple[dict, float, float]:
    """Run the demo for one seed; its summary, wall seconds and CPU seconds (user + system, children)."""
    cmd = [sys.executable, str(REPO / "cross_train.py"), f"run.seed={seed}", f"run.output_dir={out}",
           "--overwrite", *extra]
    print("$ " + " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    (out / TIMING).write_text(json.dumps({"wall_s": wall, "cpu_s": cpu, "command": cmd}) + "\n")
    return read_run(out)


def read_run(out: Path) -> tuple[dict, float, float]:
    """A finished seed's summary, wall seconds and CPU seconds; an error names the missing file."""
    for name in ("summary.json", TIMING):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name} not found: run this seed with bench/demo_table.py first")
    timing = json.loads((out / TIMING).read_text())
    return json.loads((out / "summary.json").read_text()), timing["wall_s"], timing["cpu_s"]


def seed_row(summary: dict) -> list[float]:
    """One seed's figures: every fold's accuracy, their mean and std over folds, the test accuracy."""
    acc = summary["aggregate"]["accuracy"]
    test = summary["test"]["accuracy"] if summary.get("test") else float("nan")
    return [*(summary["folds"][f]["accuracy"] for f in summary["folds"]), acc["mean"], acc["std"], test]


def table(rows: list[tuple[int, dict, float, float]]) -> list[str]:
    """Markdown lines: one row per seed, then the mean ± std over seeds of every column."""
    folds = list(rows[0][1]["folds"])
    lines = ["| seed | " + " | ".join(f.replace("_", " ") for f in folds)
             + " | fold mean | fold std | test | wall s | CPU s |", "|---" * (len(folds) + 6) + "|"]
    values = []
    for seed, summary, wall, cpu in rows:
        if list(summary["folds"]) != folds:
            raise ValueError(f"seed {seed} ran folds {list(summary['folds'])}, the first seed {folds}")
        values.append([*seed_row(summary), wall, cpu])
        lines.append(f"| {seed} | " + " | ".join(f"{v:.3f}" for v in values[-1][:-2])
                     + f" | {wall:.0f} | {cpu:.0f} |")
    spreads = [Spread.of([v[i] for v in values]) for i in range(len(values[0]))]
    lines.append(f"| mean ± std over {len(rows)} seeds | "
                 + " | ".join(s.cell() for s in spreads[:-2]) + " | "
                 + " | ".join(s.cell(0) for s in spreads[-2:]) + " |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2], help="values of run.seed")
    parser.add_argument("--out", type=Path, default=Path("runs/cross/demo_table"), help="one run folder per seed")
    parser.add_argument("--from-runs", action="store_true", help="run nothing: read the seeds' folders under --out")
    args, extra = parser.parse_known_args(argv)
    folders = {seed: (args.out / f"seed_{seed}").resolve() for seed in args.seeds}
    rows = [(seed, *(read_run(out) if args.from_runs else run_demo(seed, out, extra))) for seed, out in folders.items()]
    print()
    print("\n".join(table(rows)))
    stable = all(s["aggregate"]["accuracy"]["mean"] >= MIN_MEAN and s["aggregate"]["accuracy"]["std"] <= MAX_STD
                 for _, s, _, _ in rows)
    print(f"stable: {'yes' if stable else 'no'} (every seed: fold mean >= {MIN_MEAN}, std <= {MAX_STD})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
