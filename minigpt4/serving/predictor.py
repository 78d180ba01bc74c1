"""Clips in, predictions out, for one trained checkpoint: what ``predict.py`` and ``app.py`` both serve.

A clip goes through the same path as a training sample: ``minigpt4.extract`` (the one extraction path, with
the extractors the checkpoint was trained with), then ``EmotionDataset`` (the one prompt builder, token pooling
and frame preprocessing), then the model's ``score`` (per-class probabilities) and, in ``generate`` mode or
for the ``reason`` task, ``generate``. So a served clip is never seen differently from a training one.
"""
from __future__ import annotations

import base64
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

import av
import cv2
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from minigpt4 import entry
from minigpt4.config import ConfigError, check_config
from minigpt4.data.corpora import READERS, Corpus, label_set_of, store_path
from minigpt4.data.corpora.demo import VERSION
from minigpt4.data.dataset import EmotionDataset, ExampleSpec
from minigpt4.data.jobs import sample_jobs
from minigpt4.data.pipeline import RunData
from minigpt4.data.prompts import PromptBuilder
from minigpt4.data.run_config import load_config
from minigpt4.data.samples import Sample
from minigpt4.data.splits import select_splits
from minigpt4.evaluation import scoring
from minigpt4.evaluation.explain import explain, explains
from minigpt4.evaluation.predict import predict_with_decision, scored_rows
from minigpt4.extract import (
    ClipFeatures,
    Extractor,
    MediaError,
    build_extractors,
    decode_clip,
    extract_clip,
)
from minigpt4.extract.media import MEDIA_SUFFIXES
from minigpt4.extract.store import extractors_from_store, read_manifest
from minigpt4.features.store import default_cache_dir
from minigpt4.modalities import FEATURE_MODALITIES
from minigpt4.models.build import build_model
from minigpt4.models.model import EmotionLLaMA
from minigpt4.serving.familiarity import familiarity

WAVEFORM_POINTS = 240
"""Envelope bins sent to the page for the waveform plot."""

__all__ = ["Example", "MediaError", "Predictor", "example_clips", "load_predict_config", "with_checkpoint"]

log = logging.getLogger(__name__)


class ClientGone(Exception):
    """The client that asked for a prediction hung up before its turn: its clip is not processed."""


@dataclass(frozen=True)
class Example:
    """A clip the page offers: its name (what clients ask for), the server's file, the true label and the
    transcript when known."""

    name: str
    path: Path
    label: str | None
    transcript: str | None


def load_predict_config(cfg_path: str | Path | None, overrides: Sequence[str]) -> DictConfig:
    """The checkpoint's own resolved config, then the ``eval:`` section of ``cfg_path``, then ``overrides``.

    Model, data and extractor settings must be the ones the checkpoint was trained with, so they come from
    its ``config.yaml``; an evaluation file only contributes how to predict (``eval.mode`` ...). Overrides
    (``model.checkpoint=DIR`` first of all, local weight paths on another machine) apply last.
    """
    cli = OmegaConf.from_dotlist(list(overrides))
    checkpoint = OmegaConf.select(cli, "model.checkpoint")
    if checkpoint is None and cfg_path is not None:
        checkpoint = OmegaConf.select(OmegaConf.load(cfg_path), "model.checkpoint")
    if not checkpoint:
        raise ConfigError("no checkpoint given: pass model.checkpoint=DIR (a folder written by train.py or "
                          "cross_train.py, holding config.yaml and trainable.safetensors)")
    folder = Path(checkpoint)
    if not (folder / "config.yaml").is_file():
        raise FileNotFoundError(f"model.checkpoint={folder}: no config.yaml there; predicting needs a checkpoint "
                                f"folder written by train.py (its config names the extractors and labels)")
    cfg = load_config(folder / "config.yaml")
    if cfg_path is not None:
        eval_section = OmegaConf.select(OmegaConf.load(cfg_path), "eval")
        if eval_section is not None:
            cfg = OmegaConf.merge(cfg, {"eval": eval_section})
    cfg = OmegaConf.merge(cfg, cli, {"model": {"checkpoint": str(folder)}})
    check_config(cfg, str(cfg_path or folder / "config.yaml"))
    return cfg


