"""Find, align and crop the face in each sampled frame with OpenCV's Haar cascades (shipped in the
``opencv-python-headless`` 4.x wheel under ``cv2.data.haarcascades``; 5.x drops them, hence the ``<5`` pin).

Per frame the largest frontal face is kept; the two eyes found in its upper half level the crop (rotation
about the face centre), and a square crop with a margin is cut out. Frames without a face contribute nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

FACE_CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADE = "haarcascade_eye.xml"
CROP = 128
"""Side of the aligned square crops handed to face extractors (each resizes to its own input)."""
MARGIN = 0.2
MIN_FACE = 20
MIN_FACE_FRACTION = 1 / 16
"""Faces smaller than this share of the frame's shorter side are not searched for (68 px at 1080p, 45 px at
720p; frames up to 320 px keep ``MIN_FACE``). Why: the cascade's cost is in its smallest scales, which at
1080p cost 2.4x the rest; skipping them leaves every detection the full search makes at or above the size
unchanged (the cascade scans the same scales above it), unlike detecting on a downscaled frame, which
measured different boxes and lost faces."""


@lru_cache(maxsize=None)
def _cascade(name: str) -> cv2.CascadeClassifier:
    data = getattr(cv2, "data", None)
    if data is None or not hasattr(cv2, "CascadeClassifier"):
        raise RuntimeError("this OpenCV build has no Haar cascades (opencv-python-headless 5.x dropped them); "
                           "install opencv-python-headless<5")
    cascade = cv2.CascadeClassifier(data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"cannot load Haar cascade {data.haarcascades + name}")
    return cascade


@dataclass
class FaceTrack:
    """The faces found in a clip's sampled frames: aligned crops and where they were."""
    crops: list[np.ndarray]
    """Aligned ``CROP x CROP x 3`` uint8 RGB faces, one per frame where a face was found."""
    boxes: list[tuple[int, int, int, int]]
    """(x, y, w, h) of each face in its frame."""
    frames: int
    """Frames searched."""

    def middle(self) -> np.ndarray | None:
        return self.crops[len(self.crops) // 2] if self.crops else None


def detect(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest frontal face in a grey frame, or None."""
    smallest = max(MIN_FACE, round(min(grey.shape[:2]) * MIN_FACE_FRACTION))
    faces = _cascade(FACE_CASCADE).detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4,
                                                     minSize=(smallest, smallest))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    return int(x), int(y), int(w), int(h)


def eye_angle(grey: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Degrees to rotate so the eyes are level; 0 unless two eyes are found in the face's upper half."""
    x, y, w, h = box
    upper = grey[y: y + h // 2 + h // 8, x: x + w]
    eyes = _cascade(EYE_CASCADE).detectMultiScale(upper, scaleFactor=1.1, minNeighbors=5,
                                                   minSize=(max(4, w // 8), max(4, w // 8)))
    if len(eyes) < 2:
        return 0.0
    (ax, ay, aw, ah), (bx, by, bw, bh) = sorted(sorted(eyes, key=lambda e: -e[2] * e[3])[:2], key=lambda e: e[0])
    dx = (bx + bw / 2) - (ax + aw / 2)
    dy = (by + bh / 2) - (ay + ah / 2)
    angle = float(np.degrees(np.arctan2(dy, dx)))
    return angle if abs(angle) <= 30 else 0.0


def align_crop(frame: np.ndarray, box: tuple[int, int, int, int], angle: float) -> np.ndarray:
    """Rotate ``frame`` about the face centre by ``angle``, then cut a square crop with a margin."""
    x, y, w, h = box
    centre = (x + w / 2, y + h / 2)
    side = int(round(max(w, h) * (1 + 2 * MARGIN)))
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    matrix[:, 2] += (side / 2 - centre[0], side / 2 - centre[1])
    crop = cv2.warpAffine(frame, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(crop, (CROP, CROP), interpolation=cv2.INTER_AREA)


def track_faces(frames: np.ndarray) -> FaceTrack:
    """Aligned face crops from every frame of ``[T, H, W, 3]`` RGB frames that shows one."""
    crops, boxes = [], []
    for frame in frames:
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        box = detect(grey)
        if box is None:
            continue
        crops.append(align_crop(frame, box, eye_angle(grey, box)))
        boxes.append(box)
    return FaceTrack(crops, boxes, len(frames))
