"""Frozen frame encoder with the 4-patch merge: a tiny random ViT, a named timm model, or EVA ViT-g as upstream.

``eva_upstream`` gives exactly the network upstream's projectors were trained on: timm's EVA blocks with
``depth`` blocks (39 for EVA ViT-g, one fewer than the LAVIS file holds), no final norm, then ``ln_vision``
(a LayerNorm frozen at weight 1, bias 0). Its parameter names are the LAVIS file's own names, so the file is
read as is: keys the model does not use are reported, keys it needs and the file lacks are an error, and
``pos_embed`` is resampled from the file's grid to the configured image size.
"""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed
from timm.models.eva import Eva
from torch import nn

from minigpt4.config import VisionConfig

log = logging.getLogger(__name__)
LN_VISION_EPS = 1e-5
"""``ln_vision`` is a default ``nn.LayerNorm`` upstream; the blocks' own norms use 1e-6."""


def upstream_eva(cfg: VisionConfig) -> Eva:
    """EVA ViT as upstream's ``create_eva_vit_g`` shapes it (fused qkv weight, q/v biases, no final norm)."""
    return Eva(img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.width, depth=cfg.depth,
               num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True, qkv_fused=True,
               norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0, global_pool="", use_fc_norm=False,
               use_post_transformer_norm=False)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a torch file: a state dict, or a dict holding one under ``model``
    (upstream checkpoints; their other entries are ignored). Torch files are read with ``weights_only=True``."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (or a dict with key 'model' holding one)")
    return state


def load_upstream_eva(vit: Eva, path: Path) -> list[str]:
    """Copy the LAVIS weights at ``path`` into ``vit``; return the file's keys the model does not use."""
    state = read_state_dict(path)
    wanted = vit.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise KeyError(f"{path}: the EVA encoder (depth {len(vit.blocks)}) needs keys the file lacks: "
                       f"{', '.join(missing)}")
    grid = list(vit.patch_embed.grid_size)
    picked = {k: state[k] for k in wanted}
    picked["pos_embed"] = resample_abs_pos_embed(
        picked["pos_embed"], new_size=grid, num_prefix_tokens=vit.num_prefix_tokens, interpolation="bicubic",
        antialias=False)
    for key, value in picked.items():
        if value.shape != wanted[key].shape:
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, the EVA encoder configured by "
                             f"model.vision expects {tuple(wanted[key].shape)}")
    vit.load_state_dict(picked)
    unused = sorted(set(state) - set(wanted), key=_natural)
    if unused:
        log.info("%s: %d keys not used by the %d-block encoder (upstream ignores them too): %s", path,
                 len(unused), len(vit.blocks), ", ".join(unused))
    return unused


def _natural(key: str) -> tuple:
    """Sort ``blocks.10`` after ``blocks.9``."""
    return tuple(int(p) if p.isdigit() else p for p in key.split("."))


def _weight_file(cfg: VisionConfig) -> Path:
    path = Path(cfg.checkpoint) if cfg.checkpoint else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"model.vision.checkpoint={path} does not exist: set it to a local weight file for model.vision.kind="
            f"{cfg.kind} (weights are never downloaded)")
    return path


class FrameEncoder(nn.Module):
    """Image [b, 3, H, W] -> (merged patch tokens [b, P/merge, merge*w], CLS [b, 1, w]); always frozen.

    ``load_weights=False`` builds the structure only (a ``meta``-device skeleton for the converter).
    """

    def __init__(self, cfg: VisionConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.ln_vision: nn.Module = nn.Identity()
        self.unused_keys: list[str] = []
        if cfg.kind == "tiny":
            self.vit = timm.models.vision_transformer.VisionTransformer(
                img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.width, depth=cfg.depth,
                num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, num_classes=0, global_pool="")
        elif cfg.kind == "eva_upstream":
            self.vit = upstream_eva(cfg)
            self.ln_vision = nn.LayerNorm(cfg.width, eps=LN_VISION_EPS)
            if load_weights:
                self.unused_keys = load_upstream_eva(self.vit, _weight_file(cfg))
        else:
            self.vit = timm.create_model(
                cfg.timm_name, pretrained=load_weights, img_size=cfg.image_size, num_classes=0, global_pool="",
                **({"pretrained_cfg_overlay": {"file": str(_weight_file(cfg))}} if load_weights else {}))
        self.merge = cfg.merge
        grid = self.vit.patch_embed.grid_size
        self.num_patches = grid[0] * grid[1]
        if self.num_patches % self.merge:
            raise ValueError(
                f"model.vision.image_size={cfg.image_size} gives {self.num_patches} patches, not divisible by "
                f"model.vision.merge={self.merge} (EVA: use 448 or 224)")
        self.width = self.vit.embed_dim
        self.requires_grad_(False)
        self.eval()

    @property
    def tokens(self) -> int:
        return self.num_patches // self.merge

    def train(self, mode: bool = True) -> "FrameEncoder":
        return super().train(False)

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.ln_vision(self.vit.forward_features(image))
        prefix = self.vit.num_prefix_tokens
        cls, patches = x[:, :1], x[:, prefix:]
        b, p, w = patches.shape
        return patches.reshape(b, p // self.merge, w * self.merge), cls