def checkpoint_extractors(cfg: DictConfig) -> tuple[dict[str, Extractor], dict[str, Any]]:
    """The extractors that made the checkpoint's training features, rebuilt from its feature store's manifest,
    for the feature modalities it reads, and the manifest's decode settings (packed frame size).

    ``text`` is the training pipeline's transcript embedding (MiniLM) when the manifest does not list it.
    A checkpoint trained on per-sample feature folders has no record of how they were made, so it cannot be
    fed media: that is an error saying so, never a guess.
    """
    wanted = [m for m in cfg.data.modalities if m in FEATURE_MODALITIES]
    store = store_path(cfg.data)
    if store is None:
        if any(m != "text" for m in wanted):
            raise ConfigError(
                f"checkpoint {cfg.model.checkpoint} was trained on features from per-sample folders "
                f"(data.feature_store is not set), which record no extractor: predicting from media needs a "
                f"checkpoint trained on a feature store written by datasets/extract_features.py")
        extractors, decode = {}, {}
    else:
        extractors, decode = extractors_from_store(store), read_manifest(store).get("decode", {})
    if "text" in wanted and "text" not in extractors:
        extractors.update(build_extractors({"text": "minilm"}))
    for m in wanted:
        if m not in extractors:
            raise ConfigError(f"checkpoint {cfg.model.checkpoint} reads {m} features but feature store {store} "
                              f"lists no {m} extractor in its manifest")
        if extractors[m].dim != cfg.model.features[m].dim:
            raise ConfigError(f"feature store {store}: the {m} extractor gives width {extractors[m].dim}, "
                              f"the checkpoint expects model.features.{m}.dim={cfg.model.features[m].dim}")
    return {m: extractors[m] for m in wanted}, decode


def frame_as_trained(frame: np.ndarray, decode: dict[str, Any], which: str) -> np.ndarray:
    """The image-modality frame as training read it: packed frames were resized to ``frame_size`` first."""
    size = decode.get("frame_size")
    if decode.get("frames") == which and size:
        return cv2.resize(frame, (int(size), int(size)), interpolation=cv2.INTER_AREA)
    return frame


class _ClipFeatures:
    """Extracted clips seen as a corpus's ``FeatureSource`` (by sample id), the way ``EmotionDataset`` reads
    features."""

    def __init__(self, requests: dict[str, Request]) -> None:
        self.requests = requests

    def get(self, modality: str, sample_id: str) -> np.ndarray:
        return self.requests[sample_id].clip.features[modality]

    def has(self, modality: str, sample_id: str) -> bool:
        return modality in self.requests[sample_id].clip.features

    def describe(self, modality: str, sample_id: str) -> str:
        return f"{modality} features extracted from {self.requests[sample_id].path}"


class _ClipFrame:
    """Extracted clips seen as a corpus's frame source."""

    def __init__(self, requests: dict[str, Request], decode: dict[str, Any], which: str) -> None:
        self.requests = requests
        self.decode = decode
        self.which = which

    def get(self, sample: Sample) -> np.ndarray:
        return frame_as_trained(self.requests[sample.id].clip.frame, self.decode, self.which)


@dataclass(frozen=True)
class Request:
    """One extracted clip waiting for the model."""

    clip_id: str
    path: str
    clip: ClipFeatures
    transcript: str | None
    used: tuple[str, ...]
    """The checkpoint's modalities the clip provides."""

    @property
    def group(self) -> tuple[tuple[str, ...], bool]:
        """Requests with the same group share one dataset (modalities and whether a transcript is given)."""
        return self.used, self.transcript is not None


