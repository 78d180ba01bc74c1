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

import contextlib
import csv
import itertools
import logging
import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as tdist
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from minigpt4.models import checkpoint as ckpt
from minigpt4.runtime import dist
from minigpt4.runtime import run_folder
from minigpt4.models.build import build_model
from minigpt4.data.collate import Collator
from minigpt4.config import ConfigError, require_complete, save_config
from minigpt4.data.dataset import EmotionDataset, class_weights
from minigpt4.training.engine import Engine, make_engine
from minigpt4.models.model import EmotionLLaMA
from minigpt4.data.pipeline import prepare_data
from minigpt4.models.feature_norms import set_feature_norms
from minigpt4.runtime.run_lock import RunLock
from minigpt4.evaluation.evaluate import class_probabilities
from minigpt4.models.classifier import tune_thresholds
from minigpt4.evaluation.evaluate import evaluate_dataset
from minigpt4.evaluation.evaluate import predict_with_decision
from minigpt4.evaluation.scoring import save_decision as write_decision

log = logging.getLogger(__name__)


class TrainingInterrupted(RuntimeError):
    """SIGTERM stopped the run after a step; a checkpoint to resume from was written."""

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class WeightedShardSampler(Sampler[int]):
    """Inverse-class-frequency sampling with replacement (``run.balance: sampler``), sharded across ranks.

    The draw depends on (seed, epoch) only: every rank draws the same global sequence and keeps its stride.
    """

    def __init__(self, labels: list[str], seed: int, rank: int, world: int) -> None:
        weights = class_weights(labels)
        self.weights = torch.tensor([weights[label] for label in labels], dtype=torch.double)
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0
        self.per_rank = math.ceil(len(labels) / world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.per_rank * self.world, replacement=True, generator=g)
        return iter(drawn[self.rank::self.world].tolist())


def make_sampler(dataset: EmotionDataset, cfg: DictConfig, info: dist.DistInfo) -> Sampler[int]:
    if cfg.run.balance == "sampler":
        return WeightedShardSampler([s.label for s in dataset.samples], cfg.run.seed, info.rank, info.world_size)
    return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                              seed=cfg.run.seed, drop_last=False)


def epoch_loader(dataset: EmotionDataset, sampler: Sampler[int], epoch: int, skip: int, cfg: DictConfig,
                 collate: Collator) -> DataLoader:
    """Micro-batches of one epoch, whole ones only, the first ``skip`` left out (resume mid-epoch).

    The order depends on (seed, epoch) only; the loader gets its own generator so creating it never moves the
    global RNG (which would make a resumed run diverge).
    """
    sampler.set_epoch(epoch)
    dataset.set_epoch(epoch)
    order = list(sampler)
    bs = cfg.run.batch_size
    batches = [order[i:i + bs] for i in range(0, len(order) - bs + 1, bs)]
    return DataLoader(dataset, batch_sampler=batches[skip:], collate_fn=collate, num_workers=cfg.run.num_workers,
                      generator=torch.Generator().manual_seed(cfg.run.seed + epoch))


class MetricsLog:
    """Rank-0 metrics sink: console, ``metrics.csv`` (long format: step, epoch, name, value) and TensorBoard."""

    def __init__(self, out: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.csv_path = out / "metrics.csv"
        rows = []
        if self.csv_path.exists():  # a resumed run drops what the interrupted one logged after its checkpoint
            with self.csv_path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
        with self.csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, ["step", "epoch", "name", "value"])
            writer.writeheader()
            writer.writerows(rows)
        self.tb = SummaryWriter(str(out / "tb"), purge_step=start_step + 1 if start_step else None)

    def write(self, step: int, epoch: int, values: dict[str, float]) -> None:
        with self.csv_path.open("a", newline="") as f:
            writer = csv.writer(f)
            for name, value in values.items():
                writer.writerow([step, epoch, name, f"{value:.6g}"])
                self.tb.add_scalar(name, value, step)
        self.tb.flush()
        log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in values.items()))

    def close(self) -> None:
        self.tb.close()


@torch.no_grad()
def validation_loss(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig, info: dist.DistInfo,
                    autocast: contextlib.AbstractContextManager) -> float:
    """Answer-token cross-entropy on ``dataset``, each rank a contiguous shard, reduced over ranks."""
    n = len(dataset)
    shard = list(range(n * info.rank // info.world_size, n * (info.rank + 1) // info.world_size))
    loader = DataLoader(dataset, batch_sampler=[shard[i:i + cfg.eval.batch_size]
                                                for i in range(0, len(shard), cfg.eval.batch_size)],
                        collate_fn=Collator(model.tokenizer.pad_token_id, "train"), num_workers=cfg.run.num_workers)
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    for batch in loader:
        with autocast:
            loss = model(batch).loss
        # The classifier's loss is a mean over samples, the LM's over answer tokens.
        tokens = len(batch["sample_ids"]) if model.head is not None else int((batch["labels"][:, 1:] != -100).sum())
        total += torch.tensor([float(loss) * tokens, tokens], dtype=torch.float64)
    model.train(was_training)
    if info.distributed:
        tdist.all_reduce(total)
    return float(total[0] / total[1].clamp(min=1))




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


@dataclass
class Progress:
    """Where the run is: optimizer steps taken and the best validation value so far (and its step)."""

    step: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"value": None, "step": None})


