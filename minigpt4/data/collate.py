"""Examples -> batch tensors. ``train`` right-pads prompt + answer with loss labels on the answer only;
``prompt`` left-pads prompts alone for generation and scoring."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from minigpt4.data.batch import Batch, Example, TextInput


class Collator:
    """Examples -> :class:`~minigpt4.data.batch.Batch` (``train``: prompt + answer with loss labels; ``prompt``:
    left-padded prompts for generation and scoring)."""

    def __init__(self, pad_id: int, mode: str = "train") -> None:
        if mode not in ("train", "prompt"):
            raise ValueError(f"collator mode must be train or prompt, got {mode!r}")
        self.pad_id = pad_id
        self.mode = mode

    def _pad_text(self, inputs: Sequence[Any]) -> TextInput:
        """Right-padded text-encoder ids (padded with 0, masked out), attention mask and token types."""
        length = max(len(x.input_ids) for x in inputs)
        ids = torch.zeros((len(inputs), length), dtype=torch.long)
        types = torch.zeros((len(inputs), length), dtype=torch.long)
        mask = torch.zeros((len(inputs), length), dtype=torch.long)
        for i, x in enumerate(inputs):
            ids[i, :len(x.input_ids)] = torch.as_tensor(x.input_ids)
            types[i, :len(x.input_ids)] = torch.as_tensor(x.token_type_ids)
            mask[i, :len(x.input_ids)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def __call__(self, examples: Sequence[Example]) -> Batch:
        train = self.mode == "train"
        seqs = [e["ids"] + e["answer"] if train else e["ids"] for e in examples]
        length = max(len(s) for s in seqs)
        b = len(examples)
        input_ids = torch.full((b, length), self.pad_id, dtype=torch.long)
        slots = torch.zeros((b, length), dtype=torch.long)
        attention = torch.zeros((b, length), dtype=torch.long)
        labels = torch.full((b, length), -100, dtype=torch.long)
        for i, (e, seq) in enumerate(zip(examples, seqs)):
            n, p = len(seq), len(e["ids"])
            start = 0 if train else length - n
            input_ids[i, start:start + n] = torch.as_tensor(seq)
            slots[i, start:start + p] = torch.as_tensor(e["slots"])
            attention[i, start:start + n] = 1
            if train:
                labels[i, p:n] = torch.as_tensor(e["answer"])
        batch: Batch = {
            "input_ids": input_ids, "slots": slots, "attention_mask": attention,
            "sample_ids": [e["id"] for e in examples], "gold": [e["gold"] for e in examples],
            "features": {k: torch.from_numpy(np.stack([e["features"][k] for e in examples]))
                         for k in examples[0]["features"]},
        }
        if train:
            batch["labels"] = labels
        if examples[0].get("target") is not None:  # label vectors: the classifier head's targets
            batch["targets"] = torch.from_numpy(np.stack([e["target"] for e in examples]))
        if examples[0].get("text_input") is not None:
            batch["text_input"] = self._pad_text([e["text_input"] for e in examples])
        if examples[0]["image"] is not None:
            batch["image"] = torch.from_numpy(np.stack([e["image"] for e in examples]))
        if examples[0]["weight"] is not None:
            batch["weight"] = torch.tensor([e["weight"] for e in examples], dtype=torch.float32)
        return batch
