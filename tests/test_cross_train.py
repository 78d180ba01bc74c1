"""cross_train.py: group folds, fold configs, run-folder identity, resume, failures and the modality ablation.

The slow tests run real fold subprocesses (train.py, eval_emotion.py) on the demo corpus with few steps; one
module-scoped run (folds 1, 2 and the test run) serves several of them.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from minigpt4.cross_validation.launch import FoldLaunchError, auto_jobs, device_sets
from minigpt4.cross_validation.plan import (
    CrossValidationError,
    Options,
    ablation_subsets,
    aggregate_study,
    cross_validate,
    plan_folds,
    prepare_run_dir,
    unit_config,
)
from minigpt4.data.corpora import load_corpus
from minigpt4.data.run_config import load_config
from minigpt4.data.splits import cv_pool

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "train_configs" / "demo.yaml"
QUICK = ["run.max_steps=4", "run.epochs=1", "run.eval_every=0", "eval.max_samples=8", "eval.max_new_tokens=4"]
"""Overrides that keep a fold to a few seconds: enough to exercise every file the run writes."""


def tracked_config_hashes() -> dict[str, str]:
    return {str(p.relative_to(REPO)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("train_configs", "eval_configs") for p in sorted((REPO / folder).rglob("*")) if p.is_file()}


def test_folds_are_disjoint_whole_groups_covering_the_pool():
    cfg = load_config(DEMO)
    plan = plan_folds(cfg)
    corpus = load_corpus(cfg.data, [m for m in cfg.data.modalities if m != "text"])
    pool = {s.id for s in cv_pool(corpus.samples)}
    held = [set(f["fold"]) for f in plan.folds]
    assert len(held) == cfg.run.num_folds == 5
    assert sum(map(len, held)) == len(pool) and set().union(*held) == pool  # disjoint and covering
    assert not pool & set(plan.test) and plan.test
    for k, fold in enumerate(plan.folds):
        held_groups = {plan.groups[i] for i in fold["fold"]}
        assert len(held_groups) == 1  # five sessions, five folds: leave one session out
        assert not held_groups & {plan.groups[i] for i in fold["train"] + fold["val"]}
        assert not {plan.groups[i] for i in fold["train"]} & {plan.groups[i] for i in fold["val"]}
        assert set(fold["train"]) | set(fold["val"]) == pool - held[k]


def test_every_unit_starts_from_the_base_checkpoint():
    base = load_config(DEMO, ["model.checkpoint=/base/ckpt", "run.output_dir=/runs/x"])
    configs = {unit: unit_config(base, unit) for unit in ["1", "2", "3", "4", "5", "test"]}
    for unit, cfg in configs.items():
        assert cfg.model.checkpoint == "/base/ckpt"
        assert (cfg.model.seed, cfg.run.seed, cfg.run.resume) == (base.model.seed, base.run.seed, False)
        assert cfg.run.fold == (None if unit == "test" else int(unit))
    assert len({cfg.run.output_dir for cfg in configs.values()}) == 6
    assert base.run.fold is None and base.run.output_dir == "/runs/x"  # the base config is not modified


def test_ablation_subsets_leave_each_modality_out():
    assert ablation_subsets(["face", "audio", "text"]) == [["face", "audio", "text"], ["audio", "text"],
                                                            ["face", "text"], ["face", "audio"]]
    assert ablation_subsets(["audio"]) == [["audio"]]


def test_study_tables_average_across_folds():
    fold1 = {"columns": ["instruction", "prompt", "accuracy"],
             "rows": [{"instruction": 0, "prompt": "p0", "accuracy": 0.5}, {"instruction": 1, "prompt": "p1", "accuracy": 0.7},
                      {"instruction": "mean ± std", "prompt": "", "accuracy": {"mean": 0.6, "std": 0.1, "n": 2}}]}
    fold2 = {"columns": fold1["columns"], "rows": [{"instruction": 0, "prompt": "p0", "accuracy": 0.7},
                                                   {"instruction": 1, "prompt": "p1", "accuracy": 0.7}]}
    rows, columns = aggregate_study({"fold_1": fold1, "fold_2": fold2})
    assert columns == ["instruction", "prompt", "folds", "accuracy"]
    assert [(r["instruction"], r["prompt"], r["folds"]) for r in rows] == [(0, "p0", 2), (1, "p1", 2)]
    assert rows[0]["accuracy"]["mean"] == pytest.approx(0.6) and rows[1]["accuracy"]["std"] == 0


def test_run_folder_of_another_config_is_refused(tmp_path: Path):
    out = tmp_path / "run"
    base = OmegaConf.create({"run": {"max_steps": 5}})
    prepare_run_dir(out, {"config": {"run": {"max_steps": 5}}}, base, Options(cfg_path=None))
    (out / "fold_1").mkdir()
    prepare_run_dir(out, {"config": {"run": {"max_steps": 5}}}, base, Options(cfg_path=None))  # same: continues
    assert (out / "fold_1").is_dir()
    with pytest.raises(CrossValidationError, match=r"(?s)different configuration.*run\.max_steps: 5 -> 6.*--overwrite"):
        prepare_run_dir(out, {"config": {"run": {"max_steps": 6}}}, base, Options(cfg_path=None))
    prepare_run_dir(out, {"config": {"run": {"max_steps": 6}}}, base, Options(cfg_path=None, overwrite=True))
    assert not (out / "fold_1").exists()
    assert json.loads((out / "cross_run.json").read_text())["identity"]["config"]["run"]["max_steps"] == 6

    other = tmp_path / "not_a_run"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(CrossValidationError, match="not a cross-validation run folder"):
        prepare_run_dir(other, {}, base, Options(cfg_path=None, overwrite=True))
    assert (other / "keep.txt").read_text() == "mine"


def test_bad_fold_selection_is_refused(tmp_path: Path):
    with pytest.raises(CrossValidationError, match="--folds names '7'"):
        cross_validate(Options(cfg_path=DEMO, overrides=[f"run.output_dir={tmp_path}"], units=["1", "7"]))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Folds 1 and 2 plus the test run, two at a time, with the ablation study, a few steps each; tracked hashes
    before."""
    hashes = tracked_config_hashes()
    out = tmp_path_factory.mktemp("cross") / "run"
    assert cross_validate(Options(cfg_path=DEMO, overrides=[*QUICK, f"run.output_dir={out}"], units=["1", "2", "test"],
                       ablations=True, jobs=2)) == out / "summary.md"
    return out, hashes


