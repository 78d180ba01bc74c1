"""Load an upstream Emotion-LLaMA ``.pth`` checkpoint through an explicit key map, with a coverage check.

Upstream (MiniGPT-v2) saves ``{"model": state_dict, ...}`` holding the trainable parameters only:
``llama_proj`` (EVA patch tokens), ``cls_tk_llama_proj`` (EVA CLS), ``feats_llama_proj1/2/3`` (FaceMAE,
VideoMAE, HuBERT) and LoRA weights, named by old PEFT (``...lora_A.weight``) or new PEFT
(``...lora_A.default.weight``). Loading with ``strict=False`` upstream could silently drop the old names;
here every key must map and every mappable parameter must be found.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from .modalities import upstream_projectors
from .model import EmotionLLaMA

log = logging.getLogger(__name__)

PROJECTOR_MAP: dict[str, str] = upstream_projectors()
"""Upstream projector prefix -> our modality (from the modality registry)."""
_PROJ_RE = re.compile(r"^(" + "|".join(PROJECTOR_MAP) + r")\.(weight|bias)$")
_LORA_RE = re.compile(r"^llama_model\.base_model\.model\.(model\.layers\.\d+\..+\.lora_[AB])(?:\.default)?\.weight$")


def map_upstream_key(key: str) -> str | None:
    """Our parameter name for an upstream key, or None when the key has no counterpart."""
    if m := _PROJ_RE.match(key):
        return f"projectors.{PROJECTOR_MAP[m.group(1)]}.{m.group(2)}"
    if m := _LORA_RE.match(key):
        return f"llm.base_model.model.{m.group(1)}.default.weight"
    return None


def convert_upstream_state(state: dict[str, torch.Tensor], model: EmotionLLaMA,
                           source: str = "upstream checkpoint") -> dict[str, torch.Tensor]:
    """Rename upstream keys; raise listing unknown upstream keys and our parameters it should have held."""
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        ours = map_upstream_key(key)
        if ours is None:
            unknown.append(key)
        else:
            converted[ours] = value
    trainable = set(model.trainable_state_dict())
    mappable = {k for k in trainable if not k.startswith("projectors.") or
                k.split(".")[1] in PROJECTOR_MAP.values()}
    missing = sorted(mappable - set(converted))
    stray = sorted(set(converted) - trainable)
    if unknown or missing or stray:
        raise KeyError(f"{source}: cannot load into this model; upstream keys with no mapping: {unknown or 'none'}; "
                       f"parameters missing from the checkpoint: {missing or 'none'}; mapped keys the model does not "
                       f"have (check LoRA targets and layer count): {stray or 'none'}")
    kept = sorted(trainable - mappable)
    if kept:
        log.info("%s has no upstream counterpart for %s: kept at initialisation", source, ", ".join(kept))
    return converted


def load_upstream_checkpoint(model: EmotionLLaMA, path: str | Path) -> None:
    """Read the ``.pth`` (tensors only: ``weights_only=True``) and load it through the key map."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.upstream_checkpoint={path} does not exist")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a dict with key 'model' holding a state dict")
    model.copy_parameters(convert_upstream_state(state, model, str(path)), str(path))
