"""Set-up files agree with each other: one source of version truth, required top level, no shadowing."""
from __future__ import annotations

import re
import tomllib
from importlib.metadata import packages_distributions
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


USED_WITHOUT_IMPORT = {
    "torchvision": "timm imports it; pinned to the build that matches torch",
    "tensorboard": "torch.utils.tensorboard writes through it",
    "python-multipart": "FastAPI parses the page's uploads with it",
    "onnx": "torch.onnx.export builds the model with it",
    "onnxscript": "torch.onnx.export (dynamo) translates with it",
    "hydra-submitit-launcher": "a Hydra plugin, picked by name (sweep.py --launcher slurm / submitit-local)",
    "hydra-optuna-sweeper": "a Hydra plugin, picked by name (sweep.py --search optuna)",
}
"""Dependencies no project file imports, and what uses them: every other one must be imported somewhere."""


def test_every_dependency_is_imported_or_says_what_uses_it():
    modules_of: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    sources = "\n".join(p.read_text(encoding="utf-8") for folder in ("minigpt4", "datasets", "bench", "tests")
                        for p in (ROOT / folder).rglob("*.py")) + "\n".join(p.read_text() for p in ROOT.glob("*.py"))
    imported = set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", sources, re.MULTILINE))
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [re.split(r"[<>=~!\[; ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps]
    unused = [n for n in names if n not in USED_WITHOUT_IMPORT and not modules_of.get(n, set()) & imported]
    assert not unused, f"in pyproject.toml but imported nowhere: {unused}"
    assert set(USED_WITHOUT_IMPORT) <= set(names)
