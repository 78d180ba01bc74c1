"""Tiny random Hugging Face backbones of three families, saved like real ones: weights, tokenizer, chat template.

Each folder is what a user would point ``model.llm.path`` at. The tokenizer is the packaged tiny BPE plus the
family's chat-template tokens; Qwen2's has no BOS token, as the real one.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from minigpt4.models.tiny_tokenizer import ASSET_DIR

FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
              "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
              "{{ m['content'] }}<|eot_id|>{% endfor %}"
              "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, ["<|im_start|>", "<|im_end|>"],
              "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    "mistral": (MistralConfig, MistralForCausalLM, [],
                "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"),
}


def save_backbone(family: str, folder: Path, seed: int = 0) -> Path:
    """Write a tiny random ``family`` model with its tokenizer and chat template into ``folder``."""
    config_cls, model_cls, specials, template = FAMILIES[family]
    tok = AutoTokenizer.from_pretrained(str(ASSET_DIR))
    if specials:
        tok.add_special_tokens({"additional_special_tokens": specials})
    if family == "qwen2":
        tok.bos_token = None
    tok.chat_template = template
    config = config_cls(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
        initializer_range=0.5)
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder
