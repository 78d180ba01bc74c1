"""Cached ``text`` features: MiniLM sentence embeddings of a corpus's transcripts, computed once.

Embeddings are cached as a packed feature store under ``<cache>/text-features/<hash>``, the hash covering model,
ids and texts, so an unchanged corpus is never embedded twice.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from minigpt4.data.samples import Sample
from minigpt4.features.minilm import DIM, MODEL_NAME, embed_texts
from minigpt4.features.store import (
    FeatureError,
    PackedFeatureStore,
    default_cache_dir,
    write_store,
)


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
