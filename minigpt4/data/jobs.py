"""Corpus samples as extraction jobs: the one bridge from the data side to :mod:`minigpt4.extract`."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from minigpt4.data.frames import media_path
from minigpt4.data.samples import Sample
from minigpt4.extract.run import Job


def sample_jobs(samples: Sequence[Sample]) -> list[Job]:
    """Jobs for corpus samples: the sample's media, cut to its segment and speaker side when it has them."""
    jobs = []
    for sample in samples:
        path = media_path(sample)
        decode = {k: sample.meta[k] for k in ("segment", "side") if sample.meta.get(k) is not None}
        if sample.meta.get("wav") and Path(sample.meta["wav"]).is_file():
            decode["audio_path"] = sample.meta["wav"]
        error = sample.meta.get("known_bad") or (None if path and path.is_file() else f"media file not found: {path}")
        jobs.append(Job(sample.id, str(path), decode, error))
    return jobs
