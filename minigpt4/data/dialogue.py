"""Encoder input for the trainable text slot: earlier turns and the utterance, tokenised for MiniLM.

Layout (a BERT sentence pair): ``[CLS] turn_1 [SEP] ... turn_k [SEP] speaker: utterance [SEP]``, token type 0
for the context, 1 for the utterance. When it does not fit in ``max_length`` whole turns are dropped, oldest
first; the utterance is always kept (cut at its end only when it alone exceeds the budget).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from minigpt4.features.minilm import load_tokenizer


@dataclass(frozen=True)
class EncoderInput:
    """MiniLM token ids of context + utterance for the trainable text slot."""
    input_ids: list[int]
    token_type_ids: list[int]
    turns: int
    """Earlier turns kept after truncation (the newest ones)."""


class DialogueTokenizer:
    """MiniLM's own tokenizer (packaged with its weights) plus the truncation rule above."""

    def __init__(self, max_length: int) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")

        if max_length < 4:
            raise ValueError(f"model.text_encoder.max_length={max_length}: at least 4 tokens are needed")
        self.tokenizer = load_tokenizer()
        self.max_length = max_length
        self.pad_id = self.tokenizer.pad_token_id

    def encode(self, utterance: str, speaker: str | None, context: Sequence[str]) -> EncoderInput:
        """Ids and token types for one sample; ``context`` holds earlier turns oldest first."""
        tok = self.tokenizer
        line = f"{speaker}: {utterance}" if speaker else utterance
        pieces = tok([line, *context], add_special_tokens=False)["input_ids"]
        cls, sep = tok.cls_token_id, tok.sep_token_id
        said, turns = pieces[0][:self.max_length - 2], pieces[1:]
        kept: list[int] = []
        count = 0
        for turn in reversed(turns):  # newest first: the oldest turns are the ones left out
            candidate = turn + ([sep] + kept if kept else [])
            if len(said) + len(candidate) + 3 > self.max_length:
                break
            kept, count = candidate, count + 1
        if not kept:
            return EncoderInput([cls, *said, sep], [0] * (len(said) + 2), 0)
        ids = [cls, *kept, sep, *said, sep]
        return EncoderInput(ids, [0] * (len(kept) + 2) + [1] * (len(said) + 1), count)
