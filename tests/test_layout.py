"""The package's shape: subpackages import one way, and no import hides inside a function without a reason."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minigpt4"
LAYER = {"modalities": 0, "runtime": 0, "config": 0, "features": 1, "extract": 2, "data": 3, "models": 4,
         "evaluation": 5, "training": 6, "entry": 7, "cross_validation": 8, "serving": 8, "sweep": 9}
"""Each part may import parts of a lower layer only (the registry, config and runtime: from anywhere)."""
LAZY = {"deepspeed", "librosa", "h5py", "skimage", "onnxruntime", "submitit", "torch.utils.tensorboard"}
"""Heavy optional libraries that may be imported inside the function that needs them."""


def modules() -> list[tuple[str, ast.Module]]:
    return [(str(f.relative_to(PACKAGE)), ast.parse(f.read_text())) for f in sorted(PACKAGE.rglob("*.py"))]


def part(name: str) -> str:
    return name.split("/")[0].removesuffix(".py")


def test_subpackages_import_one_way():
    wrong = []
    for name, tree in modules():
        own = part(name)
        if own == "__init__":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minigpt4."):
                dep = node.module.split(".")[1]
                if dep != own and LAYER[dep] and LAYER[dep] >= LAYER[own]:
                    wrong.append(f"{name} imports {node.module}")
    assert not wrong, wrong


def test_imports_inside_functions_are_only_heavy_optional_libraries():
    hidden = []
    for name, tree in modules():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        mods = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom):
                        mods = [node.module or ""]
                    else:
                        continue
                    hidden += [f"{name}: {m}" for m in mods if m not in LAZY and m.split(".")[0] not in LAZY]
    assert not hidden, hidden


def test_every_public_class_says_what_it_is():
    bare = [f"{name}: {node.name}" for name, tree in modules() for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and not ast.get_docstring(node)]
    assert not bare, bare
