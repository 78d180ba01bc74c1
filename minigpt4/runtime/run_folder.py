"""A training run folder's identity: which config made it, and whether a new ``train.py`` may write into it.

Why: ``train.py`` into a folder of another run used to replace its ``final/``, truncate its metrics and later
resume from the *old* run's checkpoints. The folder's marker (:mod:`minigpt4.runtime.output_folder`) records the
resolved config; a different config is refused naming the keys that differ, and an existing run of the same
config is continued only under ``run.resume=true``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from minigpt4.runtime import output_folder
from minigpt4.runtime.run_lock import LOCK_FILE

TOOL = "train.py"
FREE = {"output_dir", "resume", "num_workers"}
"""``run.*`` keys that may change between a run and its resumption (where, whether, how fast data loads)."""


class RunFolderError(output_folder.OutputFolderError):
    """The run folder holds another run, or a run that must be resumed or overwritten explicitly."""


def identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config that decides what a run computes."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config["run"] = {k: v for k, v in config["run"].items() if k not in FREE}
    return config


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if not isinstance(tree, dict) or not tree:
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out |= flatten(value, f"{prefix}{key}.")
    return out


def differences(old: Any, new: Any) -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs (``<unset>`` where one side lacks it)."""
    a, b = flatten(old), flatten(new)
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k)]


def started(folder: Path) -> bool:
    """True when a trainer got as far as writing metrics, checkpoints or ``final/``."""
    return any((folder / name).exists() for name in ("metrics.csv", "checkpoints", "final"))


def claim_run(cfg: DictConfig, overwrite: bool = False) -> None:
    """Mark ``run.output_dir`` for this config, or check that the run already there may be continued."""
    folder = Path(cfg.run.output_dir)
    current = identity(cfg)
    marker = output_folder.claim_folder(folder, TOOL, overwrite, current, ignore=(LOCK_FILE,))
    if marker is None:
        return
    if marker["fingerprint"] != output_folder.fingerprint(current):
        diff = differences(marker["identity"], current)
        raise RunFolderError(f"{folder} holds a run of a different configuration:\n  " + "\n  ".join(diff[:20])
                             + "\nrerun with --overwrite to discard it, or choose another run.output_dir=DIR")
    if started(folder) and not cfg.run.resume:
        raise RunFolderError(f"{folder} already holds a run of this configuration: rerun with run.resume=true to "
                             f"continue it, with --overwrite to discard it, or choose another run.output_dir=DIR")