class StopOnSigterm:
    """SIGTERM (SLURM, ``timeout``, a stopped ``cross_train.py``) asks the loop to stop after the current step.

    Every rank is asked the same question each step, so all of them stop (and checkpoint) at the same step.
    """

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def __enter__(self) -> StopOnSigterm:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        self.received = True
        log.warning("SIGTERM received: stopping after the current step with a checkpoint")

    def requested(self, info: dist.DistInfo) -> bool:
        if not info.distributed:
            return self.received
        flag = torch.tensor([int(self.received)], device=info.device)
        tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
        return bool(flag.item())


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
        with StopOnSigterm() as stop:
            return _fit(cfg, info, out, stop)
    finally:
        lock.release()
        dist.cleanup()


def _fit(cfg: DictConfig, info: dist.DistInfo, out: Path, stop: StopOnSigterm) -> Path:
    run = cfg.run
    if info.is_main:
        save_config(cfg, out / "config.yaml")
    data = prepare_training(cfg, info)
    seed_everything(run.seed + info.rank)  # training randomness (dropout) differs per rank, reproducibly
    engine = make_engine(data.model, cfg, info, data.total_steps)
    ckpt_dir = out / "checkpoints"
    progress = resume(cfg, info, data, engine, ckpt_dir)
    metrics_log = MetricsLog(out, progress.step) if info.is_main else None
    throughput = Throughput()
    bar = tqdm(total=data.total_steps, initial=progress.step, desc="train", disable=not info.is_main,
               dynamic_ncols=True)
    data.model.train()
    for epoch, micro_batches in optimizer_steps(data, cfg, progress.step):
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
            improved = run_validation(data, cfg, info, engine, progress, metrics_log, epoch)
        stopping = stop.requested(info)
        if stopping or last or improved or (run.save_every and step % run.save_every == 0):
            save_checkpoint(ckpt_dir / f"step_{step}", data, cfg, info, engine, progress)
        if stopping:
            log.warning("stopped by SIGTERM after step %d; checkpoint %s", step, ckpt_dir / f"step_{step}")
            raise TrainingInterrupted(f"stopped by SIGTERM after step {step} of {data.total_steps}: checkpoint "
                                      f"{ckpt_dir / f'step_{step}'}; rerun with run.resume=true to continue")
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
    sampler = make_sampler(train_set, cfg, info)
    micro_per_epoch = len(sampler) // run.batch_size
    steps_per_epoch = micro_per_epoch // run.grad_accum
    if steps_per_epoch == 0:
        raise ConfigError(f"run.batch_size={run.batch_size} x run.grad_accum={run.grad_accum} x {info.world_size} "
                          f"process(es) exceeds the {len(train_set)} training samples: not one optimizer step fits")
    return TrainData(model, train_set, val_set, sampler, micro_per_epoch, steps_per_epoch,
                     run.max_steps or run.epochs * steps_per_epoch)


def resume(cfg: DictConfig, info: dist.DistInfo, data: TrainData, engine: Engine, ckpt_dir: Path) -> Progress:
    """Load the newest checkpoint under ``run.resume`` (weights, engine, RNG); a fresh :class:`Progress` otherwise."""
    saved = ckpt.step_folders(ckpt_dir) if cfg.run.resume else []
    if not saved:
        if cfg.run.resume:
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


def optimizer_steps(data: TrainData, cfg: DictConfig, start: int) -> Iterator[tuple[int, Iterator[dict]]]:
    """(epoch, the ``run.grad_accum`` micro-batches of one optimizer step) from step ``start`` to the last."""
    accum = cfg.run.grad_accum
    collate = Collator(data.model.tokenizer.pad_token_id, "train")
    step = start
    while step < data.total_steps:
        epoch = step // data.steps_per_epoch
        skip = (step % data.steps_per_epoch) * accum
        batches = iter(epoch_loader(data.train_set, data.sampler, epoch, skip, cfg, collate))
        for _ in range(min(data.steps_per_epoch - step % data.steps_per_epoch, data.total_steps - step)):
            yield epoch, itertools.islice(batches, accum)
            step += 1