def _summary(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    return {"folds": summary["folds"], "aggregate": summary["aggregate"], "test": summary["test"]}


@pytest.mark.slow
def test_run_folder_layout_and_summary(baseline):
    out, _ = baseline
    for name in ("cross_run.json", "base_config.yaml", "folds.json", "cross_train.log", "summary.json", "summary.md",
                 "confusion_matrix_folds.png", "ablation.md", "ablation.json"):
        assert (out / name).is_file(), name
    for unit in ("fold_1", "fold_2", "test"):
        for name in ("config.yaml", "eval_config.yaml", "train.log", "fold.out", "final/trainable.safetensors",
                     "eval/metrics.json", "eval/predictions.jsonl", "eval/report.md", "eval/ablation.json"):
            assert (out / unit / name).is_file(), f"{unit}/{name}"
        assert not (out / unit / "eval.partial").exists()
    assert not (out / "fold_3").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["folds"]) == ["fold_1", "fold_2"] and summary["test"]["n_samples"] == 8
    assert summary["aggregate"]["accuracy"]["n"] == 2
    ablation = json.loads((out / "ablation.json").read_text())
    modalities = OmegaConf.load(out / "base_config.yaml").data.modalities
    assert [r["modalities"] for r in ablation["rows"]] == ["+".join(s) for s in ablation_subsets(modalities)]
    assert all(r["folds"] == 2 and set(r["accuracy"]) == {"mean", "std", "n"} for r in ablation["rows"])
    folds = json.loads((out / "folds.json").read_text())
    assert [f["fold_groups"] for f in folds["folds"]] == [[f"Session{k}"] for k in range(1, 6)]


