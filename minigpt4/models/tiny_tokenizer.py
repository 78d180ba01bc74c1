"""The tiny preset's tokenizer: a byte-level BPE trained locally, so the embedded default needs no hub.

The training text is English words from the vocabulary that ships with the packaged all-MiniLM-L6-v2 (lower case and capitalised) plus
the prompt pools and every label word, repeated so each label is a single token. Training is deterministic;
the result is committed under ``minigpt4/assets/tiny_tokenizer`` and a test checks it can be rebuilt.
Rebuild with ``python -m minigpt4.models.tiny_tokenizer``.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from minigpt4.data.labels import LABEL_SETS
from minigpt4.data.prompts import all_pool_text
from minigpt4.features.minilm import model_dir

VOCAB_SIZE = 4096
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
ASSET_DIR = Path(str(importlib.resources.files("minigpt4"))) / "assets" / "tiny_tokenizer"


def _training_text() -> list[str]:

    vocab = model_dir() / "vocab.txt"
    words = [w for w in vocab.read_text(encoding="utf-8").split() if w.isalpha() and w.isascii()]
    labels = sorted({w for s in LABEL_SETS.values() for w in (*s.labels, *s.aliases)})
    prompt_text = all_pool_text()
    # Repeats make label words and prompt words single tokens; one pass over the English word list gives
    # byte-pair coverage of ordinary transcripts.
    return [" ".join(words), " ".join(w.capitalize() for w in words)] + [" ".join(labels)] * 200 + [prompt_text] * 50


def train(out_dir: Path = ASSET_DIR) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return fast


if __name__ == "__main__":
    print(f"tiny tokenizer ({len(train())} tokens) written to {ASSET_DIR}")
