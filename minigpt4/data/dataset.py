"""Samples -> examples: prompt tokens with slot positions, answer tokens, feature arrays and the frame.

Everything per-sample (file reads, tokenisation, resizing) happens here, in data-loader workers, so the
model's forward only swaps embeddings.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from torch.utils.data import Dataset

from minigpt4 import modalities as registry
from minigpt4.config import DataConfig
from minigpt4.data.batch import Example
from minigpt4.data.corpora import Corpus
from minigpt4.data.dialogue import DialogueTokenizer
from minigpt4.data.prompts import (
    REASON_POOL,
    PromptBuilder,
    choose_instruction,
    emotion_pool,
    normalize_caption,
)
from minigpt4.data.samples import Sample


def present_slots(modalities: Sequence[str], ablation: str, model_slots: Sequence[str]) -> tuple[list[str], list[str]]:
    """(slots in the prompt, slots fed zeros): ``drop`` removes left-out modalities, ``zero`` zeroes them."""
    wanted = registry.with_followers(modalities)
    if ablation == "zero":
        return [s for s in model_slots], [s for s in model_slots if s not in wanted]
    return [s for s in model_slots if s in wanted], []


def class_weights(primary: Sequence[str]) -> dict[str, float]:
    """Inverse-frequency weights of primary labels, normalised to mean 1 over the classes present; used by
    both ``balance: loss`` (answer-loss weights) and ``balance: sampler`` (sampling weights)."""
    counts = Counter(primary)
    return {c: len(primary) / (len(counts) * n) for c, n in counts.items()}


@dataclass(frozen=True)
class ExampleSpec:
    """How samples become examples: the ``data`` settings a dataset reads, as plain values. A study (one
    modality subset, one instruction) or a served clip (its own modalities, the emotion task) replaces some
    with :func:`dataclasses.replace`; the config itself is never modified."""

    modalities: tuple[str, ...]
    ablation: str = "drop"
    tasks: tuple[str, ...] = ("emotion",)
    instruction: int | None = None
    transcript: bool = True
    context_turns: int = 0
    future_turns: int = 0
    label_mode: str = "single"
    prompt_pool: tuple[str, ...] | None = None

    @classmethod
    def of(cls, data: DataConfig) -> ExampleSpec:
        return cls(tuple(data.modalities), str(data.ablation), tuple(map(str, data.tasks)), data.instruction,
                   data.transcript, data.context_turns, data.future_turns, str(data.label_mode),
                   None if data.prompt_pool is None else tuple(data.prompt_pool))


class EmotionDataset(Dataset):
    """One example per sample: ``ids``/``slots`` (prompt), ``answer`` (ids + EOS), ``target`` (label vector for
    the classifier head), ``features``, ``image`` and, with a trainable text encoder, ``text_input``."""

    def __init__(self, samples: Sequence[Sample], corpus: Corpus, builder: PromptBuilder, spec: ExampleSpec,
                 seed: int, model_slots: Sequence[str], image_size: int, mean: Sequence[float], std: Sequence[float],
                 feature_shapes: dict[str, tuple[int, int]], train: bool, weights: dict[str, float] | None = None,
                 dialogue: DialogueTokenizer | None = None) -> None:
        self.samples = list(samples)
        self.corpus = corpus
        self.builder = builder
        self.spec = spec
        self.seed = seed
        self.train = train
        self.epoch = 0
        self.slots, self.zeroed = present_slots(spec.modalities, spec.ablation, model_slots)
        self.image_size = image_size
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)
        self.feature_shapes = feature_shapes
        self.weights = weights
        self.dialogue = dialogue if "text" in self.slots and "text" not in self.zeroed else None
        self.label_mode = spec.label_mode
        self.pools = {"emotion": emotion_pool(corpus.label_set, spec.label_mode, spec.prompt_pool),
                      "reason": list(REASON_POOL)}

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Task and instruction draws depend on (seed, epoch, index): reproducible under any worker count."""
        self.epoch = epoch

    def answer_text(self, sample: Sample, task: str) -> str:
        if task == "reason":
            if not sample.reason:
                raise ValueError(f"sample {sample.id}: the reason task needs a reason text, the corpus gave none")
            return normalize_caption(sample.reason)
        labels = sample.labels if self.label_mode == "multi" else sample.labels[:1]
        return self.corpus.label_set.format_answer(labels)

    def _features(self, sample: Sample) -> dict[str, np.ndarray]:
        out = {}
        for name, (tokens, dim) in self.feature_shapes.items():
            if name not in self.slots or (name == "text" and self.dialogue is not None):
                continue
            if name in self.zeroed:
                out[name] = np.zeros((tokens, dim), np.float32)
            else:
                out[name] = pool_tokens(self.corpus.features.get(name, sample.id), tokens, sample.id, name)
        return out

    def _image(self, sample: Sample) -> np.ndarray | None:
        if "image" not in self.slots:
            return None
        if "image" in self.zeroed:
            return np.zeros((3, self.image_size, self.image_size), np.float32)
        frame = self.corpus.frames.get(sample)
        frame = cv2.resize(frame, (self.image_size, self.image_size), interpolation=cv2.INTER_CUBIC)
        return ((frame.transpose(2, 0, 1).astype(np.float32) / 255.0) - self.mean) / self.std

    def __getitem__(self, index: int) -> Example:
        sample = self.samples[index]
        rng = random.Random(f"{self.seed}-{self.epoch}-{index}") if self.train else None
        task = rng.choice(list(self.spec.tasks)) if rng is not None else self.spec.tasks[0]
        instruction = choose_instruction(self.pools[task], self.spec.instruction, rng)
        transcript = None
        if self.spec.transcript:
            if not sample.text:
                raise ValueError(f"sample {sample.id}: data.transcript is true but the sample has no transcript")
            transcript = sample.text
        context = self._context(sample)
        prompt = self.builder.build(task, instruction, self.slots, transcript, context)
        labels = sample.labels if self.label_mode == "multi" else sample.labels[:1]
        target = np.zeros(len(self.corpus.label_set.labels), np.float32)
        target[[self.corpus.label_set.labels.index(x) for x in labels]] = 1.0
        return {
            "id": sample.id,
            "gold": list(sample.labels),
            "ids": prompt.ids,
            "slots": prompt.slots,
            "answer": self.builder.encode_answer(self.answer_text(sample, task)),
            "features": self._features(sample),
            "image": self._image(sample),
            "weight": self.weights.get(sample.label, 1.0) if self.weights else None,
            "target": target,
            "text_input": self._text_input(sample, context),
        }

    def text_lengths(self) -> list[int]:
        """Text-encoder tokens of every sample, in order (what ``run.group_by_length`` groups by)."""
        if self.dialogue is None:
            raise ValueError("run.group_by_length groups text-encoder inputs: it needs model.text_encoder.enabled "
                             "and the text modality fed (data.modalities)")
        return [len(self._text_input(s, self._context(s)).input_ids) for s in self.samples]

    def _context(self, sample: Sample) -> tuple[str, ...]:
        """The earlier turns a sample's example quotes (``data.context_turns`` newest)."""
        return sample.context[-self.spec.context_turns:] if self.spec.context_turns else ()

    def _text_input(self, sample: Sample, context: Sequence[str]):
        """MiniLM ids of context + utterance (+ later turns) for the trainable text slot (None when the slot reads
        features)."""
        if self.dialogue is None:
            return None
        if not sample.text:
            raise ValueError(f"sample {sample.id}: the text encoder needs a transcript, the corpus gave none")
        return self.dialogue.encode(sample.text, sample.speaker, context, sample.following[:self.spec.future_turns])


def pool_tokens(arr: np.ndarray, tokens: int, sample_id: str, name: str) -> np.ndarray:
    """[T, D] -> [tokens, D]: average-pool longer sequences to ``tokens`` segments; shorter ones are an error."""
    if arr.shape[0] == tokens:
        return arr
    if arr.shape[0] < tokens:
        raise ValueError(f"sample {sample_id}: {name} features have {arr.shape[0]} time steps, model.features."
                         f"{name}.tokens={tokens} needs at least that many")
    return np.stack([seg.mean(axis=0) for seg in np.array_split(arr, tokens, axis=0)]).astype(np.float32)