@pytest.mark.slow
def test_fold_configs_share_the_base_checkpoint(baseline):
    out, _ = baseline
    base = OmegaConf.load(out / "base_config.yaml")
    for k, unit in enumerate(("fold_1", "fold_2", "test"), 1):
        cfg = OmegaConf.load(out / unit / "config.yaml")
        assert cfg.model.checkpoint == base.model.checkpoint and cfg.model.seed == base.model.seed
        assert cfg.run.seed == base.run.seed and cfg.run.output_dir == str(out / unit)
        assert cfg.run.fold == (None if unit == "test" else k)
        evaluated = OmegaConf.load(out / unit / "eval_config.yaml")
        assert evaluated.model.checkpoint == str(out / unit / "final")
        assert evaluated.eval.split == ("test" if unit == "test" else "fold")


@pytest.mark.slow
def test_tracked_config_files_are_not_written(baseline):
    _, before = baseline
    assert before and tracked_config_hashes() == before


@pytest.mark.slow
def test_rerun_after_interruption_ends_with_the_same_summary(baseline, tmp_path: Path, capsys):
    out, _ = baseline
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    # Killed while training fold 2: no final/, no checkpoint, no eval yet; a half-written evaluation left over.
    for name in ("final", "checkpoints", "eval"):
        shutil.rmtree(copy / "fold_2" / name)
    (copy / "fold_2" / "eval.partial").mkdir()
    (copy / "summary.json").unlink()
    capsys.readouterr()
    cross_validate(Options(cfg_path=DEMO, overrides=[*QUICK, f"run.output_dir={copy}"], units=["1", "2", "test"], ablations=True))
    printed = capsys.readouterr().out
    assert "fold 1/5: finished earlier, skipped" in printed and "test run: finished earlier, skipped" in printed
    assert "fold 2/5: train, then evaluate on held-out fold 2" in printed
    assert _summary(copy) == _summary(out)
    assert json.loads((copy / "ablation.json").read_text()) == json.loads((out / "ablation.json").read_text())


