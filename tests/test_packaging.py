"""Set-up files agree with each other: one source of version truth, required top level, no shadowing."""
from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_pyproject_and_pins_nothing_else():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = env["dependencies"]
    python = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert python == ["python=3.11"] and project["requires-python"] == ">=3.11"
    pip = [d for d in deps if isinstance(d, dict)][0]["pip"]
    assert pip == ["-e .[dev]"], "versions belong in pyproject.toml only"
    assert any(d.startswith("torch==2.14.1") for d in project["dependencies"])


def test_required_top_level_and_datasets_is_not_a_package():
    for name in ["minigpt4", "train_configs", "eval_configs", "datasets", "train.py", "cross_train.py",
                 "eval_emotion.py", "tests", "environment.yml", "README.md", "Makefile", ".ci/run"]:
        assert (ROOT / name).exists(), name
    assert not (ROOT / "datasets" / "__init__.py").exists()


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("\n")[:20]
    commands = [line.strip() for line in head if line.strip().startswith("make ")]
    assert commands[:2] == ["make demo", "make test"]
