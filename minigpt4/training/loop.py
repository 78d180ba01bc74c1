"""``fit(cfg)``: the training loop, readable top to bottom.

One optimizer step = ``run.grad_accum`` micro-batches, then one clipped optimizer and one LR step (linear
warmup + cosine to ``min_lr_ratio * lr``). Plain / torchrun + DDP and DeepSpeed ZeRO (``run.deepspeed``)
differ only inside the engine (:mod:`minigpt4.training.engine`).

Reproducibility: the data order is a function of (seed, epoch) only, the position in the epoch is skipped on
resume, and optimizer, scheduler and every rank's RNG states travel in the checkpoint, so an interrupted and
resumed run ends with the same parameters as an uninterrupted one.

Safety: the run folder is locked (one trainer at a time), records the config's fingerprint (a different
config, or an existing run without ``run.resume=true``, is refused unless ``overwrite``), and SIGTERM (SLURM,
``timeout``) ends the run after the current step with a checkpoint to resume from.

Run folder (``run.output_dir``)::

    config.yaml  train.log  metrics.csv  tb/        resolved config, log, long-format metrics, TensorBoard
    created_by.json  run.lock                       config fingerprint; the running trainer's pid and host
    checkpoints/step_<N>/                           last ``keep_last`` + the best, with resume state
    final/                                          best-on-val (else last) weights + config + tokenizer
"""
from __future__ import annotations

import itertools
import logging
import random
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from omegaconf import DictConfig
from safetensors.torch import save as save_safetensors
from torch.utils.data import Sampler
from tqdm import tqdm

from minigpt4.config import ConfigError, RunConfig, require_complete, save_config
from minigpt4.data.batch import Batch
from minigpt4.data.collate import Collator
from minigpt4.data.dataset import EmotionDataset
from minigpt4.data.pipeline import prepare_data
from minigpt4.evaluation.evaluate import evaluate_dataset
from minigpt4.models import checkpoint as ckpt
from minigpt4.models.build import build_model
from minigpt4.models.feature_norms import set_feature_norms
from minigpt4.models.model import EmotionLLaMA
from minigpt4.runtime import dist, run_folder
from minigpt4.runtime.run_lock import RunLock
from minigpt4.training.engine import Engine, make_engine
from minigpt4.training.monitor import MetricsLog, StopOnSignal, Throughput
from minigpt4.training.sampling import epoch_loader, make_sampler
from minigpt4.training.validation import Progress, choose_score_decision, run_validation, tune_head_thresholds

log = logging.getLogger(__name__)


class TrainingInterrupted(RuntimeError):
    """SIGTERM or Ctrl-C stopped the run after a step; a checkpoint to resume from was written.
    ``exit_status``: 128 + the signal, as if it had ended the process (130 Ctrl-C, 143 SIGTERM)."""

    def __init__(self, message: str, exit_status: int = 143) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainData:
    """The model and what it is trained and validated on, with the step counts they imply."""

    model: EmotionLLaMA
    train_set: EmotionDataset
    val_set: EmotionDataset | None
    sampler: Sampler[int]
    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int


def fit(cfg: DictConfig, overwrite: bool = False) -> Path:
    """Train as configured and return ``<output_dir>/final`` (the checkpoint other entry points load).

    ``overwrite`` empties an earlier run folder of ``train.py`` first (never a folder it did not create).
    """
    require_complete(cfg)
    info = dist.init_distributed(force_group=bool(cfg.run.deepspeed))
    out = Path(cfg.run.output_dir)
    lock = RunLock(out)
    try:
        refused = None
        if info.is_main:
            try:
                lock.acquire()
                run_folder.claim_run(cfg, overwrite)
            except RuntimeError as err:
                refused = err
        refused = dist.broadcast_object(refused)
        if refused is not None:
            raise refused
        dist.setup_logging(out / "train.log", info.is_main)
        with StopOnSignal() as stop:
            return _fit(cfg, info, out, stop)
    finally:
        lock.release()
        dist.cleanup()