def _fold_metrics(out: Path) -> dict[str, dict]:
    return {p.parent.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/eval/metrics.json"))}


@pytest.mark.slow
def test_one_fold_at_a_time_gives_the_same_metrics_as_two(baseline, tmp_path: Path):
    out, _ = baseline
    serial = tmp_path / "serial"
    cross_validate(Options(cfg_path=DEMO, overrides=[*QUICK, f"run.output_dir={serial}"], units=["1", "2", "test"],
                ablations=True, jobs=1))
    assert "up to 1 at once" in (serial / "cross_train.log").read_text()
    assert "up to 2 at once" in (out / "cross_train.log").read_text()
    assert set(_fold_metrics(out)) == {"fold_1", "fold_2", "test"}
    assert _fold_metrics(serial) == _fold_metrics(out)
    assert _summary(serial) == _summary(out)
    assert json.loads((serial / "ablation.json").read_text()) == json.loads((out / "ablation.json").read_text())


@pytest.mark.slow
def test_submitit_local_executor_runs_folds_into_the_same_run_folder(baseline, tmp_path: Path):
    """``--launcher submitit-local`` is the SLURM path (pickled fold command, job polling) on this machine."""
    out, _ = baseline
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    for unit in ("fold_2", "test"):  # fold 1 stays finished: skipped, not resubmitted
        shutil.rmtree(copy / unit)
    (copy / "summary.json").unlink()
    cross_validate(Options(cfg_path=DEMO, overrides=[*QUICK, f"run.output_dir={copy}"], units=["1", "2", "test"],
                ablations=True, launcher="submitit-local", submitit=["timeout_min=30"]))
    log = (copy / "cross_train.log").read_text()
    assert "fold 1/5: finished earlier, skipped" in log and "2 unit(s) to run as submitit-local jobs" in log
    assert len(list((copy / "submitit").glob("*_submitted.pkl"))) == 2
    assert _fold_metrics(copy) == _fold_metrics(out)
    assert _summary(copy) == _summary(out)


def test_submitit_parameters_are_checked(tmp_path: Path):
    with pytest.raises(CrossValidationError, match=r"--submitit-param .*no_such_parameter"):
        cross_validate(Options(cfg_path=DEMO, overrides=[f"run.output_dir={tmp_path}"], launcher="submitit-local",
                    submitit=["no_such_parameter=1"], units=["1"]))
    with pytest.raises(CrossValidationError, match="only applies with --launcher"):
        cross_validate(Options(cfg_path=DEMO, overrides=[f"run.output_dir={tmp_path}"], submitit=["timeout_min=5"]))


def test_each_concurrent_fold_gets_its_own_devices():
    assert device_sets(2, 2, ["0", "1", "2", "3"], 16) == [{"CUDA_VISIBLE_DEVICES": "0,1"},
                                                           {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert device_sets(2, 1, ["4", "6", "7"], 16) == [{"CUDA_VISIBLE_DEVICES": "4"}, {"CUDA_VISIBLE_DEVICES": "6"}]
    with pytest.raises(FoldLaunchError, match="needs 4 GPUs; 3 visible"):
        device_sets(2, 2, ["0", "1", "2"], 16)
    cpu = device_sets(3, 2, [], 12)
    assert cpu == [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}] * 3
    assert device_sets(4, 1, [], 2)[0]["OMP_NUM_THREADS"] == "1"  # never zero threads
    assert auto_jobs(1, [], 2) == 2 and auto_jobs(2, ["0", "1", "2", "3", "4"], 64) == 2 and auto_jobs(4, [], 2) == 1


@pytest.mark.slow
def test_rerun_with_another_config_is_refused(baseline):
    out, _ = baseline
    overrides = [*QUICK, "run.max_steps=5", f"run.output_dir={out}"]
    with pytest.raises(CrossValidationError, match=r"(?s)run\.max_steps: 4 -> 5.*--overwrite"):
        cross_validate(Options(cfg_path=DEMO, overrides=overrides, units=["1"], ablations=True))
    with pytest.raises(CrossValidationError, match=r"eval\.ablations"):  # the study is part of the identity
        cross_validate(Options(cfg_path=DEMO, overrides=[*QUICK, f"run.output_dir={out}"], units=["1"]))


@pytest.mark.slow
def test_failing_fold_stops_the_run_with_its_log_tail(tmp_path: Path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(REPO / "cross_train.py"), "--cfg-path", str(DEMO), "--folds", "1,2", "--jobs", "1", *QUICK,
         "model.llm.path=/nonexistent/llm", f"run.output_dir={out}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "fold 1/5 failed (exit status 1)" in result.stderr
    assert "/nonexistent/llm is not a folder" in result.stderr  # the tail of the fold's own log
    assert not (out / "fold_2").exists() and not (out / "summary.json").exists()


@pytest.mark.slow
def test_ablation_removing_audio_lowers_accuracy(tmp_path: Path):
    """The demo corpus gives audio the strongest class signal and face almost none (minigpt4/corpora/demo.py);
    with the transcript out of the prompt, leaving audio out must cost accuracy on the held-out session."""
    out = tmp_path / "run"
    cross_validate(Options(cfg_path=DEMO, units=["1"], ablations=True,
                overrides=["data.modalities=[audio,face]", "data.transcript=false", "run.max_steps=300",
                           "run.eval_every=100", f"run.output_dir={out}"]))
    accuracy = {r["modalities"]: r["accuracy"]["mean"] for r in json.loads((out / "ablation.json").read_text())["rows"]}
    assert set(accuracy) == {"audio+face", "face", "audio"}
    assert accuracy["audio+face"] >= accuracy["face"] + 0.1, accuracy
    assert accuracy["audio"] >= accuracy["face"] + 0.1, accuracy