def png_data_url(image: np.ndarray, max_side: int = 192) -> str:
    """RGB uint8 image -> ``data:image/png;base64,...`` (downscaled to ``max_side``), for the page."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode image as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def waveform_envelope(wave: np.ndarray, points: int = WAVEFORM_POINTS) -> list[list[float]]:
    """[min, max] of each of ``points`` equal segments of the waveform (fewer for very short audio)."""
    segments = np.array_split(np.asarray(wave, np.float32), min(points, max(1, len(wave))))
    return [[round(float(s.min()), 4), round(float(s.max()), 4)] for s in segments if len(s)]


class Predictor:
    """A loaded checkpoint with its extractors; :meth:`predict` is safe to call from several threads."""

    def __init__(self, cfg: DictConfig, model: EmotionLLaMA | None = None) -> None:
        if cfg.data.few_shot:
            raise ConfigError(f"data.few_shot={cfg.data.few_shot}: few-shot examples come from a corpus's training "
                              "split, an evaluation study (eval_emotion.py); serve the checkpoint without it")
        if cfg.data.future_turns:
            log.warning("data.future_turns=%d: this checkpoint was trained reading later turns of the dialogue; "
                        "a served clip has none, so its answers may be less accurate than its evaluation's",
                        cfg.data.future_turns)
        self.cfg = cfg
        self.label_set = label_set_of(cfg.data)
        self.extractors, self.decode = checkpoint_extractors(cfg)
        self.model = (model or build_model(cfg)).eval()
        self.builder = PromptBuilder.for_model(self.model.tokenizer, self.model.slot_tokens, cfg.model)
        # One clip at a time through ``predict``: extractors (OpenCV cascades, CNNs) are not documented
        # thread-safe; ``serving.concurrent`` runs them in worker processes instead.
        self._lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        """What the server answers on ``GET /health``."""
        return {"status": "ok", "checkpoint": checkpoint_name(self.cfg.model.checkpoint),
                "corpus": self.cfg.data.corpus,
                "labels": list(self.label_set.labels), "modalities": list(self.cfg.data.modalities),
                "tasks": list(self.cfg.data.tasks), "mode": self.cfg.eval.mode,
                "extractors": {m: e.name for m, e in self.extractors.items()}}

    def used_modalities(self, clip: ClipFeatures, where: str) -> list[str]:
        """The checkpoint's modalities this clip provides (no audio track: no ``audio``; no transcript: no
        ``text``); the rest are left out as ``data.ablation`` leaves modalities out."""
        used = [m for m in self.cfg.data.modalities
                if (clip.frame is not None if m == "image" else m in clip.features)]
        if not used:
            why = "; ".join(f"{m}: {reason.replace(where + ': ', '')}" for m, reason in clip.failures.items())
            raise MediaError(f"{where}: the clip provides none of the modalities {list(self.cfg.data.modalities)}"
                             + (f" ({why})" if why else ""))
        return used

    def extractor_spec(self) -> dict[str, dict[str, Any]]:
        """``build_extractors`` spec of this checkpoint's extractors (what extraction workers rebuild)."""
        return {m: {"extractor": e.name, **e.config} for m, e in self.extractors.items()}

    def request(self, path: str | Path, clip_id: str | None = None, transcript: str | None = None,
                extract: Callable[[str | Path, str | None, float | None], ClipFeatures] | None = None,
                max_seconds: float | None = None) -> Request:
        """Extract one clip (with ``extract``, e.g. a worker pool's, else here) into a ``Request``.

        Raises ``MediaError`` for a clip that cannot be decoded (``ClipTooLong`` past ``max_seconds``, which
        bounds the time and memory one clip takes) or provides none of the modalities.
        """
        path = Path(path)
        transcript = (transcript or "").strip() or None
        clip = (extract or self._extract_here)(path, transcript, max_seconds)
        return Request(clip_id or path.stem, str(path), clip, transcript, tuple(self.used_modalities(clip, str(path))))

    def _extract_here(self, path: str | Path, transcript: str | None, max_seconds: float | None) -> ClipFeatures:
        return extract_clip(path, self.extractors, transcript, max_seconds=max_seconds)

    def _dataset(self, requests: list[Request]) -> EmotionDataset:
        """Requests of one group as an ``EmotionDataset`` (``emotion`` task, the modalities they provide).

        It is scored as the ``test`` split: a served clip never tunes anything; multi-label thresholds come
        from the checkpoint's ``decision.json``, as in evaluation. Sample ids are positions, as clip ids may
        repeat across requests.
        """
        used, has_transcript = requests[0].group
        spec = replace(ExampleSpec.of(self.cfg.data), modalities=used, tasks=("emotion",),
                       transcript=bool(self.cfg.data.transcript and has_transcript))
        by_id = {str(i): r for i, r in enumerate(requests)}
        samples = [Sample(id=key, labels=(), text=r.transcript, media=r.path) for key, r in by_id.items()]
        corpus = Corpus(self.cfg.data.corpus, self.label_set, samples, _ClipFeatures(by_id), [],
                        _ClipFrame(by_id, self.decode, str(self.cfg.data.frame)))
        return RunData(corpus, {"predict": samples}, self.builder).dataset("predict", self.cfg, self.model, spec=spec)

    @torch.no_grad()
    def _run_model(self, dataset: EmotionDataset) -> list[dict[str, Any]]:
        """Per sample: labels and answer exactly as evaluation predicts them (``eval.mode``), plus the per-class
        probabilities of score mode (label marginals in multi-label mode) and, for checkpoints trained on the
        ``reason`` task or whose LLM reads words, the generated reason (``minigpt4.evaluation.explain``)."""
        cfg = self.cfg
        answers = scoring.candidate_sets(self.label_set, cfg.data.label_mode, cfg.eval.max_labels)
        rows = scored_rows(self.model, dataset, cfg.eval, cfg.run.num_workers, answers, cfg.data.label_mode)
        predictions, _ = predict_with_decision(self.model, dataset, cfg, split="test")
        out = [{"labels": prediction.pred,
                "probabilities": {k: round(float(p), 6) for k, p in zip(self.label_set.labels, marginals)},
                "answer": prediction.text} for prediction, (_, _, marginals) in zip(predictions, rows)]
        if explains(cfg):
            for i, (result, prediction) in enumerate(zip(out, predictions)):
                label = prediction.pred[0] if prediction.pred else prediction.text
                result["reason"] = explain(self.model, dataset, i, label, "reason" in cfg.data.tasks,
                                           cfg.model.max_answer_tokens)
        return out

    def run_requests(self, requests: list[Request]) -> list[dict[str, Any]]:
        """Model results of ``requests`` (in order): one dataset and model pass per group of alike requests."""
        results: list[dict[str, Any] | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.group, []).append(i)
        for members in groups.values():
            for i, result in zip(members, self._run_model(self._dataset([requests[i] for i in members]))):
                results[i] = result
        return results

    def record(self, request: Request, result: dict[str, Any], seconds: float, visuals: bool) -> dict[str, Any]:
        """The prediction record (``predict.py``'s JSON line, ``POST /predict``'s body), with how far the clip's
        features lie from the training split's (``serving.familiarity``); ``visuals`` adds what the page draws:
        the face crop and the frame (PNG data URLs) and the waveform envelope."""
        clip, clip_id = request.clip, request.clip_id
        left_out = {m: clip.failures.get(m, "no video stream" if m == "image" else "not extracted")
                    .replace(request.path, clip_id) for m in self.cfg.data.modalities if m not in request.used}
        measured = {m: clip.features[m] for m in request.used if m in clip.features}
        record: dict[str, Any] = {"id": clip_id, **result, "modalities": list(request.used), "left_out": left_out,
                                  "transcript": request.transcript, "face_found": bool(clip.face_found),
                                  "out_of_distribution": familiarity(self.model.feature_norm, measured),
                                  "seconds": round(seconds, 3)}
        if visuals:
            record["visuals"] = {
                "face_crop": png_data_url(clip.face_crop) if clip.face_crop is not None else None,
                "frame": png_data_url(clip.frame) if clip.frame is not None else None,
                "waveform": waveform_envelope(clip.waveform) if clip.waveform is not None else None,
            }
        return record

    def predict(self, path: str | Path, clip_id: str | None = None, transcript: str | None = None,
                visuals: bool = False, max_seconds: float | None = None,
                gone: Callable[[], bool] | None = None) -> dict[str, Any]:
        """One clip -> the prediction record (``predict.py``'s JSON line, ``POST /predict``'s body), extracted
        here, one clip at a time (``serving.concurrent`` serves many).

        Raises ``MediaError`` for a clip that cannot be decoded (``ClipTooLong`` past ``max_seconds``).
        ``visuals`` adds what the page draws. ``gone`` says the client hung up: checked when the clip's turn
        comes and again before the model runs (``ClientGone``), so nobody waits on abandoned work.
        """
        with self._lock:
            start = time.perf_counter()
            check_client(gone)
            request = self.request(path, clip_id, transcript, max_seconds=max_seconds)
            check_client(gone)
            (result,) = self.run_requests([request])
            return self.record(request, result, time.perf_counter() - start, visuals)


