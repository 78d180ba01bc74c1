"""Studies of one checkpoint: modality ablation and prompt sensitivity, each a table of per-row reports scored
exactly as a plain evaluation is."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

from minigpt4.data.dataset import ExampleSpec
from minigpt4.data.pipeline import RunData
from minigpt4.evaluation.evaluate import evaluate_dataset
from minigpt4.evaluation.report import HEADLINE, mean_std, write_table
from minigpt4.models.model import EmotionLLaMA
from minigpt4.runtime import dist


def _row(metrics: dict) -> dict[str, Any]:
    return {k: metrics[k] for k in HEADLINE if k in metrics}


def _columns(metrics: dict) -> list[str]:
    return [k for k in HEADLINE if k in metrics]


def modality_ablation(model: EmotionLLaMA, data: RunData, cfg: DictConfig, subsets: Sequence[Sequence[str]],
                      out_dir: Path) -> list[dict]:
    """One checkpoint evaluated under several modality subsets -> ``ablation.md`` / ``ablation.json``.

    Each subset rebuilds the dataset with its modalities instead of ``data.modalities`` (how a left-out modality disappears
    follows ``data.ablation``); each subset's full report goes to ``ablation/<a+b>/``.
    """
    rows: list[dict] = []
    columns: list[str] = []
    for subset in subsets:
        name = "+".join(subset)
        dataset = data.dataset(cfg.eval.split, cfg, model, spec=replace(ExampleSpec.of(cfg.data), modalities=tuple(subset)))
        metrics = evaluate_dataset(model, dataset, cfg, out_dir / "ablation" / name, extra={"ablation": name})
        rows.append({"modalities": name, **_row(metrics)})
        columns = ["modalities", *_columns(metrics)]
    if dist.is_main():
        write_table(out_dir, "ablation", rows, columns)
    return rows


def prompt_sensitivity(model: EmotionLLaMA, data: RunData, cfg: DictConfig, count: int, out_dir: Path) -> list[dict]:
    """The same checkpoint over the first ``count`` instructions of the pool -> ``prompts.md`` / ``prompts.json``
    with a closing mean ± std row (sample std over instructions); each run's report goes to ``prompts/<i>/``."""
    pool = data.dataset(cfg.eval.split, cfg, model).pools[cfg.data.tasks[0]]
    if count > len(pool):
        raise ValueError(f"eval.prompts={count} exceeds the {cfg.data.tasks[0]} instruction pool "
                         f"({len(pool)} instructions)")
    rows: list[dict] = []
    for i in range(count):
        dataset = data.dataset(cfg.eval.split, cfg, model, spec=replace(ExampleSpec.of(cfg.data), instruction=i))
        metrics = evaluate_dataset(model, dataset, cfg, out_dir / "prompts" / str(i), extra={"prompt": pool[i]})
        rows.append({"instruction": i, "prompt": pool[i], **_row(metrics)})
    keys = [k for k in rows[0] if k not in ("instruction", "prompt")]
    summary = {"instruction": "mean ± std", "prompt": "", **{k: mean_std([r[k] for r in rows]) for k in keys}}
    if dist.is_main():
        write_table(out_dir, "prompts", [*rows, summary], ["instruction", "prompt", *keys])
    return rows
