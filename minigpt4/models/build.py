"""``build_model``: the whole model a config names, seeded, with its checkpoint (or upstream's) loaded."""
from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from minigpt4.data.corpora import label_set_of
from minigpt4.models import hf_folder
from minigpt4.models.assemble import assemble, build_llm, build_tokenizer
from minigpt4.models.checkpoint import check_model_config, load_trainable
from minigpt4.models.classifier import ClassifierHead
from minigpt4.models.convert import load_upstream_checkpoint
from minigpt4.models.model import EmotionLLaMA
from minigpt4.models.vision import FrameEncoder

log = logging.getLogger(__name__)


def build_head(cfg: DictConfig) -> ClassifierHead:
    """The classifier head, one output per label of the corpus's label setup."""

    head = cfg.model.classifier
    return ClassifierHead(head.width, head.hidden, len(label_set_of(cfg.data).labels), head.dropout,
                          multi_label=cfg.data.label_mode == "multi")


def build_model(cfg: DictConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> EmotionLLaMA:
    """Everything the config names, seeded, with the checkpoint it names loaded and coverage-checked."""
    model_cfg = cfg.model
    if model_cfg.checkpoint:
        check_model_config(model_cfg, model_cfg.checkpoint)
    exported = bool(model_cfg.checkpoint) and hf_folder.is_export(model_cfg.checkpoint)
    if exported:  # an export_hf.py folder: merged backbone from it, every other weight from its parts file
        model_cfg = hf_folder.loading_config(model_cfg, model_cfg.checkpoint)
    torch.manual_seed(model_cfg.seed)
    tokenizer = tokenizer or build_tokenizer(model_cfg)
    classifier = model_cfg.head == "classifier"
    llm = None if classifier else build_llm(model_cfg, tokenizer)
    vision = None if model_cfg.vision.kind == "none" else FrameEncoder(model_cfg.vision, load_weights=not exported)
    model = assemble(model_cfg, llm, tokenizer, vision, build_head(cfg) if classifier else None)
    if model_cfg.upstream_checkpoint:
        load_upstream_checkpoint(model, model_cfg.upstream_checkpoint)
    if exported:
        hf_folder.load_parts(model, model_cfg.checkpoint)
    elif model_cfg.checkpoint:
        load_trainable(model, model_cfg.checkpoint)
    log.info(model.trainable_summary())
    return model