def check_client(gone: Callable[[], bool] | None) -> None:
    """Raise ``ClientGone`` when ``gone`` says the client hung up."""
    if gone is not None and gone():
        raise ClientGone("the client hung up; its clip was dropped")


def checkpoint_name(checkpoint: str | Path) -> str:
    """The checkpoint as ``/health`` shows it: relative to the working folder, else its last two parts (the
    server's absolute paths are not for clients)."""
    shown = Path(entry.shown(checkpoint))
    return str(Path(*shown.parts[-2:]) if shown.is_absolute() else shown)


def with_checkpoint(program: str, cfg_path: str | Path | None, overrides: Sequence[str]) -> tuple[list[str], str]:
    """``overrides`` naming the checkpoint to serve, and a note for ``entry.announce``.

    The checkpoint named on the command line or in ``cfg_path`` is kept; with neither, the newest demo
    checkpoint (the embedded default, see ``minigpt4.entry``); with none at all this stops naming the command
    that trains one. Serving never falls back to untrained weights.
    """

    given = OmegaConf.select(OmegaConf.from_dotlist(list(overrides)), "model.checkpoint")
    if given is None and cfg_path is not None:
        given = OmegaConf.select(OmegaConf.load(cfg_path), "model.checkpoint")
    checkpoint, note = entry.pick_checkpoint(program, cfg_path, given)
    return (list(overrides) if given else [*overrides, f"model.checkpoint={checkpoint}"]), note


