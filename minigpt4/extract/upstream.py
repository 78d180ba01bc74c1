"""Upstream Emotion-LLaMA's extractors, from local Hugging Face folders only (``local_files_only=True``).

- ``hubert`` (audio): ``HubertModel`` (e.g. chinese-hubert-large); last hidden states averaged over time.
- ``videomae`` (video): ``VideoMAEModel`` on ``num_frames`` (16) frames of the face track (or whole frames);
  tokens averaged.
- ``mae-face`` (face): ``ViTMAEModel`` with ``mask_ratio=0`` (otherwise it drops 75% of the patches at
  random) on each aligned face crop, tokens mean-pooled per frame, then averaged over frames.

Upstream's own weights are not public under these names; point ``path`` at whatever local folder holds
them. Nothing is downloaded.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from transformers import HubertModel, VideoMAEModel, ViTMAEModel

from minigpt4.extract.base import ClipInputs, Extractor
from minigpt4.extract.media import MediaError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _local(path: Any, extractor: str) -> str:
    if not path:
        raise ValueError(f"extractor {extractor!r} needs path=<local Hugging Face model folder> (nothing is "
                         "downloaded)")
    folder = Path(str(path)).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"extractor {extractor!r}: {folder} is not a local model folder (no config.json)")
    return str(folder)


def _images(frames: list[np.ndarray], size: int) -> torch.Tensor:
    """RGB uint8 frames -> ``[n, 3, size, size]`` ImageNet-normalised floats."""
    x = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    return torch.from_numpy(((x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2).copy())


class _HFExtractor(Extractor):
    defaults: dict[str, Any] = {"path": None}

    @cached_property
    def model(self) -> torch.nn.Module:
        return self.load(_local(self.config["path"], self.name)).eval().requires_grad_(False)

    def load(self, path: str) -> torch.nn.Module:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)


class HubertAudio(_HFExtractor):
    """Upstream's ``audio`` feature: HuBERT-large hidden states from a local folder."""
    name = "hubert"
    modality = "audio"
    version = "1"

    def load(self, path: str) -> torch.nn.Module:
        return HubertModel.from_pretrained(path, local_files_only=True)

    @torch.inference_mode()
    def compute(self, inputs: ClipInputs) -> np.ndarray:
        audio = inputs.clip.audio
        if audio is None or audio.size < 400:
            raise MediaError(f"{inputs.clip.path}: no audio track (or under 25 ms of audio)")
        x = torch.from_numpy((audio - audio.mean()) / (audio.std() + 1e-7)).float()[None]
        return self.model(x).last_hidden_state.mean(1).numpy()


class VideoMAEVideo(_HFExtractor):
    """Upstream's ``video`` feature: VideoMAE hidden states from a local folder."""
    name = "videomae"
    modality = "video"
    version = "2"  # 2: see FaceExpression.version
    frames = 16
    defaults: dict[str, Any] = {"path": None, "input": "faces"}

    def load(self, path: str) -> torch.nn.Module:
        return VideoMAEModel.from_pretrained(path, local_files_only=True)

    @torch.inference_mode()
    def compute(self, inputs: ClipInputs) -> np.ndarray:
        if self.config["input"] not in ("faces", "frames"):
            raise ValueError(f"extractor videomae: input={self.config['input']!r}, expected faces or frames")
        frames = inputs.faces.crops if self.config["input"] == "faces" else list(inputs.clip.frames or [])
        if not frames:
            raise MediaError(f"{inputs.clip.path}: no {self.config['input']} to feed VideoMAE")
        cfg = self.model.config
        pick = np.linspace(0, len(frames) - 1, cfg.num_frames).round().astype(int)
        video = _images([frames[i] for i in pick], cfg.image_size)[None]
        return self.model(pixel_values=video).last_hidden_state.mean(1).numpy()


class FaceMAE(_HFExtractor):
    """Upstream's ``face`` feature: MAE ViT hidden states of the face crops, from a local folder."""
    name = "mae-face"
    modality = "face"
    version = "2"  # 2: see FaceExpression.version
    frames = 16

    def load(self, path: str) -> torch.nn.Module:
        return ViTMAEModel.from_pretrained(path, mask_ratio=0.0, local_files_only=True)

    @torch.inference_mode()
    def compute(self, inputs: ClipInputs) -> np.ndarray:
        crops = inputs.faces.crops
        if not crops:
            raise MediaError(f"{inputs.clip.path}: no face found in {inputs.faces.frames} sampled frame(s)")
        hidden = self.model(pixel_values=_images(crops, self.model.config.image_size)).last_hidden_state
        return hidden.mean(1).mean(0, keepdim=True).numpy()
