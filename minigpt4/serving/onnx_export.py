"""ONNX export of the text classifier path: MiniLM (with its LoRA adapters or tuned layers) + projector + head.

The graph takes the text encoder's ``input_ids``, ``attention_mask`` and ``token_type_ids`` (from
``dialogue.DialogueTokenizer``, batch and sequence axes dynamic) and returns the head's logits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from minigpt4.models.model import EmotionLLaMA

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TextClassifierGraph(nn.Module):
    """The model's own ``classifier_logits`` behind plain tensor inputs, as ONNX needs."""

    def __init__(self, model: EmotionLLaMA) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        text = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model.classifier_logits({"text_input": text})


def check_exportable(cfg: DictConfig, model: EmotionLLaMA) -> None:
    """Only the text-only classifier path has a fixed graph; anything else is a clear error."""
    problems = []
    if model.head is None:
        problems.append("model.head must be classifier (the LLM head generates text)")
    if model.text_encoder is None:
        problems.append("model.text_encoder.enabled must be true (cached features are not part of a graph)")
    if list(cfg.data.modalities) != ["text"]:
        problems.append(f"data.modalities must be [text], got {list(cfg.data.modalities)}")
    if problems:
        raise ValueError("ONNX export covers the text classifier path only: " + "; ".join(problems))


def export_onnx(model: EmotionLLaMA, example: Mapping[str, torch.Tensor], output: str | Path,
                opset: int = 17) -> Path:
    """Trace the graph on ``example`` (one padded text batch) and write ``output`` with dynamic axes."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    graph = TextClassifierGraph(model).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes["logits"] = {0: "batch"}
    # Traced on a batch with padding: transformers skips the attention mask when nothing is padded, and a
    # trace of that branch would ignore the mask of every later batch.
    padded = tuple(torch.nn.functional.pad(example[name], (0, 1)) for name in INPUTS)
    with torch.no_grad():
        torch.onnx.export(graph, padded, str(output), input_names=list(INPUTS),
                          output_names=["logits"], dynamic_axes=axes, opset_version=opset, dynamo=False)
    return output


def onnx_session(path: str | Path, threads: int = 0):
    """An onnxruntime CPU session (``threads`` 0: onnxruntime's default)."""
    import onnxruntime as ort  # optional: only ONNX export and its check need it

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, text: Mapping[str, torch.Tensor]) -> np.ndarray:
    return session.run(["logits"], {name: text[name].numpy() for name in INPUTS})[0]