def example_clips(cfg: DictConfig, per_label: int = 1) -> list[Example]:
    """Clips the page offers: for the demo corpus, ``per_label`` held-out test utterances of each class, each
    as its own ``.mp4`` (cut from its dialogue recording once, into the cache), with its transcript."""
    if cfg.data.corpus != "demo":
        return []

    result = READERS["demo"](cfg.data)
    test = select_splits(result.samples, seed=cfg.run.seed, val_fraction=cfg.data.val_fraction)["test"]
    chosen = [s for label in result.label_set.labels for s in [x for x in test if x.label == label][:per_label]]
    folder = default_cache_dir() / "demo-examples" / VERSION
    examples = []
    for sample, job in zip(chosen, sample_jobs(chosen)):
        if job.error:
            raise MediaError(f"demo example {sample.id}: {job.error}")
        path = cut_clip(job.path, job.decode, folder / f"{sample.id}.mp4") if job.decode else Path(job.path)
        examples.append(Example(path.name, path, sample.label, sample.text))
    return examples


def cut_clip(source: str | Path, decode: dict[str, Any], out: Path) -> Path:
    """One utterance of a longer recording (``decode``: segment, speaker side, separate audio file, as
    ``decode_clip`` takes them) written as its own H.264 + AAC ``.mp4``, what a user would upload. Written
    once, under a temporary name, then renamed."""



    if out.is_file():
        return out
    clip = decode_clip(source, max_frames=100_000, **decode)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.mp4")
    frames = clip.frames
    with av.open(str(tmp), "w") as container:  # every stream is added before the first packet is muxed
        video = sound = None
        if frames is not None:
            frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # H.264 wants even sides
            video = container.add_stream("h264", rate=max(1, round(len(frames) / max(clip.duration, 1e-3))))
            video.height, video.width = frames.shape[1:3]
            video.pix_fmt = "yuv420p"
        if clip.audio is not None:
            sound = container.add_stream("aac", rate=clip.sample_rate, layout="mono")
        if video is not None:
            for frame in frames:
                container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(video.encode())
        if sound is not None:
            for start in range(0, len(clip.audio), 1024):
                chunk = av.AudioFrame.from_ndarray(clip.audio[None, start:start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = clip.sample_rate, start, Fraction(1, clip.sample_rate)
                container.mux(sound.encode(chunk))
            container.mux(sound.encode())
    os.replace(tmp, out)
    return out


def folder_examples(folder: str | Path) -> list[Example]:
    """Every media file directly in ``folder`` (by suffix), as page examples with no known label."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--examples {folder}: not a folder")
    return [Example(p.name, p, None, None) for p in sorted(folder.iterdir()) if p.suffix.lower() in MEDIA_SUFFIXES]
