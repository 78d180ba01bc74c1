"""Feature statistics of a fresh run: set from the training split, applied before the projector, checkpointed."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from minigpt4.models.feature_norms import set_feature_norms
from minigpt4.models.projectors import FeatureNorm


class Store:
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def get(self, modality: str, sample_id: str) -> np.ndarray:
        return self.arrays[sample_id]


def test_features_are_standardised_with_the_training_split_and_constant_dimensions_only_centred():
    rng = np.random.default_rng(0)
    scale = np.array([100.0, 0.01, 1.0, 0.0])  # the last dimension never varies
    raw = {f"s{i}": (rng.normal(size=(1, 4)) * scale + [5.0, -2.0, 0.0, 3.0]).astype(np.float32) for i in range(50)}
    model = SimpleNamespace(feature_norm=nn.ModuleDict({"audio": FeatureNorm(4), "face": FeatureNorm(4)}))
    assert set_feature_norms(model, Store(raw), list(raw)[:40], ["audio", "text"]) == ["audio"]
    x = torch.as_tensor(np.concatenate([raw[k] for k in list(raw)[:40]]))
    z = model.feature_norm["audio"](x)
    torch.testing.assert_close(z[:, :3].mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(z[:, :3].std(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    assert torch.allclose(z[:, 3], torch.zeros(40))  # centred, not divided by ~0
    assert torch.equal(model.feature_norm["face"](x), x)  # not set: identity


def test_checkpoints_carry_the_feature_statistics(tmp_path):
    from minigpt4.data.run_config import load_config
    from minigpt4.models.build import build_model
    from minigpt4.models.checkpoint import load_trainable, write_checkpoint

    cfg = load_config(None)
    model = build_model(cfg)
    dim = model.feature_norm["audio"].mean.numel()
    with torch.no_grad():
        model.feature_norm["audio"].mean.copy_(torch.arange(dim, dtype=torch.float32))
        model.feature_norm["audio"].std.copy_(torch.linspace(0.5, 8.0, dim))
    write_checkpoint(tmp_path / "ckpt", model, cfg)
    fresh = build_model(cfg)
    assert torch.equal(fresh.feature_norm["audio"].std, torch.ones(dim))
    load_trainable(fresh, tmp_path / "ckpt")
    assert torch.equal(fresh.feature_norm["audio"].mean, model.feature_norm["audio"].mean)
    assert torch.equal(fresh.feature_norm["audio"].std, model.feature_norm["audio"].std)