def _fit(cfg: DictConfig, info: dist.DistInfo, out: Path, stop: StopOnSignal) -> Path:
    run = cfg.run
    if info.is_main:
        save_config(cfg, out / "config.yaml")
    data = prepare_training(cfg, info)
    seed_everything(run.seed + info.rank)  # training randomness (dropout) differs per rank, reproducibly
    engine = make_engine(data.model, cfg, info, data.total_steps)
    ckpt_dir = out / "checkpoints"
    progress = resume(run.resume, info, data, engine, ckpt_dir)
    metrics_log = MetricsLog(out, progress.step) if info.is_main else None
    throughput = Throughput()
    bar = tqdm(total=data.total_steps, initial=progress.step, desc="train", disable=not info.is_main,
               dynamic_ncols=True)
    data.model.train()
    for epoch, micro_batches in optimizer_steps(data, run, progress.step):
        for micro, batch in enumerate(micro_batches):
            throughput.add(engine.backward(batch, last=micro == run.grad_accum - 1), batch)
        grad_norm = engine.step()
        progress.step += 1
        step = progress.step
        bar.update(1)
        last = step == data.total_steps
        if step % run.log_every == 0 or last:
            values = throughput.drain(info) | {"train/lr": engine.lr(), "train/grad_norm": grad_norm}
            if metrics_log is not None:
                metrics_log.write(step, epoch, values)
                bar.set_postfix(loss=f"{values['train/loss']:.4f}", lr=f"{values['train/lr']:.2e}")
        improved = False
        if data.val_set is not None and ((run.eval_every and step % run.eval_every == 0) or last):
            improved = run_validation(data.model, data.val_set, cfg, info, engine, progress, metrics_log, epoch)
        stopping = stop.requested(info)
        averaged = run.average_last and averaged_step(step, run, data.total_steps)
        if stopping or last or improved or averaged or (run.save_every and step % run.save_every == 0):
            save_checkpoint(ckpt_dir / f"step_{step}", data, cfg, info, engine, progress)
        if stopping:
            log.warning("stopped by %s after step %d; checkpoint %s", stop.name, step, ckpt_dir / f"step_{step}")
            raise TrainingInterrupted(f"stopped by {stop.name} after step {step} of {data.total_steps}: checkpoint "
                                      f"{ckpt_dir / f'step_{step}'}; rerun with run.resume=true to continue",
                                      128 + int(stop.received or signal.SIGTERM))
    bar.close()
    if metrics_log is not None:
        metrics_log.close()
    return publish_final(out, ckpt_dir, progress, data, cfg, info)


def prepare_training(cfg: DictConfig, info: dist.DistInfo) -> TrainData:
    """Build the seeded model and the datasets; fail early when not one optimizer step fits."""
    run = cfg.run
    seed_everything(run.seed)
    model = build_model(cfg).to(info.device)
    with dist.main_first():
        data = prepare_data(cfg, model)
    if cfg.model.standardize_features and not (cfg.model.checkpoint or cfg.model.upstream_checkpoint):
        # A trainable text encoder fills the text slot itself: no cached text features to standardise.
        cached = [m for m in cfg.data.modalities if m in cfg.model.features
                  and not (m == "text" and cfg.model.text_encoder.enabled)]
        set_feature_norms(model, data.corpus.features, [s.id for s in data.splits["train"]], cached)
    train_set = data.dataset("train", cfg, model, train=True)
    val_set = data.dataset("val", cfg, model) if data.splits["val"] else None
    if val_set is None:
        log.warning("no validation split: final/ will be the last checkpoint")
    sampler = make_sampler(train_set, run, info)
    micro_per_epoch = len(sampler) // run.batch_size
    steps_per_epoch = micro_per_epoch // run.grad_accum
    if steps_per_epoch == 0:
        raise ConfigError(f"run.batch_size={run.batch_size} x run.grad_accum={run.grad_accum} x {info.world_size} "
                          f"process(es) exceeds the {len(train_set)} training samples: not one optimizer step fits")
    return TrainData(model, train_set, val_set, sampler, micro_per_epoch, steps_per_epoch,
                     run.max_steps or run.epochs * steps_per_epoch)


def resume(enabled: bool, info: dist.DistInfo, data: TrainData, engine: Engine, ckpt_dir: Path) -> Progress:
    """With ``run.resume`` (``enabled``), load the newest checkpoint (weights, engine, RNG); a fresh
    :class:`Progress` otherwise."""
    saved = ckpt.step_folders(ckpt_dir) if enabled else []
    if not saved:
        if enabled:
            log.info("run.resume: no checkpoint under %s, starting from scratch", ckpt_dir)
        return Progress()
    folder = saved[-1]
    log.info("resuming from %s", folder)
    ckpt.load_trainable(data.model, folder)
    state = ckpt.load_state(folder)
    if state["world_size"] != info.world_size or state["micro_per_epoch"] != data.micro_per_epoch:
        raise ValueError(f"{folder}: saved with {state['world_size']} process(es) and {state['micro_per_epoch']} "
                         f"micro-batches per epoch; this run has {info.world_size} and {data.micro_per_epoch}: the "
                         f"data order would differ (same batch size and world needed)")
    engine.load(folder, state)
    ckpt.set_rng_state(state["rng"][info.rank])
    return Progress(state["step"], state["best"])


