"""Checks of a loaded config that its types cannot express: required keys, numeric ranges, modality names."""
from __future__ import annotations

from omegaconf import OmegaConf

from minigpt4 import modalities as registry
from minigpt4.config.schema import Config, ConfigError


def require_complete(cfg: Config, source: str = "config") -> None:
    """Fail before anything is built while a required value (``???``) is unset, naming every such key."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        hint = ("; or model.preset=tiny to run the config on the tiny random model, which needs no model.llm.path "
                "or model.vision.checkpoint") if {"model.llm.path", "model.vision.checkpoint"} & set(missing) else ""
        raise ConfigError(f"{source}: required keys are not set: {', '.join(missing)} (set them in the file or as "
                          f"key=value overrides; they name local files or folders, nothing is downloaded{hint})")


_AT_LEAST = {
    **dict.fromkeys(("run.max_steps", "run.warmup_steps", "run.weight_decay", "run.eval_every", "run.save_every",
                     "run.keep_last", "run.num_workers", "run.average_last", "run.average_every", "eval.max_samples", "eval.prompts", "eval.top_k",
                     "model.projector_hidden", "data.context_turns", "data.future_turns", "data.few_shot", "data.min_votes", "model.seed",
                     "run.seed"), 0),
    **dict.fromkeys(("run.epochs", "run.batch_size", "run.grad_accum", "run.log_every", "eval.batch_size",
                     "eval.max_new_tokens", "eval.max_labels", "model.max_prompt_tokens", "model.lora.r",
                     "model.llm.hidden_size", "model.llm.num_layers", "model.llm.num_heads", "model.llm.num_kv_heads",
                     "model.llm.intermediate_size", "model.llm.max_position_embeddings", "model.vision.image_size",
                     "model.vision.patch_size", "model.vision.width", "model.vision.depth", "model.vision.heads",
                     "model.vision.merge"), 1),
    **dict.fromkeys(("model.max_answer_tokens", "run.num_folds"), 2),
}
"""Smallest allowed value of numeric keys (an answer needs a token and EOS; cross-validation two folds)."""
_POSITIVE = ("run.lr", "run.max_grad_norm", "model.llm.initializer_range", "model.vision.mlp_ratio")
_FRACTIONS = ("run.min_lr_ratio", "data.val_fraction", "model.lora.dropout", "eval.threshold")
"""Values in [0, 1] (``None`` allowed where the schema allows it)."""


def check_ranges(cfg: Config, source: str, cli_keys: frozenset[str] = frozenset()) -> None:
    """Numeric keys out of range fail at load, naming the key and where its value came from (the command line
    for ``cli_keys``, else ``source``), not later as an unrelated error."""
    def bad(key: str, expected: str) -> ConfigError:
        where = "command line" if key in cli_keys else source
        return ConfigError(f"{where}: {key}={OmegaConf.select(cfg, key)!r}: expected {expected}")

    for key, lowest in _AT_LEAST.items():
        if OmegaConf.select(cfg, key) < lowest:
            raise bad(key, f"at least {lowest}")
    for key in _POSITIVE:
        if not OmegaConf.select(cfg, key) > 0:
            raise bad(key, "a number above 0")
    for key in _FRACTIONS:
        value = OmegaConf.select(cfg, key)
        if value is not None and not 0 <= value <= 1:
            raise bad(key, "a fraction between 0 and 1")
    for name, modality in cfg.model.features.items():
        for field_name in ("dim", "tokens"):
            if modality[field_name] is not None and modality[field_name] < 1:
                raise bad(f"model.features.{name}.{field_name}", "at least 1")


def check_config(cfg: Config, source: str, cli_keys: frozenset[str] = frozenset()) -> None:
    """Checks the schema cannot express (its enums already hold every closed choice): numeric ranges and
    the modalities that sections name and must agree on. ``cli_keys``: keys set on the command line."""
    check_ranges(cfg, source, cli_keys)
    known = registry.MODALITIES
    for name in cfg.data.modalities:
        if name not in known:
            raise ConfigError(f"{source}: data.modalities names unknown modality {name!r}; expected {', '.join(known)}")
    for subset in cfg.eval.ablations:
        for name in subset:
            if name not in known:
                raise ConfigError(f"{source}: eval.ablations names unknown modality {name!r}")
    for name in cfg.model.features:
        if name not in registry.FEATURE_MODALITIES:
            raise ConfigError(f"{source}: model.features has unknown feature modality {name!r}")
    if cfg.run.group_by_length and not cfg.model.text_encoder.enabled:
        raise ConfigError(f"{source}: run.group_by_length groups text-encoder inputs by length: set "
                          f"model.text_encoder.enabled=true, or run.group_by_length=false")
    if cfg.data.future_turns and not cfg.model.text_encoder.enabled:
        raise ConfigError(f"{source}: data.future_turns={cfg.data.future_turns} is read by the trainable text slot "
                          f"only: set model.text_encoder.enabled=true (the prompt quotes earlier turns alone)")
    if cfg.data.future_turns and cfg.data.corpus not in ("meld", "iemocap"):
        raise ConfigError(f"{source}: data.future_turns={cfg.data.future_turns}: the {cfg.data.corpus} reader gives "
                          f"no later turns (meld and iemocap do)")
    for name in cfg.data.modalities:
        frame = registry.get(name).source == "frame"
        if frame and cfg.model.vision.kind == "none":
            raise ConfigError(f"{source}: data.modalities uses {name} but model.vision.kind is none")
        if not frame and name not in cfg.model.features:
            raise ConfigError(f"{source}: data.modalities uses {name} but model.features.{name} is not configured")
