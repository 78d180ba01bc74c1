"""Acoustic statistics of an utterance with librosa: what prosody and voice quality say about emotion.

Per clip (16 kHz mono): MFCC 1-20 means and standard deviations, pitch (pyin) level, spread, range, slope and
voiced fraction, loudness (RMS dB) level and spread, spectral shape (centroid, bandwidth, roll-off,
flatness, zero-crossing rate) and speaking-rate proxies (onsets and voiced runs per second, pause fraction,
duration). Every value is put on a roughly unit scale with fixed constants (log frequencies, dB / 20), so the
feature needs no dataset statistics and a single clip is described the same way at training and prediction.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from minigpt4.extract.base import ClipInputs, Extractor
from minigpt4.extract.media import MediaError

N_MFCC = 20
SILENCE_RMS = 1e-4
"""A track whose RMS stays below this (about -80 dBFS) everywhere is silent."""


def _stats(x: np.ndarray) -> list[float]:
    return [float(x.mean()), float(x.std())] if x.size else [0.0, 0.0]


def acoustic_features(audio: np.ndarray, sr: int, fmin: float, fmax: float, hop: int, resolution: float) -> np.ndarray:
    import librosa  # heavy import (numba): only audio feature extraction and resampling need it

    mfcc = librosa.feature.mfcc(y=audio, sr=sr, n_mfcc=N_MFCC + 1, hop_length=hop)[1:] / 20.0
    rms = librosa.feature.rms(y=audio, frame_length=4 * hop, hop_length=hop)[0]
    db = librosa.amplitude_to_db(np.maximum(rms, 1e-6), ref=1.0) / 20.0
    f0, voiced, _ = librosa.pyin(audio, fmin=fmin, fmax=fmax, sr=sr, frame_length=4 * hop, hop_length=hop,
                                 resolution=resolution)
    pitch = np.log2(f0[voiced & np.isfinite(f0)] / 100.0) if voiced.any() else np.zeros(0)
    duration = len(audio) / sr
    if pitch.size > 1:
        slope = float(np.polyfit(np.arange(pitch.size) * hop / sr, pitch, 1)[0])
        p = [pitch.mean(), pitch.std(), pitch.min(), pitch.max(), pitch.max() - pitch.min(), slope]
    else:
        p = [float(pitch.mean()) if pitch.size else 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    runs = int(np.sum(np.diff(voiced.astype(int)) == 1) + int(voiced[0])) if voiced.size else 0
    spectral = [
        np.log(librosa.feature.spectral_centroid(y=audio, sr=sr, hop_length=hop)[0] + 1.0) / 8.0,
        np.log(librosa.feature.spectral_bandwidth(y=audio, sr=sr, hop_length=hop)[0] + 1.0) / 8.0,
        np.log(librosa.feature.spectral_rolloff(y=audio, sr=sr, hop_length=hop)[0] + 1.0) / 8.0,
        np.log10(librosa.feature.spectral_flatness(y=audio, hop_length=hop)[0] + 1e-6) / 6.0,
        librosa.feature.zero_crossing_rate(audio, frame_length=4 * hop, hop_length=hop)[0] * 10.0,
    ]
    onsets = librosa.onset.onset_detect(y=audio, sr=sr, hop_length=hop)
    quiet = db < db.max() - 30.0 / 20.0
    values = [*mfcc.mean(1), *mfcc.std(1), *p, float(voiced.mean()), *_stats(db), float(db.max()),
              *[v for s in spectral for v in _stats(s)],
              len(onsets) / duration / 5.0, runs / duration / 5.0, float(quiet.mean()), float(np.log(duration + 1e-3))]
    return np.asarray(values, np.float32)


class AcousticStats(Extractor):
    """Zero-download audio feature: librosa prosody, voice-quality and spectral statistics (64 values)."""

    name = "librosa"
    modality = "audio"
    version = "1"
    defaults: dict[str, Any] = {"fmin": 65.0, "fmax": 500.0, "hop": 256, "resolution": 0.5}
    """pyin search range (Hz), hop (samples at 16 kHz) and pitch resolution (semitones; 0.5 is 4x faster than
    librosa's 0.1 and ample for utterance statistics)."""

    @property
    def dim(self) -> int:
        return 2 * N_MFCC + 6 + 1 + 3 + 10 + 4

    def compute(self, inputs: ClipInputs) -> np.ndarray:
        clip = inputs.clip
        if clip.audio is None:
            raise MediaError(f"{clip.path}: no audio track")
        audio = clip.audio
        if audio.size < 4 * self.config["hop"]:
            raise MediaError(f"{clip.path}: audio too short ({audio.size} samples)")
        if float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < SILENCE_RMS:
            raise MediaError(f"{clip.path}: the audio track is silent")
        return acoustic_features(audio, clip.sample_rate, float(self.config["fmin"]), float(self.config["fmax"]),
                                 int(self.config["hop"]), float(self.config["resolution"]))[None]
