"""A run's config as every entry point loads it: the file read by :mod:`minigpt4.config`, with feature widths
taken from the feature store the data names (so configs need not repeat what extraction recorded)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from minigpt4 import modalities as registry
from minigpt4.config import Config, ConfigError, read_config
from minigpt4.data.corpora import recorded_dims


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                allow_missing: bool = False) -> DictConfig:
    """:func:`minigpt4.config.read_config`, then :func:`resolve_feature_dims` (see both)."""
    cfg = read_config(path, overrides, allow_missing)
    resolve_feature_dims(cfg, str(path) if path else "config")
    return cfg


def resolve_feature_dims(cfg: Config, source: str = "config") -> None:
    """Fill every ``model.features.<m>.dim`` left unset: the feature store's manifest says how wide the
    features it holds are, the modality registry gives the rest. A set width that disagrees with the
    manifest is an error (the model would not fit the features)."""
    recorded = recorded_dims(cfg.data)
    for name, feature in cfg.model.features.items():
        have = recorded.get(name)
        if feature.dim is None:
            feature.dim = have if have is not None else registry.get(name).dim
        elif have is not None and have != feature.dim:
            raise ConfigError(f"{source}: model.features.{name}.dim={feature.dim}, but the feature store "
                              f"{recorded['__store__']} holds {name} features of width {have} (leave the width "
                              "unset to take the store's)")
