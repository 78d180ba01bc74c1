"""A sentence after the label: what a real LLM says about why a sample shows the emotion it predicted.

Checkpoints trained on the ``reason`` task answer their own first reason instruction; any other checkpoint
whose LLM reads words (a local or packaged backbone, not the tiny random one) is asked
``EXPLAIN_INSTRUCTION`` with the predicted label written in. The prompt holds the same slots, transcript and
context as the sample's emotion prompt, so the sentence comes from the clip's words and cues.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from minigpt4.config import Config, LLMConfig
from minigpt4.data.collate import Collator
from minigpt4.data.dataset import EmotionDataset
from minigpt4.data.pipeline import prepare_data
from minigpt4.data.prompts import EXPLAIN_INSTRUCTION
from minigpt4.evaluation.predict import predict_with_decision
from minigpt4.models.build import build_model
from minigpt4.models.model import EmotionLLaMA


def reads_words(llm: LLMConfig) -> bool:
    """True for a pretrained backbone (local folder or packaged GGUF); the tiny random LLaMA cannot read."""
    return llm.path is not None or bool(llm.package)


def explains(cfg: Config) -> bool:
    """Whether predictions of this run carry a ``reason``."""
    return cfg.model.head == "lm" and ("reason" in cfg.data.tasks or reads_words(cfg.model.llm))


def explain(model: EmotionLLaMA, dataset: EmotionDataset, index: int, label: str, trained_on_reason: bool,
            max_new_tokens: int) -> str:
    """The generated reason for sample ``index`` of ``dataset`` whose predicted label is ``label``."""
    sample = dataset.samples[index]
    example = dataset[index]
    instruction = dataset.pools["reason"][0] if trained_on_reason else EXPLAIN_INSTRUCTION.format(label=label)
    context = sample.context[-dataset.spec.context_turns:] if dataset.spec.context_turns else ()
    prompt = dataset.builder.build("reason", instruction, dataset.slots,
                                   sample.text if dataset.spec.transcript else None, context)
    batch = Collator(model.tokenizer.pad_token_id, "prompt")([{**example, "ids": prompt.ids, "slots": prompt.slots}])
    return model.generate(batch, max_new_tokens=max_new_tokens)[0]


def held_out_sentence(cfg: DictConfig, final: Path) -> dict[str, str]:
    """For the first held-out sample (test split, else validation) of a finished run: its transcript, gold
    label, the label the ``final`` checkpoint predicts and the reason it generates. ``train.py`` prints it."""
    cfg = OmegaConf.merge(cfg, {"model": {"checkpoint": str(final)}, "eval": {"max_samples": 1}})
    model = build_model(cfg).eval()
    data = prepare_data(cfg, model)
    split = "test" if data.splits.get("test") else "val"
    dataset = data.dataset(split, cfg, model)
    (prediction,), _ = predict_with_decision(model, dataset, cfg, split=split)
    sample = dataset.samples[0]
    return {"sample": sample.id, "transcript": sample.text or "", "gold": sample.label,
            "predicted": prediction.pred[0],
            "reason": explain(model, dataset, 0, prediction.pred[0], "reason" in cfg.data.tasks,
                              cfg.model.max_answer_tokens)}
