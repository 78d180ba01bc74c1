"""Small generated media clips for the serving tests (PyAV): an H.264 + AAC ``.mp4`` with a drawn face."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def face_frame(size: int, shade: int, smile: bool) -> np.ndarray:
    """A light background with a skin-coloured oval face, eyes and a mouth (RGB uint8)."""
    frame = np.full((size, size, 3), 200 - shade // 4, np.uint8)
    c = size // 2
    cv2.ellipse(frame, (c, c), (size // 4, size // 3), 0, 0, 360, (224, 182, 150), -1)
    for dx in (-size // 10, size // 10):
        cv2.circle(frame, (c + dx, c - size // 10), max(2, size // 40), (40, 30, 30), -1)
    start, end = (20, 160) if smile else (200, 340)
    cv2.ellipse(frame, (c, c + size // 8 + (0 if smile else size // 12)), (size // 10, size // 20), 0, start, end,
                (120, 40, 40), max(1, size // 60))
    return frame


def write_clip(path: Path, seconds: float = 1.0, size: int = 96, fps: int = 10, tone_hz: float = 220.0,
               shade: int = 0, smile: bool = True, audio: bool = True) -> Path:
    """Write an ``.mp4`` (H.264 video, AAC 16 kHz mono audio) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        frame = face_frame(size, shade, smile)
        for i in range(int(seconds * fps)):
            shifted = np.roll(frame, i % 3, axis=1)
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(shifted), format="rgb24")))
        out.mux(video.encode())
        if sound is not None:
            t = np.arange(int(seconds * 16000)) / 16000
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
            step = 1024
            for k in range(0, len(wave), step):
                chunk = wave[None, k:k + step]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                af.sample_rate = 16000
                af.pts = k
                af.time_base = Fraction(1, 16000)
                out.mux(sound.encode(af))
            out.mux(sound.encode())
    return path


def untrained_checkpoint(folder: Path) -> Path:
    """A checkpoint folder of the demo recipe's untrained model (deterministic: seeded init): what serving
    needs, without spending test time on training."""
    from minigpt4.build import build_model
    from minigpt4.checkpoint import write_checkpoint
    from minigpt4.config import load_config

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "train_configs" / "demo.yaml", [f"run.output_dir={folder.parent / 'run'}"])
    return write_checkpoint(folder, build_model(cfg), cfg)
