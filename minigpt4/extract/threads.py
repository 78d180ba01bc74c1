"""One compute thread per extraction process.

Why: extraction scales by processes (``--workers N`` uses N cores). Left to their defaults, every library in a
worker would start a thread per core (FFmpeg's decoder, OpenCV, OpenBLAS under numpy/librosa, torch), so two
workers on two cores run eight busy threads that evict each other's caches; measured in
``bench/extract.py``. One torch thread also keeps features independent of the worker count.
"""
from __future__ import annotations

import cv2
import torch
from threadpoolctl import threadpool_limits

from minigpt4.extract import media


def single_thread() -> None:
    """Limit this process's decoder, OpenCV, BLAS/OpenMP pools and torch to one thread each."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    threadpool_limits(1)
    media.set_decode_threads(1)
