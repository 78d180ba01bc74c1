"""Never lose data, never mix runs: run-folder lock and fingerprint, SIGTERM checkpoints, owned output folders."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minigpt4.data.run_config import load_config
from minigpt4.models import checkpoint as ckpt
from minigpt4.runtime.output_folder import MARKER, OutputFolderError, claim_folder
from minigpt4.runtime.run_folder import RunFolderError
from minigpt4.runtime.run_lock import LOCK_FILE, RunLock, RunLocked
from minigpt4.training.loop import TrainingInterrupted, fit

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["run.eval_every=0", "eval.max_samples=16", "run.log_every=1", "run.warmup_steps=2"]


def running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def cfg_for(out: Path, *overrides: str):
    return load_config(ROOT / "train_configs" / "demo.yaml", [f"run.output_dir={out}", *QUICK, *overrides])


def test_output_folder_is_replaced_only_when_it_is_the_tools_own_and_asked(tmp_path: Path) -> None:
    foreign = tmp_path / "corpus"
    foreign.mkdir()
    (foreign / "labels.csv").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(OutputFolderError, match=rf"corpus is not empty .* has no {MARKER}"):
            claim_folder(foreign, "pack_features.py", overwrite=overwrite)
    assert (foreign / "labels.csv").read_text() == "keep me"

    mine = tmp_path / "store"
    assert claim_folder(mine, "pack_features.py", identity={"a": 1}) is None
    (mine / "audio.npy").write_text("old")
    assert claim_folder(mine, "pack_features.py", identity={"a": 2})["identity"] == {"a": 1}  # caller decides
    assert (mine / "audio.npy").is_file()
    with pytest.raises(OutputFolderError, match="made by pack_features.py"):
        claim_folder(mine, "train.py", overwrite=True)
    assert claim_folder(mine, "pack_features.py", overwrite=True, identity={"a": 2}) is None
    assert sorted(p.name for p in mine.iterdir()) == [MARKER]


def test_run_lock_refuses_a_second_holder_and_reclaims_a_dead_ones(tmp_path: Path, caplog) -> None:
    (tmp_path / LOCK_FILE).write_text("pid 999999999 host gone\n")  # left by a trainer that was SIGKILLed
    with caplog.at_level(logging.WARNING), RunLock(tmp_path):
        assert "reclaimed the stale lock" in caplog.text and "pid 999999999" in caplog.text
        with pytest.raises(RunLocked, match=rf"in use by process pid {os.getpid()} host "):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()  # released on exit
    RunLock(tmp_path).acquire().release()


def test_train_refuses_a_folder_of_another_run(tmp_path: Path) -> None:
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    with pytest.raises(OutputFolderError, match="not an output folder of train.py"):
        fit(cfg_for(foreign, "run.max_steps=2"), overwrite=True)
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]

    out = tmp_path / "run"
    fit(cfg_for(out, "run.max_steps=2"))
    with pytest.raises(RunFolderError, match=r"(?s)different configuration.*run\.max_steps: 2 -> 3.*--overwrite"):
        fit(cfg_for(out, "run.max_steps=3", "run.resume=true"))
    with pytest.raises(RunFolderError, match=r"already holds a run of this configuration: .*run\.resume=true"):
        fit(cfg_for(out, "run.max_steps=2"))
    fit(cfg_for(out, "run.max_steps=3"), overwrite=True)
    assert [p.name for p in ckpt.step_folders(out / "checkpoints")] == ["step_3"]  # no step of the old run left


def test_sigterm_checkpoints_and_resume_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ("run.max_steps=4", "run.save_every=0", "run.batch_size=4")
    fit(cfg_for(tmp_path / "a", *args))
    from minigpt4.training.engine import TorchEngine

    original, calls = TorchEngine.step, {"n": 0}

    def sigterm_during_step_2(self):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step: the step still completes
        return original(self)

    monkeypatch.setattr(TorchEngine, "step", sigterm_during_step_2)
    with pytest.raises(TrainingInterrupted, match=r"after step 2 of 4.*step_2.*run\.resume=true"):
        fit(cfg_for(tmp_path / "b", *args))
    monkeypatch.undo()
    assert [p.name for p in ckpt.step_folders(tmp_path / "b" / "checkpoints")] == ["step_2"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler does not outlive training
    fit(cfg_for(tmp_path / "b", *args, "run.resume=true"))
    a = load_file(str(tmp_path / "a" / "final" / ckpt.WEIGHTS))
    b = load_file(str(tmp_path / "b" / "final" / ckpt.WEIGHTS))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_checkpoints_like_sigterm_and_a_second_one_aborts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    args = ("run.max_steps=4", "run.save_every=0", "run.batch_size=4")
    from minigpt4.training.engine import TorchEngine

    original, calls = TorchEngine.step, {"n": 0}

    def ctrl_c_during(steps: tuple[int, ...]):
        def step(self):
            calls["n"] += 1
            if calls["n"] in steps:
                os.kill(os.getpid(), signal.SIGINT)  # arrives mid-step: the step still completes
            return original(self)
        return step

    monkeypatch.setattr(TorchEngine, "step", ctrl_c_during((2,)))
    with pytest.raises(TrainingInterrupted, match=r"stopped by SIGINT after step 2 of 4.*run\.resume=true") as stop:
        fit(cfg_for(tmp_path / "a", *args))
    assert stop.value.exit_status == 130
    assert [p.name for p in ckpt.step_folders(tmp_path / "a" / "checkpoints")] == ["step_2"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler does not outlive training

    calls["n"] = 0
    monkeypatch.setattr(TorchEngine, "step", ctrl_c_during((2,)))
    original_kill = os.kill

    def twice(pid: int, signum: int) -> None:  # two Ctrl-C in the same step
        original_kill(pid, signum)
        original_kill(pid, signum)

    monkeypatch.setattr(os, "kill", twice)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg_for(tmp_path / "b", *args))
    monkeypatch.undo()
    assert ckpt.step_folders(tmp_path / "b" / "checkpoints") == []


@pytest.mark.slow
def test_second_trainer_on_one_folder_fails_naming_the_first(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "--cfg-path", str(ROOT / "train_configs" / "demo.yaml"), *QUICK,
           "run.max_steps=100000", "run.save_every=0", f"run.output_dir={out}"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not (out / "metrics.csv").is_file() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()[1][-3000:]
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert second.returncode == 1
        assert f"in use by process pid {first.pid} host" in second.stderr, second.stderr[-3000:]
        first.send_signal(signal.SIGTERM)  # what SLURM and timeout send: finish the step, checkpoint, exit non-zero
        _, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM after step" in err and "run.resume=true" in err
    saved = ckpt.step_folders(out / "checkpoints")
    assert len(saved) == 1 and not (out / "final").exists() and not (out / LOCK_FILE).exists()


@pytest.mark.slow
def test_sigkilled_cross_train_leaves_no_trainer_and_the_rerun_matches(tmp_path: Path) -> None:
    from minigpt4.cross_validation.plan import Options, cross_validate

    overrides = ["run.max_steps=12", "run.epochs=1", "run.eval_every=0", "run.log_every=1", "run.save_every=0",
                 "eval.max_samples=8", "eval.max_new_tokens=4"]
    reference = tmp_path / "reference"
    cross_validate(Options(cfg_path=ROOT / "train_configs" / "demo.yaml", overrides=[*overrides, f"run.output_dir={reference}"],
                units=["1"]))

    out = tmp_path / "killed"
    cmd = [sys.executable, str(ROOT / "cross_train.py"), "--folds", "1", *overrides, f"run.output_dir={out}"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    fold = out / "fold_1"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (fold / "metrics.csv").is_file():  # the trainer is stepping
        assert parent.poll() is None, "cross_train.py ended before training started"
        time.sleep(0.1)
    trainer = int((fold / LOCK_FILE).read_text().split()[1])
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and running(trainer):
        time.sleep(0.2)
    assert not running(trainer), f"trainer {trainer} survived its SIGKILLed cross_train.py"
    assert not (fold / "final").exists() and ckpt.step_folders(fold / "checkpoints")  # stopped with a checkpoint

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "fold 1/5: resume training" in rerun.stdout

    def summary(folder: Path) -> dict:
        return {k: v for k, v in json.loads((folder / "summary.json").read_text()).items() if k != "run"}

    assert summary(out) == summary(reference)


def load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rescoring_never_rewrites_the_original_reports(tmp_path: Path, capsys) -> None:
    run = tmp_path / "eval"
    run.mkdir()
    lines = [{"id": "s1", "gold": ["sad"], "pred": ["sad"], "text": "sad"},
             {"id": "s2", "gold": ["happy"], "pred": ["sad"], "text": "sad"}]
    (run / "predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run / "report.md").write_text("original")
    main = load_script("eval_emotion").main
    args = ["--from-predictions", str(run / "predictions.jsonl"), "--labels", "sad,happy"]
    with pytest.raises(SystemExit):
        main(args)  # no --output-dir
    assert "needs --output-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="not an output folder of eval_emotion.py"):
        main([*args, "--output-dir", str(run), "--overwrite"])
    assert (run / "report.md").read_text() == "original"
    main([*args, "--output-dir", str(tmp_path / "rescored")])
    with pytest.raises(SystemExit, match="holds an earlier evaluation: pass --overwrite"):
        main([*args, "--output-dir", str(tmp_path / "rescored")])
    main([*args, "--output-dir", str(tmp_path / "rescored"), "--overwrite"])
    assert json.loads((tmp_path / "rescored" / "metrics.json").read_text())["accuracy"] == 0.5


def test_rescoring_names_a_sample_whose_gold_label_is_unknown(tmp_path: Path) -> None:
    from minigpt4.evaluation.report import rescore

    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "dia3_utt1", "gold": ["joy"], "pred": ["sad"], "text": "sad"})
                                      + "\n")
    with pytest.raises(ValueError, match=r"p\.jsonl: sample dia3_utt1: gold label\(s\) 'joy' not among the labels "
                                         r"sad, happy"):
        rescore(tmp_path / "p.jsonl", "sad,happy", None, tmp_path / "out")


def test_cross_train_never_deletes_a_fold_a_trainer_still_holds(tmp_path: Path) -> None:
    from minigpt4.cross_validation.plan import (
        CrossValidationError,
        Options,
        base_config,
        eval_section,
        prepare_unit,
    )

    opts = Options(cfg_path=ROOT / "train_configs" / "demo.yaml", overrides=[f"run.output_dir={tmp_path}"])
    base = base_config(opts)
    fold = tmp_path / "fold_1"
    with RunLock(fold):  # a survivor of an earlier cross_train.py, still training
        (fold / "metrics.csv").write_text("step,epoch,name,value\n")
        with pytest.raises(CrossValidationError, match=rf"fold 1/5: {fold} is still in use by process pid {os.getpid()}"):
            prepare_unit("1", base, eval_section(opts, base), opts)
        assert (fold / "metrics.csv").is_file()


def test_another_label_mode_gets_its_own_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--label-mode multi` on the single-label demo is another study: it must not land in runs/cross/demo."""
    from minigpt4.cross_validation.plan import Options, base_config

    monkeypatch.chdir(tmp_path)
    demo = ROOT / "train_configs" / "demo.yaml"
    assert Path(base_config(Options(cfg_path=demo)).run.output_dir) == tmp_path / "runs" / "cross" / "demo"
    assert Path(base_config(Options(cfg_path=demo, label_mode="single")).run.output_dir) == tmp_path / "runs/cross/demo"
    multi = base_config(Options(cfg_path=demo, label_mode="multi"))
    assert Path(multi.run.output_dir) == tmp_path / "runs" / "cross" / "demo_multi"
    assert multi.data.label_mode == "multi"
