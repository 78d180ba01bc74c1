"""One embedded default for every entry point: the demo recipe, announced first; --help; no untrained evaluation."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minigpt4 import entry
from minigpt4.config import ENV_OVERRIDES, field_doc
from minigpt4.data.run_config import load_config

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ["train.py", "eval_emotion.py", "cross_train.py", "predict.py", "app.py"]
QUICK = "run.max_steps=2 run.eval_every=0 eval.max_samples=8"


def run(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                            **(env or {})})


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_help_lists_default_keys_and_examples(script: str, tmp_path: Path) -> None:
    proc = run(script, "--help", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "embedded default:" in text and "train_configs/demo.yaml" in text
    keys = text.split("config keys most often changed")[1].split("\nexamples:\n")[0]
    listed = [line.split()[0] for line in keys.splitlines()[1:] if line.startswith("  ") and line[2].isalpha()]
    assert len(listed) >= 3
    demo = load_config(entry.DEMO_RECIPE)
    for key in listed:
        assert load_config(entry.DEMO_RECIPE, [f"{key}={entry.yaml_value(_select(demo, key))}"])  # a real key
    examples = text.split("\nexamples:\n")[1].strip().splitlines()
    assert examples and all(e.strip().split()[0] in ("python", "torchrun", "curl") for e in examples)
    assert any(script in e for e in examples)


def _select(cfg, key: str):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, throw_on_missing=True)


def test_field_doc_reads_the_schema_docstring() -> None:
    assert field_doc("run.max_steps").startswith("Stop after this many optimizer steps")
    assert field_doc("model.llm.path").startswith("Local Hugging Face model folder")
    assert "``" not in field_doc("eval.mode")


def test_environment_overrides_apply_after_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_OVERRIDES, "run.max_steps=3 eval.max_samples=5")
    cfg = load_config(entry.DEMO_RECIPE, ["run.max_steps=100"])
    assert cfg.run.max_steps == 3 and cfg.eval.max_samples == 5
    monkeypatch.setenv(ENV_OVERRIDES, "run.max_stepz=3")
    with pytest.raises(Exception, match="max_stepz"):
        load_config(entry.DEMO_RECIPE)


def _fake_checkpoint(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "trainable.safetensors").write_bytes(b"x")


def test_newest_demo_checkpoint_is_the_last_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert entry.newest_demo_checkpoint() is None
    train, cross = entry.demo_checkpoints()
    assert train == Path("runs/demo/final") and cross == Path("runs/cross/demo/test/final")
    _fake_checkpoint(cross)
    _fake_checkpoint(train)
    os.utime(cross / "trainable.safetensors", (time.time() + 5,) * 2)
    assert entry.newest_demo_checkpoint() == cross
    (train / "trainable.safetensors").touch()
    os.utime(train / "trainable.safetensors", (time.time() + 10,) * 2)
    assert entry.newest_demo_checkpoint() == train
    (cross.parent / "final").rename(cross.parent / "partial")  # only finished checkpoints count
    assert entry.newest_demo_checkpoint() == train


@pytest.mark.parametrize("script,args", [("eval_emotion.py", []), ("predict.py", ["clip.mp4"]), ("app.py", [])])
def test_no_checkpoint_names_the_command_that_makes_one(script: str, args: list[str], tmp_path: Path) -> None:
    """Entry points that need a trained model never fall back to untrained weights."""
    proc = run(script, *args, cwd=tmp_path)
    assert proc.returncode != 0
    assert "no demo checkpoint yet" in proc.stderr and "make demo" in proc.stderr and "python train.py" in proc.stderr
    assert not (tmp_path / "runs").exists()
    proc = run(script, "--cfg-path", str(ROOT / "eval_configs/demo.yaml"), *args, cwd=tmp_path)
    assert proc.returncode != 0 and "names no model.checkpoint" in proc.stderr
    assert ("--untrained" in proc.stderr) == (script == "eval_emotion.py")


@pytest.mark.slow
def test_bare_train_then_bare_eval_use_the_demo_recipe(tmp_path: Path) -> None:
    """`python train.py` then `python eval_emotion.py`, no arguments: the demo recipe, its own folders."""
    env = {ENV_OVERRIDES: QUICK}
    train = run("train.py", cwd=tmp_path, env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    first = train.stderr.splitlines()[0]
    assert first.startswith("train.py: embedded demo recipe") and "(no --cfg-path)" in first and QUICK in first
    assert (tmp_path / "runs/demo/final/trainable.safetensors").is_file()
    assert not (tmp_path / "runs/cross").exists()  # make demo's folder is untouched
    assert load_config(tmp_path / "runs/demo/config.yaml").run.lr == load_config(entry.DEMO_RECIPE).run.lr

    ev = run("eval_emotion.py", cwd=tmp_path, env=env)
    assert ev.returncode == 0, ev.stderr[-3000:]
    first = ev.stderr.splitlines()[0]
    assert first.startswith("eval_emotion.py: embedded demo recipe")
    assert "checkpoint runs/demo/final (newest demo checkpoint); writing runs/demo/eval" in first
    cfg = load_config(tmp_path / "runs/demo/eval/config.yaml")
    assert cfg.model.checkpoint == "runs/demo/final" and cfg.eval.mode == load_config(entry.DEMO_RECIPE).eval.mode
    assert (tmp_path / "runs/demo/eval/metrics.json").is_file()
    assert (tmp_path / "runs/demo/config.yaml").read_text() != (tmp_path / "runs/demo/eval/config.yaml").read_text()


@pytest.mark.parametrize("script,args,expected", [
    ("train.py", ["run.batch_size=0"], "train.py: error: command line: run.batch_size=0: expected at least 1"),
    ("train.py", ["run.lr=-1"], "train.py: error: command line: run.lr=-1.0: expected a number above 0"),
    ("train.py", ["run.no_such_key=1"], "train.py: error: command line: bad config key 'run.no_such_key'"),
    ("datasets/extract_features.py", ["--clips", "PIPE", "--output", "OUT"],
     "extract_features.py: error: PIPE: is a FIFO (named pipe), not a regular media file"),
])
def test_user_errors_are_one_line_without_traceback(script: str, args: list[str], expected: str,
                                                    tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.mp4")
    args = [a.replace("PIPE", str(tmp_path / "pipe.mp4")).replace("OUT", str(tmp_path / "out")) for a in args]
    proc = run(script, *args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert expected.replace("PIPE", str(tmp_path / "pipe.mp4")) in proc.stderr.strip().splitlines()[-1]


def test_run_main_keeps_the_traceback_of_a_real_bug_and_names_a_full_disk(capsys) -> None:
    def bug(argv: list[str]) -> int:
        raise RuntimeError("a bug")

    def disk_full(argv: list[str]) -> int:
        raise OSError(28, "No space left on device", "/runs/x/state.pt")

    with pytest.raises(RuntimeError, match="a bug"):
        entry.run_main("x.py", bug, [])
    assert entry.run_main("x.py", disk_full, []) == 1
    assert capsys.readouterr().err.startswith("x.py: error: no space left on device writing /runs/x/state.pt")
