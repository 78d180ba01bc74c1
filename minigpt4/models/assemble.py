"""The model's parts from ``model`` config: tokenizer, backbone (+ LoRA) and their assembly. No network, ever."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from minigpt4.config import ConfigError, LLMConfig, LoraSettings, ModelConfig
from minigpt4.models.classifier import ClassifierHead
from minigpt4.models.model import EmotionLLaMA
from minigpt4.models.packaged_llm import packaged_llm_folder
from minigpt4.models.text_encoder import TextEncoder
from minigpt4.models.tiny_tokenizer import ASSET_DIR
from minigpt4.models.vision import FrameEncoder

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _local_dir(cfg: LLMConfig, key: str, what: str) -> Path:
    if OmegaConf.is_missing(cfg, key):
        raise ConfigError(f"model.llm.{key} is required by model preset {what!r}: set it to a local Hugging Face "
                          f"model folder (nothing is downloaded)")
    path = Path(cfg[key])
    if not path.is_dir():
        raise FileNotFoundError(f"model.llm.{key}={path} is not a folder: it must name a local Hugging Face model "
                                f"folder (config.json, weights, tokenizer files)")
    return path


def llm_folder(model_cfg: ModelConfig) -> Path | None:
    """The backbone's Hugging Face folder: ``llm.path``, else the cached copy of ``llm.package``'s GGUF;
    None for the tiny random backbone."""
    llm = model_cfg.llm
    if OmegaConf.is_missing(llm, "path") or llm.path is not None:
        return _local_dir(llm, "path", model_cfg.preset)
    if llm.package:
        if not llm.gguf_file:
            raise ConfigError(f"model.llm.package={llm.package} needs model.llm.gguf_file (the file it ships)")
        return packaged_llm_folder(llm.package, llm.gguf_file)
    return None


def build_tokenizer(model_cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The packaged tiny tokenizer, or the backbone's own; padding falls back to EOS (always masked)."""
    llm = model_cfg.llm
    if llm.tokenizer_path:
        path = Path(llm.tokenizer_path)
        if not path.is_dir():
            raise FileNotFoundError(f"model.llm.tokenizer_path={path} is not a folder")
    else:
        path = llm_folder(model_cfg) or ASSET_DIR
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None:
        raise ConfigError(f"tokenizer at {path} has no EOS token: generation could never stop")
    return tok


def build_llm(model_cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A real ``LlamaForCausalLM`` from a small config (tiny), or any local or packaged HF causal LM."""
    llm_cfg = model_cfg.llm
    dtype = DTYPES[llm_cfg.dtype]
    folder = llm_folder(model_cfg)
    if folder is None:
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=llm_cfg.hidden_size, intermediate_size=llm_cfg.intermediate_size,
            num_hidden_layers=llm_cfg.num_layers, num_attention_heads=llm_cfg.num_heads,
            num_key_value_heads=llm_cfg.num_kv_heads, max_position_embeddings=llm_cfg.max_position_embeddings,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
            initializer_range=llm_cfg.initializer_range)
        model = LlamaForCausalLM(config).to(dtype)
    else:
        start = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        if llm_cfg.package:
            print(f"loaded {llm_cfg.gguf_file} (the dequantised copy) in {time.perf_counter() - start:.1f} s")
    model.requires_grad_(False)
    if llm_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return wrap_lora(model, model_cfg.lora)


def wrap_lora(model: PreTrainedModel, lora: LoraSettings) -> PreTrainedModel:
    """The backbone with ``model.lora``'s adapters (unchanged when LoRA is disabled)."""
    if not lora.enabled:
        return model
    depth = model.config.num_hidden_layers
    if any(not 0 <= i < depth for i in lora.layers):
        raise ConfigError(f"model.lora.layers={list(lora.layers)}: the backbone has layers 0..{depth - 1}")
    return get_peft_model(model, LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
        layers_to_transform=list(lora.layers) or None, task_type="CAUSAL_LM"))


def assemble(model_cfg: ModelConfig, llm: PreTrainedModel | None, tokenizer: PreTrainedTokenizerBase | None,
             vision: FrameEncoder | None, head: ClassifierHead | None = None) -> EmotionLLaMA:
    """EmotionLLaMA around a built backbone (or classifier head) and frame encoder, with the projectors
    ``model.features`` names and, when ``model.text_encoder.enabled``, the trainable text slot.

    Every configured projector is built whatever data.modalities says, so one checkpoint serves every
    modality ablation; a dropped modality simply never reaches its projector.
    """
    feats = dict(model_cfg.features.items())
    text_encoder = None
    if model_cfg.text_encoder.enabled:
        if "text" not in feats:
            raise ConfigError("model.text_encoder.enabled needs model.features.text (its tokens and projector)")
        text_encoder = TextEncoder(model_cfg.text_encoder, feats["text"].tokens)
        if feats["text"].dim != text_encoder.dim:
            raise ConfigError(f"model.features.text.dim={feats['text'].dim}, but model.text_encoder.name="
                              f"{model_cfg.text_encoder.name} gives {text_encoder.dim}-wide states: set "
                              f"model.features.text.dim={text_encoder.dim}")
    return EmotionLLaMA(
        llm, tokenizer, vision,
        feature_dims={k: m.dim for k, m in feats.items()},
        feature_tokens={k: m.tokens for k, m in feats.items()},
        projector_kinds={k: m.projector for k, m in feats.items()},
        projector_hidden=model_cfg.projector_hidden, text_encoder=text_encoder, head=head,
        width=model_cfg.classifier.width)
