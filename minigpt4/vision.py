"""Frozen frame encoder: a timm ViT (EVA ViT-g from a local file, or a tiny random one) with the 4-patch merge."""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from omegaconf import DictConfig
from torch import nn


class FrameEncoder(nn.Module):
    """Image [b, 3, H, W] -> (merged patch tokens [b, P/merge, merge*w], CLS [b, 1, w]); always frozen."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        if cfg.kind == "tiny":
            self.vit = timm.models.vision_transformer.VisionTransformer(
                img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.width, depth=cfg.depth,
                num_heads=cfg.heads, num_classes=0, global_pool="")
        else:
            ckpt = Path(cfg.checkpoint)
            if not ckpt.is_file():
                raise FileNotFoundError(
                    f"model.vision.checkpoint={ckpt} does not exist: set it to a local weight file for "
                    f"timm model {cfg.timm_name!r} (weights are never downloaded)")
            self.vit = timm.create_model(cfg.timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(ckpt)},
                                         img_size=cfg.image_size, num_classes=0, global_pool="")
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
        x = self.vit.forward_features(image)
        prefix = self.vit.num_prefix_tokens
        cls, patches = x[:, :1], x[:, prefix:]
        b, p, w = patches.shape
        return patches.reshape(b, p // self.merge, w * self.merge), cls