def optimizer_steps(data: TrainData, run: RunConfig, start: int) -> Iterator[tuple[int, Iterator[Batch]]]:
    """(epoch, the ``run.grad_accum`` micro-batches of one optimizer step) from step ``start`` to the last."""
    accum = run.grad_accum
    collate = Collator(data.model.tokenizer.pad_token_id, "train")
    step = start
    while step < data.total_steps:
        epoch = step // data.steps_per_epoch
        skip = (step % data.steps_per_epoch) * accum
        batches = iter(epoch_loader(data.train_set, data.sampler, epoch, skip, run, collate))
        for _ in range(min(data.steps_per_epoch - step % data.steps_per_epoch, data.total_steps - step)):
            yield epoch, itertools.islice(batches, accum)
            step += 1


def save_checkpoint(folder: Path, data: TrainData, cfg: DictConfig, info: dist.DistInfo, engine: Engine,
                    progress: Progress) -> None:
    """Every rank joins (RNG gathering, DeepSpeed's collective save); rank 0 writes, renames and prunes."""
    step, per_epoch = progress.step, data.steps_per_epoch
    state = {"step": step, "epoch": step // per_epoch, "position": (step % per_epoch) * cfg.run.grad_accum,
             "micro_per_epoch": data.micro_per_epoch, "world_size": info.world_size,
             "rng": dist.all_gather_object(ckpt.rng_state()), "best": progress.best}
    tmp = ckpt.stage(folder) if info.is_main else ckpt.staging_path(folder)
    dist.barrier()
    state |= engine.save(tmp)
    dist.barrier()
    if info.is_main:
        ckpt.write_checkpoint(folder, data.model, cfg, state, tmp=tmp)
        best = progress.best["step"]
        keep = [folder.parent / f"step_{best}"] if best else []
        if cfg.run.average_last:
            keep += averaged_folders(folder.parent, cfg.run, data.total_steps)
        ckpt.prune(folder.parent, cfg.run.keep_last, keep=keep)
    dist.barrier()


def averaged_step(step: int, run: RunConfig, total_steps: int) -> bool:
    """Whether ``run.average_last`` counts the checkpoint of ``step``: every ``average_every`` steps (else every
    ``eval_every``, when set) and the last."""
    every = run.average_every or run.eval_every
    return step == total_steps or bool(every and step % every == 0)


def averaged_folders(ckpt_dir: Path, run: RunConfig, total_steps: int) -> list[Path]:
    """The newest ``run.average_last`` checkpoints that ``run.average_last`` counts (fewer when the run took
    fewer: with neither ``average_every`` nor ``eval_every`` only the last; the log line of ``final/`` names
    them)."""
    counted = [f for f in ckpt.step_folders(ckpt_dir) if averaged_step(int(f.name[5:]), run, total_steps)]
    return counted[-run.average_last:]


def publish_final(out: Path, ckpt_dir: Path, progress: Progress, data: TrainData, cfg: DictConfig,
                  info: dist.DistInfo) -> Path:
    """Export the best-on-validation checkpoint (else the last), or with ``run.average_last`` the mean of the
    last checkpoints, as ``final/`` (with the multi-label decision)."""
    best = progress.best
    final = out / "final"
    if cfg.run.average_last:
        publish_average(final, averaged_folders(ckpt_dir, cfg.run, data.total_steps), data, cfg, info)
    elif info.is_main:
        chosen = ckpt_dir / f"step_{best['step'] if best['step'] is not None else progress.step}"
        ckpt.export_final(chosen, final)
        log.info("final checkpoint %s (from %s%s)", final, chosen.name,
                 f", val {cfg.run.best_metric} {best['value']:.4f}" if best["value"] is not None else "")
    dist.barrier()
    if data.val_set is not None and cfg.data.label_mode == "multi" and data.model.head is None:
        # (a classifier head's per-class thresholds were tuned at validation and travel in its weights)
        choose_score_decision(data.model, final, data.val_set, cfg, info)
    return final


def publish_average(final: Path, folders: list[Path], data: TrainData, cfg: DictConfig, info: dist.DistInfo) -> None:
    """``final/`` = the mean of ``folders``' weights, validated once (a multi-label classifier's thresholds are
    tuned again for the mean weights)."""
    staged = final.parent / ".average.safetensors"
    if info.is_main:
        ckpt.write_bytes(staged, save_safetensors(ckpt.average_weights(folders)))
    dist.barrier()
    model = data.model
    ckpt.load_trainable(model, staged)
    summary = ""
    if data.val_set is not None:
        if model.head is not None and model.head.multi_label:
            tune_head_thresholds(model, data.val_set, cfg.eval.batch_size, cfg.run.num_workers, info)
        metrics = evaluate_dataset(model, data.val_set, cfg, split="val")
        summary = f", val {cfg.run.best_metric} {float(metrics[cfg.run.best_metric]):.4f}"
    if info.is_main:
        ckpt.write_checkpoint(final, model, cfg)
        staged.unlink()
        log.info("final checkpoint %s (mean of %s%s)", final, ", ".join(f.name for f in folders), summary)
