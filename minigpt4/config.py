"""Typed configuration: OmegaConf structured dataclasses, named presets, YAML files and ``key=value`` overrides.

Load order (later wins): schema defaults -> model preset (``model.preset``) -> the YAML file -> CLI overrides.
An unknown key or a value of the wrong type fails here, before anything is built, naming the key and the file.
"""
from __future__ import annotations

import ast
import functools
import importlib.resources
import inspect
import os
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import modalities as registry


@dataclass
class ModalityConfig:
    dim: Optional[int] = None
    """Feature width. None (the default): the width recorded in the feature store's manifest
    (``datasets/extract_features.py``), else the modality registry's (FaceMAE / VideoMAE / HuBERT folders: 1024;
    MiniLM text: 384). A width set here must match the manifest."""
    tokens: int = 1
    """LLM tokens this modality occupies: 1 for utterance-level features, T for sequence-level ones
    (longer sequences are average-pooled to T, shorter ones are an error)."""
    projector: str = "linear"
    """``linear`` (upstream) or ``mlp`` (Linear-GELU-Linear, LLaVA-1.5 style)."""


def _default_features() -> dict[str, ModalityConfig]:
    return {name: ModalityConfig() for name in registry.FEATURE_MODALITIES}


@dataclass
class VisionConfig:
    kind: str = "tiny"
    """``tiny`` (a small random timm ViT built from this config), ``eva_upstream`` (EVA ViT-g exactly as
    upstream builds it: ``depth`` blocks, no final norm, then a frozen ``ln_vision``; reads LAVIS
    ``eva_vit_g.pth`` from ``checkpoint``), ``timm`` (a named timm model whose weights are read from
    ``checkpoint``) or ``none`` (no image modality)."""
    timm_name: str = "vit_tiny_patch16_224"
    checkpoint: Optional[str] = None
    """Local weight file for ``kind: timm`` / ``eva_upstream`` (safetensors or torch file); never downloaded."""
    image_size: int = 32
    """Square input size; the patch grid must be divisible by ``merge`` (448 and 224 work for EVA)."""
    patch_size: int = 8
    width: int = 64
    depth: int = 2
    heads: int = 2
    mlp_ratio: float = 4.0
    """MLP width / model width (``tiny`` and ``eva_upstream``; EVA ViT-g: 4.3637, giving 6144)."""
    merge: int = 4
    """Adjacent patch tokens concatenated into one LLM token (upstream: 4, giving 256 tokens at 448 px)."""
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class LLMConfig:
    path: Optional[str] = None
    """Local Hugging Face model folder (LLaMA-2/3, Qwen2.5, Mistral, ...). None builds the tiny model."""
    tokenizer_path: Optional[str] = None
    """Tokenizer folder; defaults to ``path``, or to the packaged tiny tokenizer when ``path`` is None."""
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    """Init std of the tiny backbone. The tiny preset uses 0.5: a frozen random LM head at 0.02 cannot give
    any token more than about 2 nats of margin, so nothing would be learnable (trained heads have no such
    limit)."""
    dtype: str = "float32"
    """Weight dtype of the frozen backbone: float32, bfloat16 or float16."""
    prompt_template: str = "[INST] {} [/INST]"
    """How the instruction is wrapped (upstream LLaMA-2-chat); ignored when ``use_chat_template``."""
    use_chat_template: bool = False
    """Wrap with the tokenizer's own chat template (LLaMA-3, Qwen2.5, Mistral)."""
    gradient_checkpointing: bool = False


@dataclass
class LoraConfig:
    enabled: bool = True
    r: int = 64
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class TextEncoderConfig:
    enabled: bool = False
    """Run MiniLM (all-MiniLM-L6-v2, packaged) on the tokenised transcript inside ``forward`` and tune it.
    False keeps the fast default: cached frozen sentence embeddings of the utterance alone."""
    tune: str = "lora"
    """``lora`` (peft adapters on ``lora_targets``), ``top_layers`` (unfreeze the last ``top_layers`` layers)
    or ``none`` (frozen, still run in forward: context reaches it)."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    top_layers: int = 2
    lr: Optional[float] = None
    """Learning rate of the encoder's trainable weights (LoRA / top layers); None uses ``run.lr``."""
    max_length: int = 128
    """Encoder tokens per sample: earlier turns are dropped oldest first to fit; the utterance always stays."""


@dataclass
class ClassifierConfig:
    width: int = 256
    """Width the modality projectors map to (there is no LLM to set it)."""
    hidden: int = 256
    """Hidden width of the MLP head; 0 gives a linear head."""
    dropout: float = 0.1


