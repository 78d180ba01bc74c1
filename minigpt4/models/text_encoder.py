"""The trainable ``text`` slot: a pretrained encoder (packaged MiniLM by default) run in ``forward`` on tokenised
transcripts (with dialogue context).

Tokenisation happens in the data pipeline (``minigpt4.data.dialogue``); here the batch's ids go through the encoder,
tuned with LoRA adapters (peft) or with its top layers unfrozen, and are mean-pooled into ``tokens`` slot tokens:
one for the whole input, or ``T`` consecutive segments of it. ``pool: utterance`` averages the utterance's own
tokens (token type 1) only, so the earlier turns inform the utterance's states without diluting the average.
"""
from __future__ import annotations

import inspect

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from minigpt4.config import TextEncoderConfig
from minigpt4.features.text_encoders import load_model


class TextEncoder(nn.Module):
    """The encoder over ``input_ids`` / ``attention_mask`` / ``token_type_ids`` -> ``[b, tokens, hidden]``.

    ``token_type_ids`` always mark the utterance for pooling; they reach the encoder only where it has segment
    embeddings (BERT-style MiniLM does, MPNet does not)."""

    def __init__(self, cfg: TextEncoderConfig, tokens: int) -> None:
        super().__init__()
        if tokens < 1:
            raise ValueError(f"model.features.text.tokens={tokens}: the text encoder needs at least one slot token")
        # No pooler: the slot is a mean over tokens, and an unused pooler would only cost time.
        bert = load_model(cfg.name, add_pooling_layer=False)
        bert.requires_grad_(False)
        self.dim = bert.config.hidden_size
        self.takes_types = "token_type_ids" in inspect.signature(type(bert).forward).parameters
        if cfg.tune == "lora":
            bert = get_peft_model(bert, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                   lora_dropout=cfg.lora_dropout,
                                                   target_modules=list(cfg.lora_targets)))
        elif cfg.tune == "top_layers":
            layers = bert.encoder.layer
            if not 1 <= cfg.top_layers <= len(layers):
                raise ValueError(f"model.text_encoder.top_layers={cfg.top_layers}: {cfg.name} has {len(layers)} "
                                 f"layers")
            for layer in layers[len(layers) - cfg.top_layers:]:
                layer.requires_grad_(True)
        self.bert = bert
        self.tokens = tokens
        self.utterance_only = cfg.pool == "utterance"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        types = {"token_type_ids": token_type_ids} if self.takes_types else {}
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, **types).last_hidden_state
        mask = utterance_mask(attention_mask, token_type_ids) if self.utterance_only else attention_mask
        return segment_mean(hidden, mask, self.tokens)


def utterance_mask(attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
    """The utterance's positions (token type 1) in rows with earlier turns; every real position in rows without
    (the dialogue tokenizer gives those type 0 throughout)."""
    said = attention_mask * token_type_ids
    has_context = said.sum(1, keepdim=True) > 0
    return torch.where(has_context, said, attention_mask)


def segment_mean(hidden: torch.Tensor, mask: torch.Tensor, tokens: int) -> torch.Tensor:
    """Mean of the unmasked positions in ``tokens`` equal consecutive segments per row: ``[b, tokens, d]``.

    Vectorised (no per-sample loop): position ``p`` of a row with ``n`` real tokens falls in segment
    ``p * tokens // n``. A row shorter than ``tokens`` leaves its trailing segments zero.
    """
    mask = mask.to(hidden.dtype)
    if tokens == 1:
        return ((hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)).unsqueeze(1)
    position = (mask.cumsum(1) - 1).clamp(min=0)
    length = mask.sum(1, keepdim=True).clamp(min=1)
    segment = torch.div(position * tokens, length, rounding_mode="floor").long().clamp(max=tokens - 1)
    weight = nn.functional.one_hot(segment, tokens).to(hidden.dtype) * mask.unsqueeze(-1)  # [b, s, tokens]
    total = torch.einsum("bst,bsd->btd", weight, hidden)
    return total / weight.sum(1).unsqueeze(-1).clamp(min=1)
