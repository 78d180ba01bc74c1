"""Reading a config: schema defaults -> model preset (``model.preset``) -> the YAML file -> CLI overrides.

An unknown key or a value of the wrong type fails here, before anything is built, naming the key and the file.
"""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from minigpt4.config.checks import check_config, require_complete
from minigpt4.config.schema import Config, ConfigError, field_type
from minigpt4.runtime.run_folder import flatten

PRESETS = Path(__file__).resolve().parent / "presets"
"""Named presets, one YAML file each: ``presets/<kind>/<name>.yaml``."""
ENV_OVERRIDES = "EMOTION_LLAMA_OVERRIDES"
"""Environment variable of space-separated ``key=value`` overrides applied after the command line's (quick
runs of any documented command, e.g. ``run.max_steps=4``; the README test uses it). Entry points print it."""
SWEEP_BLOCK = "sweep"
"""Top-level block of a config file that only ``sweep.py`` reads (the swept keys and how they run)."""


def preset_path(kind: str, name: str) -> Path:
    path = PRESETS / kind / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown {kind} preset {name!r}; available: {', '.join(available)}")
    return path


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        kind = field_type(key) if key else None
        if isinstance(kind, type) and issubclass(kind, Enum):
            value = OmegaConf.select(OmegaConf.create(other), key, default=None)
            raise ConfigError(f"{source}: {key}={value!r} is not one of {', '.join(kind)}") from None
        why = str(err.msg if hasattr(err, "msg") else err).splitlines()[0]  # OmegaConf appends its own context
        raise ConfigError(f"{source}: bad config key {key!r}: {why}") from None


def read_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                allow_missing: bool = False) -> DictConfig:
    """Schema <- model preset <- YAML file <- ``key=value`` overrides (then ``$EMOTION_LLAMA_OVERRIDES``'s),
    validated against the schema. Feature widths left unset stay None: the data layer's ``load_config`` fills
    them from the feature store.

    ``???`` in a preset or file marks a required local path. OmegaConf's merge would silently keep the
    earlier value, so required keys are tracked across sources; unless ``allow_missing`` (used to validate
    shipped templates), any still unset is an error listing them all. A preset chosen on the command line
    over the file's own (``model.preset=tiny`` on a ``llama2_7b`` config) also replaces the file's ``???``
    for the keys that preset sets (the tiny preset sets ``llm.path`` and ``vision.checkpoint`` to null);
    every other ``???`` (data, checkpoints) stays required.
    """
    cfg = OmegaConf.structured(Config)
    file_cfg = OmegaConf.create()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        file_cfg = OmegaConf.load(path)
        file_cfg.pop(SWEEP_BLOCK, None)  # sweep.py's settings; a run of this file trains its base point
    overrides = [*overrides, *os.environ.get(ENV_OVERRIDES, "").split()]
    try:
        cli_cfg = OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"command line / ${ENV_OVERRIDES}: cannot parse overrides {list(overrides)}: {err}") from None
    file_preset = OmegaConf.select(file_cfg, "model.preset")
    preset = OmegaConf.select(cli_cfg, "model.preset") or file_preset or "tiny"
    preset_cfg = OmegaConf.load(preset_path("model", preset))
    required: set[str] = set()
    for source, conf in ((f"preset model/{preset}", preset_cfg), (str(path) if path else "config", file_cfg),
                         ("command line", cli_cfg)):
        required -= _given(conf, required)
        missing = OmegaConf.missing_keys(conf)
        if conf is file_cfg and file_preset and preset != file_preset:
            missing -= _preset_sets(preset_cfg, missing)
        required |= missing
        cfg = _merge(cfg, conf, source)
    for key in sorted(required):
        OmegaConf.update(cfg, key, MISSING)
    source = str(path) if path else "config"
    if not allow_missing:
        require_complete(cfg, source)
    check_config(cfg, source, frozenset(flatten(OmegaConf.to_container(cli_cfg))))
    return cfg


def _given(conf: DictConfig, keys: set[str]) -> set[str]:
    """The ``keys`` that ``conf`` gives a value, null included (``model.checkpoint=null``: no checkpoint)."""
    absent = object()
    return {k for k in keys if OmegaConf.select(conf, k, default=absent, throw_on_missing=False) is not absent
            and not OmegaConf.is_missing(conf, k)}


def _preset_sets(preset_cfg: DictConfig, keys: set[str]) -> set[str]:
    """The keys a preset gives a value (null included): a file's ``???`` for them belonged to the file's own
    preset, so switching preset on the command line (``model.preset=tiny``) replaces them by the new preset's."""
    return _given(preset_cfg, keys)


def save_config(cfg: DictConfig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(OmegaConf.to_yaml(cfg, resolve=True))


def split_cli(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate ``key=value`` overrides from other arguments, so argparse only sees flags."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    rest = [a for a in argv if a not in overrides]
    return rest, overrides
