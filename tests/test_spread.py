"""Figures over seeds: mean ± std cells, the tie rule, and the two scripts that print such tables."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from minigpt4.evaluation.spread import Spread, comparison_table, verdict

REPO = Path(__file__).resolve().parents[1]


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_spread_is_mean_and_sample_std_and_labels_a_single_run():
    s = Spread.of([0.5, 0.7, 0.6])
    assert s.n == 3 and math.isclose(s.mean, 0.6) and math.isclose(s.std, 0.1)
    assert s.cell() == "0.600 ± 0.100"
    assert Spread.of([0.61]).cell() == "0.610 (single run)"
    with pytest.raises(ValueError):
        Spread.of([])


def test_a_gap_within_the_spread_of_the_difference_is_a_tie():
    ref = Spread(0.60, 0.03, 3)
    assert verdict(Spread(0.63, 0.03, 3), ref) == "tie"  # 0.03 < hypot(0.03, 0.03) = 0.042
    assert verdict(Spread(0.65, 0.03, 3), ref) == "higher"
    assert verdict(Spread(0.55, 0.03, 3), ref) == "lower"
    assert verdict(Spread(0.90, 0.0, 1), ref) == "not compared"  # a single run is no comparison
    assert verdict(Spread(0.90, 0.01, 2), ref) == "not compared"


def test_comparison_table_marks_the_reference_and_each_verdict():
    lines = comparison_table([("a", Spread(0.60, 0.01, 3)), ("b", Spread(0.605, 0.01, 3)),
                              ("c", Spread(0.70, 0.01, 3))], "weighted_f1")
    assert lines[0].startswith("| setting | runs | weighted_f1 | difference from `a`")
    assert lines[2] == "| a | 3 | 0.600 ± 0.010 |  | reference |"
    assert lines[3] == "| b | 3 | 0.605 ± 0.010 | +0.005 | tie |"
    assert lines[4] == "| c | 3 | 0.700 ± 0.010 | +0.100 | higher |"


def _summary(folds: list[float], test: float) -> dict:
    mean = sum(folds) / len(folds)
    std = math.sqrt(sum((f - mean) ** 2 for f in folds) / (len(folds) - 1))
    return {"folds": {f"fold_{i + 1}": {"accuracy": a} for i, a in enumerate(folds)},
            "aggregate": {"accuracy": {"mean": mean, "std": std}}, "test": {"accuracy": test}}


def test_demo_table_adds_the_per_fold_spread_over_seeds():
    table = _bench("demo_table").table([(1, _summary([0.9, 0.8], 0.7), 100.0, 200.0),
                                        (2, _summary([0.7, 0.8], 0.9), 120.0, 220.0)])
    assert table[0] == "| seed | fold 1 | fold 2 | fold mean | fold std | test | wall s | CPU s |"
    assert table[2] == "| 1 | 0.900 | 0.800 | 0.850 | 0.071 | 0.700 | 100 | 200 |"
    assert table[-1] == ("| mean ± std over 2 seeds | 0.800 ± 0.141 | 0.800 ± 0.000 | 0.800 ± 0.071 "
                         "| 0.071 ± 0.000 | 0.800 ± 0.141 | 110 ± 14 | 210 ± 14 |")


def test_demo_table_refuses_seeds_that_ran_different_folds():
    with pytest.raises(ValueError, match="seed 2 ran folds"):
        _bench("demo_table").table([(1, _summary([0.9, 0.8], 0.7), 1.0, 1.0),
                                    (2, _summary([0.9, 0.8, 0.7], 0.7), 1.0, 1.0)])


def _write_runs(root: Path, name: str, values: list[float]) -> None:
    for seed, value in enumerate(values):
        folder = root / f"{name}_seed{seed}" / "eval"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"weighted_f1": value, "labels": ["a"]}))


def test_seed_table_compares_run_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _write_runs(tmp_path, "cls", [0.60, 0.61, 0.62])
    _write_runs(tmp_path, "lm", [0.55, 0.56, 0.54])
    _write_runs(tmp_path, "ctx", [0.615, 0.60, 0.62])
    assert _bench("seed_table").main([f"cls={tmp_path}/cls_seed*/eval", f"lm={tmp_path}/lm_seed*/eval",
                                      f"ctx={tmp_path}/ctx_seed*/eval/metrics.json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "| lm | 3 | 0.550 ± 0.010 | -0.060 | lower |" in out
    assert "| ctx | 3 | 0.612 ± 0.010 | +0.002 | tie |" in out
    assert out[-1] == "ties: 1 of 2 comparison(s)"


def test_seed_table_names_what_is_missing(tmp_path: Path):
    bench = _bench("seed_table")
    with pytest.raises(FileNotFoundError, match="matches nothing"):
        bench.main([f"x={tmp_path}/none*"])
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        bench.main([f"x={tmp_path}/run"])
    _write_runs(tmp_path, "cls", [0.6])
    with pytest.raises(KeyError, match="no numeric metric 'accuracy'; it has: weighted_f1"):
        bench.main(["--metric", "accuracy", f"x={tmp_path}/cls_seed*/eval"])


def test_demo_table_rebuilds_from_run_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bench = _bench("demo_table")
    for seed, folds in ((1, [0.9, 0.8]), (2, [0.7, 0.8]), (3, [0.8, 0.8])):
        folder = tmp_path / f"seed_{seed}"
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps(_summary(folds, 0.8)))
        (folder / bench.TIMING).write_text(json.dumps({"wall_s": 100.0, "cpu_s": 150.0}))
    assert bench.main(["--seeds", "1", "2", "3", "--out", str(tmp_path), "--from-runs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("| mean ± std over 3 seeds | 0.800 ± 0.100 | 0.800 ± 0.000 |")
    assert out[-1].startswith("stable: yes")
    (tmp_path / "seed_3" / bench.TIMING).unlink()
    with pytest.raises(FileNotFoundError, match="seed_3/timing.json not found"):
        bench.main(["--seeds", "1", "3", "--out", str(tmp_path), "--from-runs"])
