"""Encoder input for the trainable text slot: earlier turns and the utterance, tokenised by the encoder's own
tokenizer (``model.text_encoder.name``).

Layout (a BERT sentence pair): ``[CLS] turn_1 [SEP] ... turn_k [SEP] speaker: utterance [SEP]`` (with the
encoder's own start and separator tokens, ``<s>`` and ``</s>`` for MPNet), token type 0
for the context, 1 for the utterance; later turns (``data.future_turns``) follow as ``later_1 [SEP] ...`` with
token type 0. When it does not fit in ``max_length`` whole turns are dropped: earlier turns are kept newest
first, then later turns nearest first in what is left; the utterance is always kept (cut at its end only when
it alone exceeds the budget).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from minigpt4.features.text_encoders import load_tokenizer


@dataclass(frozen=True)
class EncoderInput:
    """Encoder token ids of context + utterance for the trainable text slot."""
    input_ids: list[int]
    token_type_ids: list[int]
    turns: int
    """Earlier turns kept after truncation (the newest ones)."""


class DialogueTokenizer:
    """The encoder's own tokenizer (shipped with its weights) plus the truncation rule above."""

    def __init__(self, max_length: int, encoder: str = "minilm") -> None:
        if max_length < 4:
            raise ValueError(f"model.text_encoder.max_length={max_length}: at least 4 tokens are needed")
        self.tokenizer = load_tokenizer(encoder)
        self.max_length = max_length
        self.pad_id = self.tokenizer.pad_token_id

    def encode(self, utterance: str, speaker: str | None, context: Sequence[str],
               following: Sequence[str] = ()) -> EncoderInput:
        """Ids and token types for one sample; ``context`` holds earlier turns oldest first, ``following`` later
        turns nearest first."""
        tok = self.tokenizer
        line = f"{speaker}: {utterance}" if speaker else utterance
        pieces = tok([line, *context, *following], add_special_tokens=False)["input_ids"]
        cls, sep = tok.cls_token_id, tok.sep_token_id
        said = pieces[0][:self.max_length - 2]
        earlier, later = pieces[1:1 + len(context)], pieces[1 + len(context):]
        budget = self.max_length - len(said) - 2  # [CLS] and the utterance's [SEP]
        kept: list[int] = []
        count = 0
        for turn in reversed(earlier):  # newest first: the oldest turns are the ones left out
            if len(turn) + 1 + len(kept) > budget:
                break
            kept, count = turn + [sep] + kept, count + 1
        after: list[int] = []
        for turn in later:  # nearest first
            if len(kept) + len(after) + len(turn) + 1 > budget:
                break
            after += turn + [sep]
        own = 1 if kept or after else 0  # alone, the utterance keeps type 0 (a single sentence)
        ids = [cls, *kept, *said, sep, *after]
        return EncoderInput(ids, [0] * (len(kept) + 1) + [own] * (len(said) + 1) + [0] * len(after), count)