class Throughput:
    """Loss, samples and tokens since the last log line, reduced over ranks when it is written."""

    def __init__(self) -> None:
        self.window = torch.zeros(4, dtype=torch.float64)  # loss sum, micro-batches, samples, tokens
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, batch: dict) -> None:
        self.window += torch.tensor([loss.item(), 1, len(batch["sample_ids"]), int(batch["attention_mask"].sum())],
                                    dtype=torch.float64)

    def drain(self, info: dist.DistInfo) -> dict[str, float]:
        if info.distributed:
            tdist.all_reduce(self.window)
        elapsed = time.perf_counter() - self.start
        values = {"train/loss": float(self.window[0] / self.window[1]),
                  "train/samples_per_s": float(self.window[2]) / elapsed,
                  "train/tokens_per_s": float(self.window[3]) / elapsed}
        self.window.zero_()
        self.start = time.perf_counter()
        return values


def tune_head_thresholds(model: EmotionLLaMA, dataset: EmotionDataset, cfg: DictConfig, info: dist.DistInfo) -> None:
    """Multi-label classifier: per-class decision thresholds tuned on the validation split (rank 0 computes,
    every rank receives them), so the checkpoint saved next carries them."""

    thresholds = None
    if info.is_main:
        probs, targets = class_probabilities(model, dataset, cfg)
        thresholds = tune_thresholds(probs, targets)
    model.head.thresholds.copy_(dist.broadcast_object(thresholds))
    log.info("classifier thresholds tuned on validation: %s", [round(float(t), 2) for t in model.head.thresholds])


def run_validation(data: TrainData, cfg: DictConfig, info: dist.DistInfo, engine: Engine, progress: Progress,
             metrics_log: MetricsLog | None, epoch: int) -> bool:
    """Val loss + metrics through the evaluation path; True when ``run.best_metric`` improved."""

    val_cfg = val_config(cfg)
    val_loss = validation_loss(data.model, data.val_set, cfg, info, engine.autocast())
    if data.model.head is not None and data.model.head.multi_label:
        tune_head_thresholds(data.model, data.val_set, val_cfg, info)
    with engine.autocast():
        metrics = {k: v for k, v in evaluate_dataset(data.model, data.val_set, val_cfg).items()
                   if isinstance(v, (int, float))}
    metrics["loss"] = val_loss
    name = cfg.run.best_metric
    if name not in metrics:
        raise ConfigError(f"run.best_metric={name!r} is not a validation metric; available: "
                          f"{', '.join(sorted(metrics))}")
    if metrics_log is not None:
        metrics_log.write(progress.step, epoch, {f"val/{k}": float(v) for k, v in metrics.items()})
    value, best = float(metrics[name]), progress.best
    if best["value"] is not None and (value >= best["value"] if name.endswith("loss") else value <= best["value"]):
        return False
    best.update(value=value, step=progress.step)
    return True


def val_config(cfg: DictConfig) -> DictConfig:
    return OmegaConf.merge(cfg, {"eval": {"split": "val"}})  # reports name the split they score


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
        ckpt.prune(folder.parent, cfg.run.keep_last, keep=folder.parent / f"step_{best}" if best else None)
    dist.barrier()


def publish_final(out: Path, ckpt_dir: Path, progress: Progress, data: TrainData, cfg: DictConfig,
                  info: dist.DistInfo) -> Path:
    """Export the best-on-validation checkpoint (else the last) as ``final/`` (with the multi-label decision)."""
    best = progress.best
    chosen = ckpt_dir / f"step_{best['step'] if best['step'] is not None else progress.step}"
    final = out / "final"
    if info.is_main:
        ckpt.export_final(chosen, final)
        log.info("final checkpoint %s (from %s%s)", final, chosen.name,
                 f", val {cfg.run.best_metric} {best['value']:.4f}" if best["value"] is not None else "")
    dist.barrier()
    if data.val_set is not None and cfg.data.label_mode == "multi" and data.model.head is None:
        # (a classifier head's per-class thresholds were tuned at validation and travel in its weights)
        choose_score_decision(data.model, final, data.val_set, val_config(cfg), info)
    return final


def choose_score_decision(model: EmotionLLaMA, final: Path, val_set: EmotionDataset, val_cfg: DictConfig,
                  info: dist.DistInfo) -> None:
    """Choose the multi-label score-mode threshold with the final weights on the validation split and save it
    in ``final/`` (``scoring.DECISION_FILE``), so evaluation never tunes on the split it scores."""

    ckpt.load_trainable(model, final)
    _, decision = predict_with_decision(model, val_set, OmegaConf.merge(val_cfg, {"eval": {"mode": "score"}}))
    if info.is_main:
        write_decision(final, decision)
        log.info("multi-label decision saved in %s: %s", final, decision.describe()["rule"])
    dist.barrier()
