"""The upstream EVA ViT-g frame encoder: structure against upstream's parameter list, loading, and its forward."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minigpt4.data.run_config import load_config
from minigpt4.models.vision import FrameEncoder

UPSTREAM = Path(__file__).resolve().parent / "data" / "upstream"
SMALL = ["model.vision.kind=eva_upstream", "model.vision.image_size=448", "model.vision.patch_size=14",
         "model.vision.width=32", "model.vision.heads=2", "model.vision.depth=2", "model.vision.mlp_ratio=2.5"]


def test_full_size_encoder_matches_upstream_names_and_shapes() -> None:
    vcfg = load_config(None, ["model.preset=llama2_7b"], allow_missing=True).model.vision
    with torch.device("meta"):
        encoder = FrameEncoder(vcfg, load_weights=False)
    ours = {k: list(v.shape) for k, v in encoder.vit.state_dict().items()}
    assert ours == json.loads((UPSTREAM / "eva_vit_g_upstream_448.json").read_text())
    assert len(encoder.vit.blocks) == 39 and isinstance(encoder.vit.norm, torch.nn.Identity)
    assert encoder.tokens == 256 and encoder.width == 1408
    assert isinstance(encoder.ln_vision, torch.nn.LayerNorm) and encoder.ln_vision.normalized_shape == (1408,)


def lavis_file(width: int = 32, depth: int = 3, grid: int = 16, patch: int = 14, hidden: int = 80,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """A LAVIS-named state dict: ``depth`` blocks (one more than the model) and a ``grid``x``grid`` pos_embed."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, std: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    state = {"cls_token": rnd(1, 1, width), "pos_embed": rnd(1, grid * grid + 1, width),
             "patch_embed.proj.weight": rnd(width, 3, patch, patch, std=0.05), "patch_embed.proj.bias": rnd(width)}
    for i in range(depth):
        p = f"blocks.{i}."
        state.update({
            p + "norm1.weight": 1 + rnd(width), p + "norm1.bias": rnd(width),
            p + "attn.qkv.weight": rnd(3 * width, width), p + "attn.q_bias": rnd(width), p + "attn.v_bias": rnd(width),
            p + "attn.proj.weight": rnd(width, width), p + "attn.proj.bias": rnd(width),
            p + "norm2.weight": 1 + rnd(width), p + "norm2.bias": rnd(width),
            p + "mlp.fc1.weight": rnd(hidden, width), p + "mlp.fc1.bias": rnd(hidden),
            p + "mlp.fc2.weight": rnd(width, hidden), p + "mlp.fc2.bias": rnd(width)})
    return state


def reference_forward(state: dict[str, torch.Tensor], image: torch.Tensor, depth: int, heads: int,
                      patch: int) -> torch.Tensor:
    """EVA ViT-g's forward written out from its definition: no final norm, then ln_vision (eps 1e-5, 1/0)."""
    x = F.conv2d(image, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=patch)
    b, w, gh, gw = x.shape
    x = torch.cat([state["cls_token"].expand(b, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
    pos = state["pos_embed"]
    old = int(math.isqrt(pos.shape[1] - 1))
    grid = pos[:, 1:].reshape(1, old, old, w).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
    x = x + torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, w)], dim=1)
    d = w // heads
    for i in range(depth):
        s = {k.removeprefix(f"blocks.{i}."): v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
        h = F.layer_norm(x, (w,), s["norm1.weight"], s["norm1.bias"], eps=1e-6)
        bias = torch.cat([s["attn.q_bias"], torch.zeros(w), s["attn.v_bias"]])
        q, k, v = (h @ s["attn.qkv.weight"].T + bias).reshape(b, -1, 3, heads, d).permute(2, 0, 3, 1, 4)
        attn = ((q * d ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        h = (attn @ v).transpose(1, 2).reshape(b, -1, w)
        x = x + h @ s["attn.proj.weight"].T + s["attn.proj.bias"]
        h = F.layer_norm(x, (w,), s["norm2.weight"], s["norm2.bias"], eps=1e-6)
        h = F.gelu(h @ s["mlp.fc1.weight"].T + s["mlp.fc1.bias"])
        x = x + h @ s["mlp.fc2.weight"].T + s["mlp.fc2.bias"]
    return F.layer_norm(x, (w,), eps=1e-5)


def test_small_lavis_file_loads_and_matches_reference_forward(tmp_path: Path, caplog) -> None:
    state = lavis_file()
    torch.save(state, tmp_path / "eva_vit_g.pth")
    vcfg = load_config(None, [*SMALL, f"model.vision.checkpoint={tmp_path / 'eva_vit_g.pth'}"]).model.vision
    with caplog.at_level(logging.INFO, logger="minigpt4.models.vision"):
        encoder = FrameEncoder(vcfg)
    extra = sorted(k for k in state if k.startswith("blocks.2."))
    assert sorted(encoder.unused_keys) == extra
    assert "blocks.2.attn.qkv.weight" in caplog.text and "not used" in caplog.text
    assert encoder.vit.pos_embed.shape == (1, 32 * 32 + 1, 32)
    assert torch.equal(encoder.ln_vision.weight, torch.ones(32)) and torch.equal(encoder.ln_vision.bias,
                                                                               torch.zeros(32))
    assert not any(p.requires_grad for p in encoder.parameters())
    image = torch.randn(2, 3, 448, 448, generator=torch.Generator().manual_seed(1))
    patches, cls = encoder(image)
    ref = reference_forward(state, image, depth=2, heads=2, patch=14)
    assert patches.shape == (2, 256, 4 * 32) and cls.shape == (2, 1, 32)
    torch.testing.assert_close(cls, ref[:, :1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(patches, ref[:, 1:].reshape(2, 256, 128), atol=1e-5, rtol=1e-5)
    # The extra block really is unused: a 3-block reference differs.
    assert not torch.allclose(cls, reference_forward(state, image, depth=3, heads=2, patch=14)[:, :1], atol=1e-3)


def test_lavis_file_missing_a_needed_key_is_an_error_naming_it(tmp_path: Path) -> None:
    state = lavis_file()
    del state["blocks.1.attn.v_bias"]
    torch.save(state, tmp_path / "eva.pth")
    vcfg = load_config(None, [*SMALL, f"model.vision.checkpoint={tmp_path / 'eva.pth'}"]).model.vision
    with pytest.raises(KeyError, match=r"eva.pth.*blocks\.1\.attn\.v_bias"):
        FrameEncoder(vcfg)
    state = lavis_file(width=48, hidden=120)
    torch.save(state, tmp_path / "wide.pth")
    vcfg = load_config(None, [*SMALL, f"model.vision.checkpoint={tmp_path / 'wide.pth'}"]).model.vision
    with pytest.raises(ValueError, match=r"wide.pth: cls_token has shape \(1, 1, 48\)"):
        FrameEncoder(vcfg)
    missing = load_config(None, [*SMALL, "model.vision.checkpoint=/nonexistent/eva_vit_g.pth"]).model.vision
    with pytest.raises(FileNotFoundError, match="/nonexistent/eva_vit_g.pth"):
        FrameEncoder(missing)
