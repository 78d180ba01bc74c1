"""sweep.py: settings checked before any run, one run folder per setting, summary best first, rerun skips
finished settings, the submitit local executor gives the same runs, optuna with a seed, cross-validation."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from minigpt4.sweep import Options, SweepError, run
from minigpt4.sweep.results import RESULT, summarize, write_result
from minigpt4.sweep.spec import grid, split_overrides

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import sweep as sweep_cli  # noqa: E402  (the entry point, as a user runs it)

QUICK = ["run.max_steps=3", "run.eval_every=0", "eval.max_samples=4", "run.batch_size=4"]
"""Overrides that keep one setting to a few seconds: enough to exercise every file a run writes."""


def sweep(tmp: Path, *args: str) -> int:
    return sweep_cli.main(["--sweep-dir", str(tmp), *QUICK, *args])


def results(folder: Path) -> dict[str, dict]:
    return {" ".join(r["setting"]): r for r in (json.loads(p.read_text()) for p in folder.glob(f"*/{RESULT}"))}


def test_comma_lists_are_swept_and_plain_values_fixed():
    fixed, swept = split_overrides(["run.max_steps=3", "run.lr=1e-3,1e-2", "data.modalities=[face,audio]",
                                    "model.lora.r=choice(4,8)"])
    assert fixed == ["run.max_steps=3", "data.modalities=[face,audio]"]
    assert swept == ["run.lr=1e-3,1e-2", "model.lora.r=choice(4,8)"]
    assert list(grid(swept, "grid")) == [["run.lr=0.001", "model.lora.r=4"], ["run.lr=0.001", "model.lora.r=8"],
                                         ["run.lr=0.01", "model.lora.r=4"], ["run.lr=0.01", "model.lora.r=8"]]
    # a search checks every value it may pick once: interval ends, each choice, the rest at their first value
    assert list(grid(["run.lr=interval(0.001,0.1)", "model.lora.r=choice(4,8)"], "optuna")) == [
        ["run.lr=0.001", "model.lora.r=4"], ["run.lr=0.1", "model.lora.r=4"],
        ["run.lr=0.001", "model.lora.r=4"], ["run.lr=0.001", "model.lora.r=8"]]


def test_a_bad_setting_stops_the_sweep_before_any_run(tmp_path: Path, capsys):
    out = tmp_path / "sweep"
    assert sweep(out, "run.lr=1e-2,-1", "model.lora.r=4,8") == 1
    err = capsys.readouterr().err
    assert "setting run.lr=-1" in err and "run.lr=-1.0: expected a number above 0" in err
    assert not out.exists()  # nothing was created, let alone trained
    assert sweep(out, "run.lr=interval(0.001,0.1)") == 1
    assert "an interval has no grid" in capsys.readouterr().err
    with pytest.raises(SweepError, match="run.output_dir is set per setting"):
        run(Options(REPO / "train_configs" / "demo.yaml", ["run.output_dir=x", "run.lr=1e-2,1e-3"]))


def test_summary_is_best_first_and_lower_is_better_for_a_loss(tmp_path: Path):
    for name, objective in (("a", 0.5), ("b", 0.9), ("c", 0.7)):
        (tmp_path / name).mkdir()
        write_result(tmp_path / name, {"objective": objective, "setting": [f"run.lr={name}"],
                                       "row": {"setting": f"run.lr={name}", "val accuracy": objective}})
    assert [r["setting"] for r in summarize(tmp_path, "accuracy")] == ["run.lr=b", "run.lr=c", "run.lr=a"]
    assert [r["setting"] for r in summarize(tmp_path, "loss")] == ["run.lr=a", "run.lr=c", "run.lr=b"]
    table = json.loads((tmp_path / "sweep.json").read_text())
    assert table["columns"] == ["rank", "setting", "val accuracy"] and table["rows"][0]["rank"] == 1


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grid") / "sweep"
    assert sweep(out, "run.lr=1e-3,3e-2") == 0
    return out


@pytest.mark.slow
def test_every_setting_is_a_run_folder_and_the_summary_ranks_them(grid_sweep: Path):
    found = results(grid_sweep)
    assert set(found) == {"run.lr=0.001", "run.lr=0.03"}
    for setting, result in found.items():
        folder = grid_sweep / setting.replace("=", "-")
        config = (folder / "test" / "config.yaml").read_text()
        assert f"lr: {setting.split('=')[1]}" in config and "max_steps: 3" in config
        assert (folder / "test" / "final" / "trainable.safetensors").is_file()
        assert result["row"]["test accuracy"] == json.loads(
            (folder / "test" / "eval" / "metrics.json").read_text())["accuracy"]
    rows = json.loads((grid_sweep / "sweep.json").read_text())["rows"]
    values = [r["val accuracy"] for r in rows]
    assert values == sorted(values, reverse=True) and len(rows) == 2
    header = "| rank | setting | val accuracy | test accuracy | test weighted_f1 |"
    assert header in (grid_sweep / "sweep.md").read_text()


@pytest.mark.slow
def test_rerun_skips_finished_settings_and_refuses_another_base_config(grid_sweep: Path, capsys):
    finals = {p: p.stat().st_mtime_ns for p in grid_sweep.glob("*/test/final/trainable.safetensors")}
    assert sweep(grid_sweep, "run.lr=1e-3,3e-2") == 0
    assert capsys.readouterr().out.count("finished earlier, skipped") == 2
    assert {p: p.stat().st_mtime_ns for p in finals} == finals
    assert sweep(grid_sweep, "run.lr=1e-3,3e-2", "run.seed=7") == 1
    assert "holds a sweep of another base config" in capsys.readouterr().err


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_same_settings(grid_sweep: Path, tmp_path: Path):
    out = tmp_path / "submitit"
    assert sweep(out, "--launcher", "submitit-local", "--jobs", "2", "run.lr=1e-3,3e-2") == 0
    assert list((out / "submitit").iterdir())  # the jobs went through submitit
    local, submitted = results(grid_sweep), results(out)
    assert set(submitted) == set(local)
    for setting in local:
        assert submitted[setting]["row"] == local[setting]["row"]


@pytest.mark.slow
def test_optuna_search_has_a_fixed_budget_and_seed(tmp_path: Path, capsys):
    out = tmp_path / "optuna"
    args = ("--search", "optuna", "--trials", "2", "--seed", "3", "run.lr=tag(log,interval(1e-3,3e-2))")
    assert sweep(out, *args) == 0
    first = results(out)
    assert len(first) == 2 and all(1e-3 <= float(s.split("=")[1]) <= 3e-2 for s in first)
    capsys.readouterr()
    assert sweep(out, *args) == 0  # the same seed proposes the same settings: both finished already
    assert capsys.readouterr().out.count("finished earlier, skipped") == 2


@pytest.mark.slow
def test_cross_validated_setting_is_ranked_by_fold_mean(tmp_path: Path):
    out = tmp_path / "cross"
    assert sweep(out, "--cross", "run.num_folds=2", "run.lr=choice(3e-2)") == 0
    (result,) = results(out).values()
    summary = json.loads((out / "run.lr-0.03" / "summary.json").read_text())
    assert result["row"]["folds accuracy"] == summary["aggregate"]["accuracy"]
    assert result["objective"] == summary["aggregate"]["accuracy"]["mean"]
    assert result["row"]["folds accuracy"]["n"] == 2
