"""A model as a standard Hugging Face folder, plus the parts only this project reads (``export_hf.py``).

Why: a checkpoint is trainable weights (LoRA adapters, projectors) plus this project's config, usable only
through this code. The export merges the LoRA adapters into the backbone (peft ``merge_and_unload``) and
writes it with ``save_pretrained`` (safetensors shards, ``config.json``, the tokenizer with a chat template),
so ``AutoModelForCausalLM.from_pretrained(OUT)`` works for text alone. Beside it: every other weight of the
model (projectors, feature statistics, frame encoder, text encoder with its adapters merged), the run config
and a JSON saying which prompt slot each modality fills, so ``model.checkpoint=OUT`` rebuilds the full model
from ``OUT`` alone (:func:`loading_config`, :func:`load_parts`).

Memory: the adapters are merged into the loaded backbone weights in place (peft adds ``B @ A * scale`` to
each target weight and drops the adapter), and ``save_pretrained`` serialises one shard (``max_shard_size``)
at a time from those same tensors: one copy of the weights plus one shard, never two copies.

Layout of ``OUT``::

    config.json  generation_config.json  model*.safetensors (+ index)   the merged backbone
    tokenizer.json  tokenizer_config.json  chat_template.jinja           its tokenizer
    emotion_llama.json          format, slots, prompt format, labels, what was merged
    emotion_llama.safetensors   every tensor outside the backbone, by its EmotionLLaMA name
    config.yaml                 the run config the checkpoint was trained with (as in a checkpoint folder)
    decision.json               the multi-label threshold chosen on validation (multi-label runs only)
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from peft import PeftModel
from safetensors.torch import load_file, save_file

from minigpt4.config import ModelConfig, save_config
from minigpt4.modalities import BY_NAME, SLOT_IDS
from minigpt4.models.checkpoint import CONFIG
from minigpt4.models.model import EmotionLLaMA

MANIFEST = "emotion_llama.json"
PARTS = "emotion_llama.safetensors"
DECISION = "decision.json"
FORMAT = "emotion-llama-hf-export/1"


def is_export(path: str | Path) -> bool:
    """True for a folder written by :func:`write_export` (``model.checkpoint=OUT`` loads it)."""
    return (Path(path) / MANIFEST).is_file()


def chat_template(prompt_template: str) -> str:
    """A Jinja chat template wrapping a user turn as ``model.llm.prompt_template`` does after BOS, for
    tokenizers without one (the tiny one, LLaMA-2's): ``apply_chat_template`` then gives the training prompt."""
    before, after = prompt_template.split("{}", 1)
    return ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
            f"{{{{ {json.dumps(before)} + message['content'] + {json.dumps(after)} }}}}"
            "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}")


def merge_adapters(model: EmotionLLaMA) -> dict[str, Any] | None:
    """Merge the backbone's and the text encoder's LoRA adapters into their weights, in place; what was
    merged into the backbone (None when it has no adapters)."""
    merged = None
    if isinstance(model.llm, PeftModel):
        lora = model.llm.peft_config["default"]
        merged = {"r": lora.r, "alpha": lora.lora_alpha, "target_modules": sorted(lora.target_modules)}
        model.llm = model.llm.merge_and_unload()
    encoder = model.text_encoder
    if encoder is not None and isinstance(encoder.bert, PeftModel):
        encoder.bert = encoder.bert.merge_and_unload()
    return merged


def parts_state(model: EmotionLLaMA) -> dict[str, torch.Tensor]:
    """Every tensor of the model outside the backbone, by its name in ``EmotionLLaMA``."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("llm.")}


def slots(model: EmotionLLaMA, model_cfg: ModelConfig) -> list[dict[str, Any]]:
    """Per slot of the model, in prompt-slot order: its id in the ``slots`` tensor, placeholder, LLM positions,
    input width and the parts-file names of its projector and feature statistics."""
    out = []
    for name in sorted(model.slot_tokens, key=SLOT_IDS.__getitem__):
        modality = BY_NAME[name]
        first = next(m for m in model.projectors[name].modules() if isinstance(m, torch.nn.Linear))
        feature = model_cfg.features.get(name)
        out.append({"modality": name, "slot_id": SLOT_IDS[name], "placeholder": modality.placeholder,
                    "prompt_block": modality.block, "tokens": model.slot_tokens[name], "source": modality.source,
                    "input_dim": first.in_features, "projector": f"projectors.{name}",
                    "projector_kind": feature.projector if feature is not None else "linear",
                    "feature_norm": f"feature_norm.{name}" if name in model.feature_norm else None})
    return out


def manifest(model: EmotionLLaMA, model_cfg: ModelConfig, merged: dict[str, Any] | None, labels: Sequence[str],
             source: str) -> dict[str, Any]:
    """What ``emotion_llama.json`` says: enough to feed the merged backbone without reading this code."""
    llm = model_cfg.llm
    return {"format": FORMAT, "source_checkpoint": source, "labels": list(labels),
            "backbone": {"architecture": type(model.llm).__name__, "dtype": llm.dtype, "lora_merged": merged},
            "prompt": {"template": llm.prompt_template, "use_chat_template": llm.use_chat_template,
                       "bos": not llm.use_chat_template, "max_prompt_tokens": model_cfg.max_prompt_tokens,
                       "max_answer_tokens": model_cfg.max_answer_tokens,
                       "slot_positions": "each placeholder becomes `tokens` positions whose input embeddings are "
                                         "the slot's projected features"},
            "slots": slots(model, model_cfg), "parts": PARTS, "config": CONFIG}


def write_export(model: EmotionLLaMA, cfg: DictConfig, labels: Sequence[str], folder: Path,
                 max_shard_size: str = "5GB") -> None:
    """Merge ``model``'s adapters (in place: ``model`` is the export afterwards) and write every file of the
    export into ``folder``."""
    merged = merge_adapters(model)
    model.llm.save_pretrained(str(folder), max_shard_size=max_shard_size)
    if not model.tokenizer.chat_template:
        model.tokenizer.chat_template = chat_template(cfg.model.llm.prompt_template)
    model.tokenizer.save_pretrained(str(folder))
    save_file(parts_state(model), str(folder / PARTS))
    save_config(OmegaConf.merge(cfg, {"model": {"checkpoint": None}}), folder / CONFIG)
    decision = Path(cfg.model.checkpoint) / DECISION
    if decision.is_file():
        shutil.copy2(decision, folder / DECISION)
    text = json.dumps(manifest(model, cfg.model, merged, labels, str(cfg.model.checkpoint)), indent=2)
    (folder / MANIFEST).write_text(text + "\n")


def loading_config(model_cfg: ModelConfig, folder: str | Path) -> ModelConfig:
    """The model config that rebuilds an export: the backbone and tokenizer from ``folder``, no adapters
    (merged), frame and text encoders as structure only (their weights are in the parts file)."""
    return OmegaConf.merge(model_cfg, {"llm": {"path": str(folder), "tokenizer_path": None},
                                       "lora": {"enabled": False}, "text_encoder": {"tune": "none"},
                                       "vision": {"checkpoint": None}})


def load_parts(model: EmotionLLaMA, folder: str | Path) -> None:
    """Every tensor outside the backbone from the parts file; a missing or unexpected one is an error."""
    file = Path(folder) / PARTS
    state = load_file(str(file))
    expected = set(parts_state(model))
    missing, stray = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or stray:
        raise KeyError(f"{file}: weights do not match the model; missing: {missing or 'none'}; "
                       f"unexpected: {stray or 'none'}")
    model.copy_parameters(state, str(file))
