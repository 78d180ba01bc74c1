"""``export_hf.py``'s work: build the checkpoint's model, write its Hugging Face export into a staging
folder, load that back through the project's loader and compare label scores with the checkpoint's, then
publish the folder (renamed into place: a failed check leaves no export behind). One model is in memory at a
time: the checkpoint's is merged into the export in place and dropped before the export is loaded back."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from minigpt4.data.batch import Batch
from minigpt4.data.collate import Collator
from minigpt4.data.corpora import label_set_of
from minigpt4.data.pipeline import prepare_data
from minigpt4.evaluation.scoring import candidate_sets
from minigpt4.models.build import build_model
from minigpt4.models.checkpoint import publish, stage
from minigpt4.models.hf_folder import write_export
from minigpt4.models.model import EmotionLLaMA
from minigpt4.runtime import output_folder

TOOL = "export_hf.py"
Probe = tuple[Batch, list[list[int]]]


class ExportError(RuntimeError):
    """The export cannot be written where asked, or does not reproduce the checkpoint."""


def probe(model: EmotionLLaMA, cfg: DictConfig, samples: int) -> Probe:
    """The parity check's inputs: a prompt batch of the first ``samples`` samples of the first non-empty split
    (test, val, train) and the candidate answers score mode ranks."""
    data = prepare_data(cfg, model)
    split = next(s for s in ("test", "val", "train") if data.splits.get(s))
    dataset = data.dataset(split, cfg, model)
    batch = Collator(model.tokenizer.pad_token_id, "prompt")([dataset[i] for i in range(min(samples, len(dataset)))])
    label_set = data.corpus.label_set
    answers = candidate_sets(label_set, cfg.data.label_mode, cfg.eval.max_labels)
    return batch, [data.builder.encode_answer(label_set.format_answer(a)) for a in answers]


def label_scores(model: EmotionLLaMA, inputs: Probe) -> torch.Tensor:
    """Log-likelihood of every candidate answer after every prompt: ``[samples, candidates]``."""
    with torch.no_grad():
        return model.score(*inputs).float()


def export(cfg: DictConfig, out: Path, max_shard_size: str = "5GB", samples: int = 4, tolerance: float = 1e-4,
           overwrite: bool = False) -> float | None:
    """Write the export of ``cfg.model.checkpoint`` to ``out``; the largest label-score gap between export and
    checkpoint (None when ``samples`` is 0 and the check was skipped)."""
    if cfg.model.head != "lm":
        raise ExportError("model.head=classifier has no LLM to export as a causal LM: use export_onnx.py")
    if output_folder.check(out, TOOL) is not None and not overwrite:
        raise ExportError(f"{out} holds an earlier export: rerun with --overwrite to replace it")
    model = build_model(cfg).eval()
    inputs = probe(model, cfg, samples) if samples > 0 else None
    reference = label_scores(model, inputs) if inputs else None
    tmp = stage(out)
    write_export(model, cfg, label_set_of(cfg.data).labels, tmp, max_shard_size)
    output_folder.mark(tmp, TOOL, {"checkpoint": str(cfg.model.checkpoint)})
    del model
    gap = None
    if inputs:
        loaded = build_model(OmegaConf.merge(cfg, {"model": {"checkpoint": str(tmp)}})).eval()
        gap = float((label_scores(loaded, inputs) - reference).abs().max())
        if not gap <= tolerance:
            shutil.rmtree(tmp)
            raise ExportError(f"the exported model's label scores differ from the checkpoint's by {gap:.2e} "
                              f"(> --tolerance {tolerance:g}) on {len(reference)} samples; nothing was written")
    publish(tmp, Path(out))
    return gap
