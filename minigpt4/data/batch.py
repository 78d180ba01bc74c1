"""The model's input contract, written once: what a dataset yields per sample and what the collator hands the
model. The collator builds :class:`Batch`, ``EmotionLLaMA`` reads it, and the tests check both against it."""
from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import numpy as np
import torch


class TextInput(TypedDict):
    """MiniLM ids of context + utterance for the trainable text slot, right-padded with 0 and masked."""

    input_ids: torch.Tensor       # [b, t] long
    attention_mask: torch.Tensor  # [b, t] long
    token_type_ids: torch.Tensor  # [b, t] long


class Example(TypedDict):
    """One sample as ``EmotionDataset`` yields it: prompt tokens with slot ids, answer tokens, arrays."""

    id: str
    gold: list[str]                  # every gold label, primary first
    ids: list[int]                   # prompt token ids (slot positions hold placeholder ids)
    slots: list[int]                 # per prompt token: the modality slot id, 0 for text
    answer: list[int]                # answer token ids, EOS included
    features: dict[str, np.ndarray]  # modality -> [tokens, dim] float32
    image: np.ndarray | None         # [3, H, W] normalised frame, None without the image slot
    weight: float | None             # class weight of the answer loss (``run.balance: loss``)
    target: np.ndarray               # [labels] 0/1 vector: the classifier head's target
    text_input: Any | None           # MiniLM encoding for the trainable text slot


class Batch(TypedDict):
    """Collated examples. ``train`` batches right-pad prompt + answer and carry ``labels`` (-100 outside the
    answer); ``prompt`` batches left-pad prompts alone for generation and scoring."""

    input_ids: torch.Tensor                  # [b, s] long
    slots: torch.Tensor                      # [b, s] long: which modality's embedding replaces each position
    attention_mask: torch.Tensor             # [b, s] long
    sample_ids: list[str]
    gold: list[list[str]]
    features: dict[str, torch.Tensor]        # modality -> [b, tokens, dim] float32
    labels: NotRequired[torch.Tensor]        # [b, s] long, train batches only
    targets: NotRequired[torch.Tensor]       # [b, labels] float32 label vectors
    text_input: NotRequired[TextInput]
    image: NotRequired[torch.Tensor]         # [b, 3, H, W] float32
    weight: NotRequired[torch.Tensor]        # [b] float32 answer-loss weights