@dataclass
class ModelConfig:
    preset: str = "tiny"
    """Named preset merged first: ``tiny`` (runs anywhere), or with local weights ``llama2_7b`` (upstream),
    ``llama3_8b_instruct`` or ``qwen2_5_7b_instruct`` (chat template on)."""
    seed: int = 0
    """Seed of the random initialisation (tiny backbone, tiny vision encoder, projectors)."""
    llm: LLMConfig = field(default_factory=LLMConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    features: dict[str, ModalityConfig] = field(default_factory=_default_features)
    projector_hidden: int = 0
    """Hidden width of ``mlp`` projectors; 0 means the LLM width."""
    checkpoint: Optional[str] = None
    """Trainable weights to start from: a checkpoint folder of this project."""
    head: str = "lm"
    """``lm`` (the LLM answers: generate / score) or ``classifier`` (pooled modality tokens -> MLP; softmax for
    single-label, sigmoid + per-class thresholds tuned on validation for multi-label; no LLM is built)."""
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    upstream_checkpoint: Optional[str] = None
    """An upstream Emotion-LLaMA ``.pth`` converted on load through the explicit key map."""
    max_prompt_tokens: int = 384
    """Prompt text longer than this is cut from the transcript/context side, never from the instruction."""
    max_answer_tokens: int = 64
    """Answer length in tokens, EOS included: longer training answers are cut to it, generation stops at it."""
    standardize_features: bool = True
    """A fresh run (no ``checkpoint``) standardises every feature modality with the training split's
    per-dimension mean and std, saved in its checkpoints (``FeatureNorm``, projector_init.py); false: raw."""


@dataclass
class DataConfig:
    corpus: str = "demo"
    """merr | mer2023 | iemocap | meld | ecf | demo."""
    root: Optional[str] = None
    """Corpus root folder; None for the demo corpus means its cache folder."""
    labels: str = "default"
    """Label setup: IEMOCAP ``4class`` / ``6class`` / ``all``; ``default`` is the corpus's usual one."""
    label_mode: str = "single"
    """``single`` (primary label) or ``multi`` (all labels, fixed order, joined by ', ')."""
    min_votes: int = 2
    """IEMOCAP multi-label: a label enters the set with at least this many evaluator votes."""
    keep_undecided: bool = False
    """IEMOCAP: keep ``xxx`` (no majority) utterances."""
    tasks: list[str] = field(default_factory=lambda: ["emotion"])
    """Tasks sampled per example: ``emotion`` and/or ``reason``."""
    modalities: list[str] = field(default_factory=lambda: list(registry.MODALITIES))
    transcript: bool = True
    """Put the spoken line into the prompt ("The person in video says: ...")."""
    context_turns: int = 0
    """Earlier utterances of the dialogue quoted in the prompt (0: none)."""
    ablation: str = "drop"
    """How a modality left out of ``modalities`` is removed: ``drop`` (no placeholder span) or ``zero``."""
    instruction: Optional[int] = None
    """Fix one instruction of the pool by index; None samples from the pool (training) or takes the first
    (evaluation)."""
    prompt_pool: Optional[list[str]] = None
    """Replace the corpus's instruction pool for the ``emotion`` task."""
    frame: str = "first"
    """Which video frame feeds the image modality: ``first``, ``middle`` or an integer index as a string."""
    feature_dirs: dict[str, str] = field(default_factory=dict)
    """Modality -> folder of per-sample ``<id>.npy`` (relative to ``root``); empty uses corpus defaults."""
    feature_store: Optional[str] = None
    """Packed feature store folder (``datasets/pack_features.py``); preferred over ``feature_dirs``."""
    on_missing: str = "error"
    """A missing feature or media file: ``error`` or ``skip`` (every skipped id is reported)."""
    val_fraction: float = 0.1
    """Share of training groups carved off as the inner validation split (checkpoint selection)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Corpus-specific reader options (folder names, transcript column, ...)."""


@dataclass
class RunConfig:
    output_dir: str = "runs/unnamed"
    """Run folder: config, logs, metrics, checkpoints and ``final/`` (evaluation: the reports)."""
    seed: int = 42
    """Seed of data order, dropout and sampling (the model's initialisation has ``model.seed``)."""
    max_steps: int = 0
    """Stop after this many optimizer steps; 0 means run ``epochs`` epochs."""
    epochs: int = 1
    batch_size: int = 8
    """Per-process micro-batch size."""
    grad_accum: int = 1
    lr: float = 1e-4
    """Peak learning rate (after ``warmup_steps``), decayed by cosine to ``min_lr_ratio * lr``."""
    min_lr_ratio: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.05
    max_grad_norm: float = 1.0
    precision: str = "fp32"
    """Autocast precision: fp32, bf16 or fp16."""
    balance: str = "none"
    """Class imbalance: ``none``, ``sampler`` (weighted sampler) or ``loss`` (class weights on the answer)."""
    eval_every: int = 0
    """Validate every N optimizer steps (0: only at the end)."""
    best_metric: str = "accuracy"
    save_every: int = 0
    keep_last: int = 2
    resume: bool = False
    """Continue from the newest ``checkpoints/step_<N>`` of ``output_dir`` (weights, optimizer, data position)."""
    deepspeed: Optional[str] = None
    """DeepSpeed JSON config; set it to train under ZeRO instead of DDP."""
    num_workers: int = 0
    log_every: int = 10
    fold: Optional[int] = None
    """Held-out fold index for cross-validation (set by cross_train.py); None trains on the train split."""
    num_folds: int = 5
    """Folds of cross-validation (cross_train.py); corpora with more groups put several in one fold."""


@dataclass
class EvalConfig:
    mode: str = "generate"
    """``generate`` (greedy text, then parsing) or ``score`` (rank the label answers by log-likelihood)."""
    split: str = "test"
    """Which samples to evaluate: ``test``, ``val`` or ``fold`` (the held-out fold of ``run.fold``)."""
    batch_size: int = 16
    """Samples per forward pass (per process)."""
    max_new_tokens: int = 16
    score_norm: str = "none"
    """Score mode: how candidate log-likelihoods compare: ``none`` (summed: the model's own answer probability),
    ``mean`` (per answer token, for tokenizers that split labels into different numbers of pieces) or
    ``calibrated`` (minus the candidate's log-likelihood after an empty prompt)."""
    max_labels: int = 2
    """Multi-label score mode: candidates are the formatted label sets of 1..max_labels labels."""
    threshold: Optional[float] = None
    """Multi-label score mode: predict every label whose marginal probability reaches this. None: the threshold
    chosen on the validation split and saved with the checkpoint (``decision.json``)."""
    top_k: int = 0
    """Multi-label score mode: predict the top k labels instead (0: threshold)."""
    ablations: list[list[str]] = field(default_factory=list)
    """Modality subsets evaluated one after another into ablation.md / ablation.json."""
    prompts: int = 0
    """Evaluate this many instructions of the pool (prompt sensitivity); 0 uses one."""
    max_samples: int = 0
    """Evaluate only the first N samples of the split (0: all): quick checks, tests and benchmarks."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ConfigError(ValueError):
    """A configuration problem, with the file and key it came from."""


PRESETS_PACKAGE = "minigpt4.presets"
ENV_OVERRIDES = "EMOTION_LLAMA_OVERRIDES"
"""Environment variable of space-separated ``key=value`` overrides applied after the command line's (quick
runs of any documented command, e.g. ``run.max_steps=4``; the README test uses it). Entry points print it."""


def preset_path(kind: str, name: str) -> Path:
    path = Path(str(importlib.resources.files(PRESETS_PACKAGE))) / kind / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown {kind} preset {name!r}; available: {', '.join(available)}")
    return path


def _merge(base: DictConfig, other: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        raise ConfigError(f"{source}: bad config key {key!r}: {err.msg if hasattr(err, 'msg') else err}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                allow_missing: bool = False) -> DictConfig:
    """Schema <- model preset <- YAML file <- ``key=value`` overrides (then ``$EMOTION_LLAMA_OVERRIDES``'s),
    validated against the schema.

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
    resolve_feature_dims(cfg, source)
    validate(cfg, source)
    return cfg


def resolve_feature_dims(cfg: DictConfig, source: str = "config") -> None:
    """Fill every ``model.features.<m>.dim`` left unset: the feature store's manifest says how wide the
    features it holds are, the modality registry gives the rest. A set width that disagrees with the
    manifest is an error (the model would not fit the features)."""
    from .corpora import recorded_dims

    recorded = recorded_dims(cfg.data)
    for name, feature in cfg.model.features.items():
        have = recorded.get(name)
        if feature.dim is None:
            feature.dim = have if have is not None else registry.get(name).dim
        elif have is not None and have != feature.dim:
            raise ConfigError(f"{source}: model.features.{name}.dim={feature.dim}, but the feature store "
                              f"{recorded['__store__']} holds {name} features of width {have} (leave the width "
                              "unset to take the store's)")


def _given(conf: DictConfig, keys: set[str]) -> set[str]:
    """The ``keys`` that ``conf`` gives a value, null included (``model.checkpoint=null``: no checkpoint)."""
    absent = object()
    return {k for k in keys if OmegaConf.select(conf, k, default=absent, throw_on_missing=False) is not absent
            and not OmegaConf.is_missing(conf, k)}


def _preset_sets(preset_cfg: DictConfig, keys: set[str]) -> set[str]:
    """The keys a preset gives a value (null included): a file's ``???`` for them belonged to the file's own
    preset, so switching preset on the command line (``model.preset=tiny``) replaces them by the new preset's."""
    return _given(preset_cfg, keys)


def require_complete(cfg: DictConfig, source: str = "config") -> None:
    """Fail before anything is built while a required value (``???``) is unset, naming every such key."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        hint = ("; or model.preset=tiny to run the config on the tiny random model, which needs no model.llm.path "
                "or model.vision.checkpoint") if {"model.llm.path", "model.vision.checkpoint"} & set(missing) else ""
        raise ConfigError(f"{source}: required keys are not set: {', '.join(missing)} (set them in the file or as "
                          f"key=value overrides; they name local files or folders, nothing is downloaded{hint})")


_CHOICES = {
    "data.label_mode": ("single", "multi"),
    "data.ablation": ("drop", "zero"),
    "data.on_missing": ("error", "skip"),
    "run.precision": ("fp32", "bf16", "fp16"),
    "run.balance": ("none", "sampler", "loss"),
    "eval.mode": ("generate", "score"),
    "eval.score_norm": ("none", "mean", "calibrated"),
    "eval.split": ("test", "val", "fold"),
    "model.vision.kind": ("tiny", "eva_upstream", "timm", "none"),
    "model.llm.dtype": ("float32", "bfloat16", "float16"),
    "model.head": ("lm", "classifier"),
    "model.text_encoder.tune": ("lora", "top_layers", "none"),
    "data.corpus": ("merr", "mer2023", "iemocap", "meld", "ecf", "demo"),
}


_AT_LEAST = {
    **dict.fromkeys(("run.max_steps", "run.warmup_steps", "run.weight_decay", "run.eval_every", "run.save_every",
                     "run.keep_last", "run.num_workers", "eval.max_samples", "eval.prompts", "eval.top_k",
                     "model.projector_hidden", "data.context_turns", "data.min_votes", "model.seed", "run.seed"), 0),
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


def check_ranges(cfg: DictConfig, source: str) -> None:
    """Numeric keys out of range fail at load, naming the key, not later as an unrelated error."""
    def bad(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{source}: {key}={OmegaConf.select(cfg, key)!r}: expected {expected}")

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
            if modality[field_name] < 1:
                raise bad(f"model.features.{name}.{field_name}", "at least 1")


def validate(cfg: DictConfig, source: str) -> None:
    """Checks the schema cannot express: enumerations, numeric ranges, modality names, task names."""
    for key, allowed in _CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{source}: {key}={value!r} is not one of {', '.join(allowed)}")
    check_ranges(cfg, source)
    known = registry.MODALITIES
    for name in cfg.data.modalities:
        if name not in known:
            raise ConfigError(f"{source}: data.modalities names unknown modality {name!r}; expected {', '.join(known)}")
    for subset in cfg.eval.ablations:
        for name in subset:
            if name not in known:
                raise ConfigError(f"{source}: eval.ablations names unknown modality {name!r}")
    for task in cfg.data.tasks:
        if task not in ("emotion", "reason"):
            raise ConfigError(f"{source}: data.tasks has unknown task {task!r}; expected emotion or reason")
    for name in cfg.model.features:
        if name not in registry.FEATURE_MODALITIES:
            raise ConfigError(f"{source}: model.features has unknown feature modality {name!r}")
    for name in cfg.data.modalities:
        frame = registry.get(name).source == "frame"
        if frame and cfg.model.vision.kind == "none":
            raise ConfigError(f"{source}: data.modalities uses {name} but model.vision.kind is none")
        if not frame and name not in cfg.model.features:
            raise ConfigError(f"{source}: data.modalities uses {name} but model.features.{name} is not configured")


def field_doc(key: str) -> str:
    """First sentence of the schema docstring of a dotted key (``run.max_steps``), for --help texts."""
    *parents, name = key.split(".")
    cls: type = Config
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    doc = _attribute_docs(cls).get(name, "").replace("``", "")
    return doc.split(". ")[0].rstrip(".") + "." if doc else ""


@functools.cache
def _attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal written under it in the dataclass body (one source of key docs)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    return {node.target.id: " ".join(doc.value.value.split()) for node, doc in zip(body, body[1:])
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)}


def save_config(cfg: DictConfig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(OmegaConf.to_yaml(cfg, resolve=True))


def split_cli(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate ``key=value`` overrides from other arguments, so argparse only sees flags."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    rest = [a for a in argv if a not in overrides]
    return rest, overrides
