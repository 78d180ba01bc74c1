"""Config -> corpus -> split samples -> datasets: the one path training and evaluation both take."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from minigpt4.data.corpora import Corpus, load_corpus
from minigpt4.data.dataset import EmotionDataset, ExampleSpec, class_weights
from minigpt4.data.dialogue import DialogueTokenizer
from minigpt4.data.prompts import PromptBuilder, pick_shots
from minigpt4.data.splits import select_splits
from minigpt4.modalities import SLOTS

log = logging.getLogger(__name__)


class PromptLayout(Protocol):
    """What the data side needs of a model (an ``EmotionLLaMA`` is one): its tokenizer, and how many LLM tokens
    each modality slot takes. Datasets never need the model itself."""

    tokenizer: PreTrainedTokenizerBase
    slot_tokens: Mapping[str, int]


@dataclass
class RunData:
    """A run's corpus, its split samples and the prompt builder: datasets for any split on demand."""

    corpus: Corpus
    splits: dict[str, list]
    builder: PromptBuilder
    dialogue: DialogueTokenizer | None = None
    """Tokeniser of the trainable text encoder's input; None when the text slot reads cached features."""

    def dataset(self, split: str, cfg: DictConfig, model: PromptLayout, train: bool = False,
                spec: ExampleSpec | None = None) -> EmotionDataset:
        """The examples of ``split``, built as ``data`` says, or as ``spec`` says (a study, a served clip)."""
        samples = self.splits[split]
        if not samples:
            raise ValueError(f"corpus {self.corpus.name} has no samples in split {split!r} for this run")
        weights = (class_weights([s.label for s in self.splits["train"]])
                   if train and cfg.run.balance == "loss" else None)
        vision = cfg.model.vision
        return EmotionDataset(
            samples, self.corpus, self.builder, spec or ExampleSpec.of(cfg.data), cfg.run.seed,
            model_slots=[s for s in SLOTS if s in model.slot_tokens],
            image_size=vision.image_size, mean=vision.mean, std=vision.std,
            feature_shapes={k: (m.tokens, m.dim) for k, m in cfg.model.features.items()},
            train=train, weights=weights, dialogue=self.dialogue)


def prepare_data(cfg: DictConfig, model: PromptLayout, modalities: Sequence[str] | None = None) -> RunData:
    """Load the corpus for the modalities the run feeds (``data.modalities``, or every one a study needs;
    zeroed ones need no files) and split it."""
    dims = {k: m.dim for k, m in cfg.model.features.items()}
    encoder = cfg.model.text_encoder
    wanted = list(cfg.data.modalities if modalities is None else modalities)
    corpus = load_corpus(cfg.data, wanted, dims, cached_text=not encoder.enabled)
    for sample_id, why in corpus.skipped:
        log.warning("skipped %s: %s", sample_id, why)
    splits = select_splits(corpus.samples, seed=cfg.run.seed, val_fraction=cfg.data.val_fraction,
                           fold=cfg.run.fold, num_folds=cfg.run.num_folds)
    shots = pick_shots(splits["train"], corpus.label_set, cfg.data.few_shot)
    if shots:
        log.info("few-shot: %d answered training examples before each question: %s", len(shots),
                 "; ".join(f"{s.transcript!r} -> {s.answer}" for s in shots))
    builder = PromptBuilder.for_model(model.tokenizer, dict(model.slot_tokens), cfg.model, shots)
    log.info("corpus %s: %s", corpus.name, ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    dialogue = DialogueTokenizer(encoder.max_length, encoder.name) if encoder.enabled else None
    return RunData(corpus, splits, builder, dialogue)
