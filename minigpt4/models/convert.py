"""Upstream Emotion-LLaMA ``.pth`` checkpoints: an explicit key map with a coverage check, and a converter.

Upstream (MiniGPT-v2) saves ``{"model": state_dict, "optimizer", "config", "scaler", "epoch"}`` where the state
dict holds every entry except frozen parameters: ``llama_proj`` (EVA patch tokens), ``cls_tk_llama_proj`` (EVA
CLS), ``feats_llama_proj1/2/3`` (FaceMAE, VideoMAE, HuBERT), LoRA weights named by old PEFT
(``...lora_A.weight``) or new PEFT (``...lora_A.default.weight``), and every buffer (under transformers 4.30
each LLaMA layer's ``rotary_emb.inv_freq``). Upstream loads with ``strict=False``, which could silently drop
the old names; here every key must map or be a known buffer, and every mappable parameter must be found.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from omegaconf import DictConfig
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

from minigpt4.config import save_config
from minigpt4.modalities import upstream_projectors
from minigpt4.models.assemble import DTYPES, assemble, wrap_lora
from minigpt4.models.checkpoint import CONFIG, WEIGHTS, publish, stage
from minigpt4.models.model import EmotionLLaMA
from minigpt4.models.vision import FrameEncoder, read_state_dict

log = logging.getLogger(__name__)

PROJECTOR_MAP: dict[str, str] = upstream_projectors()
"""Upstream projector prefix -> our modality (from the modality registry)."""
_PROJ_RE = re.compile(r"^(" + "|".join(PROJECTOR_MAP) + r")\.(weight|bias)$")
_LORA_RE = re.compile(r"^llama_model\.base_model\.model\.(model\.layers\.\d+\..+\.lora_[AB])(?:\.default)?\.weight$")
KNOWN_BUFFERS = re.compile(r"^llama_model\..*\.rotary_emb\.inv_freq$")
"""Non-parameter buffers upstream checkpoints carry: LLaMA's rotary inverse frequencies (persistent under
transformers 4.30). They are a function of the backbone config, which recomputes them, so they are skipped."""


def map_upstream_key(key: str) -> str | None:
    """Our parameter name for an upstream key, or None when the key has no counterpart."""
    if m := _PROJ_RE.match(key):
        return f"projectors.{PROJECTOR_MAP[m.group(1)]}.{m.group(2)}"
    if m := _LORA_RE.match(key):
        return f"llm.base_model.model.{m.group(1)}.default.weight"
    return None


@dataclass
class Conversion:
    """An upstream state dict renamed to our parameter names, with everything that did not fit."""

    state: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    """Known buffers (``KNOWN_BUFFERS``), not loaded."""
    unknown: list[str] = field(default_factory=list)
    """Upstream keys with no mapping, or mapped to a parameter this model lacks."""
    missing: list[str] = field(default_factory=list)
    """Our parameters with an upstream counterpart that the checkpoint lacks."""
    wrong_shape: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    """Our trainable parameters with no upstream counterpart (e.g. the text projector): left at initialisation."""

    def coverage(self) -> str:
        return (f"coverage: mapped {len(self.state)}, skipped buffers {len(self.skipped)}, unknown keys "
                f"{len(self.unknown)}, missing parameters {len(self.missing)}, wrong shapes {len(self.wrong_shape)}, "
                f"initialised (no upstream counterpart) {len(self.new)}")

    def check(self, source: str) -> None:
        """Raise naming every unknown key, missing parameter and shape mismatch."""
        if self.unknown or self.missing or self.wrong_shape:
            raise KeyError(f"{source}: cannot load into this model ({self.coverage()}); unknown upstream keys (no "
                           f"mapping, or a parameter this model lacks: check LoRA targets and layer count): "
                           f"{self.unknown or 'none'}; parameters missing from the checkpoint: "
                           f"{self.missing or 'none'}; wrong shapes: {self.wrong_shape or 'none'}")


def map_upstream_state(state: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> Conversion:
    """Rename ``state`` onto ``params`` (our trainable parameters by name; shapes are checked, values unused)."""
    conv = Conversion()
    misfits: set[str] = set()
    for key, value in state.items():
        ours = map_upstream_key(key)
        if ours is None and KNOWN_BUFFERS.match(key):
            conv.skipped.append(key)
        elif ours is None or ours not in params:
            conv.unknown.append(key)
        elif value.shape != params[ours].shape:
            misfits.add(ours)
            conv.wrong_shape.append(f"{key} {tuple(value.shape)} -> {ours} {tuple(params[ours].shape)}")
        else:
            conv.state[ours] = value
    mappable = {k for k in params if not k.startswith("projectors.") or k.split(".")[1] in PROJECTOR_MAP.values()}
    conv.missing = sorted(mappable - set(conv.state) - misfits)
    conv.new = sorted(set(params) - mappable)
    if conv.skipped:
        log.info("skipped %d known non-parameter buffers (%s ...): recomputed from the backbone config",
                 len(conv.skipped), conv.skipped[0])
    return conv


def trainable_parameters(model: EmotionLLaMA) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def read_upstream(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of an upstream ``.pth`` (read with ``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"upstream checkpoint {path} does not exist")
    return read_state_dict(path)


def load_upstream_checkpoint(model: EmotionLLaMA, path: str | Path) -> Conversion:
    """Load an upstream ``.pth`` into ``model`` through the key map; unknown or missing keys are an error."""
    conv = map_upstream_state(read_upstream(path), trainable_parameters(model))
    conv.check(str(path))
    log.info("%s: %s", path, conv.coverage())
    if conv.new:
        log.info("%s has no upstream counterpart for %s: kept at initialisation", path, ", ".join(conv.new))
    model.copy_parameters(conv.state, str(path))
    return conv


def build_skeleton(cfg: DictConfig, llm_config_dir: str | Path) -> EmotionLLaMA:
    """The model the config describes, on the ``meta`` device: shapes and names only, no weights read.

    The backbone comes from ``llm_config_dir/config.json`` alone. Projectors without an upstream counterpart
    are then materialised on the CPU at their seeded initialisation, since the checkpoint must hold them.
    """
    model_cfg = cfg.model
    config = AutoConfig.from_pretrained(str(llm_config_dir), local_files_only=True)
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(config, dtype=DTYPES[model_cfg.llm.dtype])
        llm.requires_grad_(False)
        llm = wrap_lora(llm, model_cfg.lora)
        vision = None if model_cfg.vision.kind == "none" else FrameEncoder(model_cfg.vision, load_weights=False)
        model = assemble(model_cfg, llm, None, vision)
    torch.manual_seed(model_cfg.seed)
    for name, proj in model.projectors.items():
        if name not in PROJECTOR_MAP.values():
            proj.to_empty(device="cpu")
            for module in proj.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return model


def identity_feature_norm(model: EmotionLLaMA) -> dict[str, torch.Tensor]:
    """The feature statistics a converted checkpoint holds: upstream's projectors read raw features, so the
    standardisation is the identity (mean 0, std 1); the skeleton's own buffers are on the meta device."""
    return {name: (torch.ones if name.endswith(".std") else torch.zeros)(tuple(buf.shape))
            for name, buf in model.named_buffers() if name.startswith("feature_norm.")}


def convert_to_folder(upstream: str | Path, llm_config_dir: str | Path, output: str | Path,
                      cfg: DictConfig) -> Conversion:
    """Write ``output`` as this project's checkpoint folder (trainable safetensors + resolved config).

    Raises (naming the keys) before writing anything when the checkpoint does not cover the model.
    """
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"--output {output} already exists: choose a new folder (nothing is overwritten)")
    model = build_skeleton(cfg, llm_config_dir)
    params = trainable_parameters(model)
    conv = map_upstream_state(read_upstream(upstream), params)
    print(conv.coverage(), flush=True)
    conv.check(str(upstream))
    tensors = {k: v.to(params[k].dtype).contiguous() for k, v in conv.state.items()}
    tensors.update({k: params[k].detach().contiguous() for k in conv.new})
    tensors.update(identity_feature_norm(model))
    tmp = stage(output)
    save_file(tensors, str(tmp / WEIGHTS))
    save_config(cfg, tmp / CONFIG)
    publish(tmp, output)
    return conv
