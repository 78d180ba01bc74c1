"""``fit(cfg)``: the training loop, readable top to bottom.

One optimizer step = ``run.grad_accum`` micro-batches under autocast, each loss divided by ``grad_accum``,
gradients synchronised only on the last one (``no_sync``), clipped, then one optimizer and one LR step
(linear warmup + cosine to ``min_lr_ratio * lr``). Distribution is torchrun + DDP, or DeepSpeed ZeRO when
``run.deepspeed`` names a JSON file (one branch: ``engine.backward`` / ``engine.step``).

Reproducibility: the data order is a function of (seed, epoch) only, the position in the epoch is skipped on
resume, and optimizer, scheduler and every rank's RNG states travel in the checkpoint, so an interrupted and
resumed run ends with the same parameters as an uninterrupted one.

Run folder (``run.output_dir``)::

    config.yaml  train.log  metrics.csv  tb/        resolved config, log, long-format metrics, TensorBoard
    checkpoints/step_<N>/                           last ``keep_last`` + the best, with resume state
    final/                                          best-on-val (else last) weights + config + tokenizer
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as tdist
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from . import checkpoint as ckpt
from . import dist
from .build import build_model
from .collate import Collator
from .config import ConfigError, require_complete, save_config
from .data import EmotionDataset, class_weights, present_slots
from .model import EmotionLLaMA
from .pipeline import prepare_data

log = logging.getLogger(__name__)
_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(total_steps: int, warmup: int, min_ratio: float):
    """LR multiplier after ``s`` optimizer steps: linear warmup to 1, then cosine down to ``min_ratio``."""
    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        progress = min(1.0, (s - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def make_optimizer(model: nn.Module, cfg: DictConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (LoRA A/B, projector weights), never on biases or norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.run.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.run.lr, betas=(0.9, 0.999))


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


def unused_projectors(model: EmotionLLaMA, cfg: DictConfig) -> list[str]:
    """Projectors no prompt slot feeds under ``data.modalities`` (they receive no gradient)."""
    used, _ = present_slots(cfg, list(model.slot_tokens))
    return [name for name in model.projectors if name not in used]


def deepspeed_config(cfg: DictConfig) -> dict[str, Any]:
    """The JSON file's settings plus the numbers the run config owns (batch, accumulation, clipping, precision).

    A JSON value that contradicts the run config is an error rather than a silent override.
    """
    path = Path(cfg.run.deepspeed)
    if not path.is_file():
        raise FileNotFoundError(f"run.deepspeed={path} does not exist")
    ds = json.loads(path.read_text())
    owned = {"train_micro_batch_size_per_gpu": cfg.run.batch_size, "gradient_accumulation_steps": cfg.run.grad_accum,
             "gradient_clipping": cfg.run.max_grad_norm}
    for key, value in owned.items():
        if ds.get(key, "auto") not in ("auto", value):
            raise ConfigError(f"{path}: {key}={ds[key]} contradicts the run config ({value}); set it to \"auto\"")
        ds[key] = value
    ds.pop("train_batch_size", None)
    ds["bf16"] = {**ds.get("bf16", {}), "enabled": cfg.run.precision == "bf16"}
    ds["fp16"] = {**ds.get("fp16", {}), "enabled": cfg.run.precision == "fp16"}
    return ds


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
        tokens = int((batch["labels"][:, 1:] != -100).sum())
        total += torch.tensor([float(loss) * tokens, tokens], dtype=torch.float64)
    model.train(was_training)
    if info.distributed:
        tdist.all_reduce(total)
    return float(total[0] / total[1].clamp(min=1))


def fit(cfg: DictConfig) -> Path:
    """Train as configured and return ``<output_dir>/final`` (the checkpoint other entry points load)."""
    require_complete(cfg)
    info = dist.init_distributed(force_group=bool(cfg.run.deepspeed))
    out = Path(cfg.run.output_dir)
    dist.setup_logging(out / "train.log", info.is_main)
    try:
        return _fit(cfg, info, out)
    finally:
        dist.cleanup()


def _fit(cfg: DictConfig, info: dist.DistInfo, out: Path) -> Path:
    run = cfg.run
    if run.grad_accum < 1 or run.batch_size < 1:
        raise ConfigError(f"run.batch_size={run.batch_size} and run.grad_accum={run.grad_accum} must be >= 1")
    if info.is_main:
        save_config(cfg, out / "config.yaml")
    seed_everything(run.seed)
    model = build_model(cfg).to(info.device)
    with dist.main_first():
        data = prepare_data(cfg, model)
    train_set = data.dataset("train", cfg, model, train=True)
    val_set = data.dataset("val", cfg, model) if data.splits["val"] else None
    val_cfg = OmegaConf.merge(cfg, {"eval": {"split": "val"}})  # reports name the split they score
    collate = Collator(model.tokenizer.pad_token_id, "train")
    sampler = make_sampler(train_set, cfg, info)
    micro_per_epoch = len(sampler) // run.batch_size
    steps_per_epoch = micro_per_epoch // run.grad_accum
    if steps_per_epoch == 0:
        raise ConfigError(f"run.batch_size={run.batch_size} x run.grad_accum={run.grad_accum} x {info.world_size} "
                          f"process(es) exceeds the {len(train_set)} training samples: not one optimizer step fits")
    total_steps = run.max_steps or run.epochs * steps_per_epoch
    if val_set is None:
        log.warning("no validation split: final/ will be the last checkpoint")

    seed_everything(run.seed + info.rank)  # training randomness (dropout) differs per rank, reproducibly
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, run.warmup_steps, run.min_lr_ratio))
    ckpt_dir = out / "checkpoints"
    saved = ckpt.step_folders(ckpt_dir) if run.resume else []
    resume_from = saved[-1] if saved else None
    state: dict[str, Any] = {}
    if resume_from is not None:
        log.info("resuming from %s", resume_from)
        ckpt.load_trainable(model, resume_from)
        state = ckpt.load_state(resume_from)
        if state["world_size"] != info.world_size or state["micro_per_epoch"] != micro_per_epoch:
            raise ValueError(f"{resume_from}: saved with {state['world_size']} process(es) and "
                             f"{state['micro_per_epoch']} micro-batches per epoch; this run has {info.world_size} "
                             f"and {micro_per_epoch}: the data order would differ (same batch size and world needed)")
    elif run.resume:
        log.info("run.resume: no checkpoint under %s, starting from scratch", ckpt_dir)

    engine = None
    scaler = torch.amp.GradScaler(info.device.type, enabled=run.precision == "fp16" and not run.deepspeed)
    if run.deepspeed:
        import deepspeed

        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg))
        if resume_from is not None:
            engine.load_checkpoint(str(resume_from), tag="deepspeed", load_module_strict=False)
        wrapped: nn.Module = engine
    else:
        if state:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
        wrapped = model
        if info.distributed:
            unused = unused_projectors(model, cfg)
            if unused:
                log.info("projectors %s get no gradient under data.modalities: DDP finds unused parameters", unused)
            wrapped = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda"
                                              else None, find_unused_parameters=bool(unused))

    step = state.get("step", 0)
    best: dict[str, Any] = state.get("best", {"value": None, "step": None})
    if state:
        ckpt.set_rng_state(state["rng"][info.rank])
    metrics_log = MetricsLog(out, step) if info.is_main else None
    autocast_dtype = None if run.deepspeed else _AUTOCAST[run.precision]

    def autocast() -> contextlib.AbstractContextManager:
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(info.device.type, dtype=autocast_dtype)

    def save(folder: Path) -> None:
        """Every rank joins (RNG gathering, DeepSpeed's collective save); rank 0 writes and renames."""
        rngs = dist.all_gather_object(ckpt.rng_state())
        resume_state = {"step": step, "epoch": step // steps_per_epoch,
                        "position": (step % steps_per_epoch) * run.grad_accum, "micro_per_epoch": micro_per_epoch,
                        "world_size": info.world_size, "rng": rngs, "best": best}
        tmp = None
        if engine is not None:
            tmp = ckpt.stage(folder) if info.is_main else ckpt.staging_path(folder)
            dist.barrier()
            engine.save_checkpoint(str(tmp), tag="deepspeed", exclude_frozen_parameters=True)
        else:
            resume_state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                                scaler=scaler.state_dict())
        dist.barrier()
        if info.is_main:
            ckpt.write_checkpoint(folder, model, cfg, resume_state, tmp=tmp)
            ckpt.prune(ckpt_dir, run.keep_last, keep=ckpt_dir / f"step_{best['step']}" if best["step"] else None)
        dist.barrier()

    def validate(epoch: int) -> None:
        """Val loss + metrics through the evaluation path; a better ``run.best_metric`` saves a checkpoint."""
        from .evaluation import evaluate_dataset

        val_loss = validation_loss(model, val_set, cfg, info, autocast())
        with autocast():
            metrics = {k: v for k, v in evaluate_dataset(model, val_set, val_cfg).items()
                       if isinstance(v, (int, float))}
        metrics["loss"] = val_loss
        if run.best_metric not in metrics:
            raise ConfigError(f"run.best_metric={run.best_metric!r} is not a validation metric; available: "
                              f"{', '.join(sorted(metrics))}")
        value = float(metrics[run.best_metric])
        lower_better = run.best_metric.endswith("loss")
        if best["value"] is None or (value < best["value"] if lower_better else value > best["value"]):
            best.update(value=value, step=step)
        if metrics_log is not None:
            metrics_log.write(step, epoch, {f"val/{k}": float(v) for k, v in metrics.items()})

    model.train()
    bar = tqdm(total=total_steps, initial=step, desc="train", disable=not info.is_main, dynamic_ncols=True)
    window = torch.zeros(4, dtype=torch.float64)  # loss sum, micro-batches, samples, tokens since the last log
    window_start = time.perf_counter()
    while step < total_steps:
        epoch = step // steps_per_epoch
        skip = (step % steps_per_epoch) * run.grad_accum
        batches = iter(epoch_loader(train_set, sampler, epoch, skip, cfg, collate))
        for _ in range(steps_per_epoch - step % steps_per_epoch):
            for micro in range(run.grad_accum):
                batch = next(batches)
                if engine is not None:
                    loss = engine(batch).loss
                    engine.backward(loss)  # DeepSpeed divides by its gradient_accumulation_steps
                    engine.step()  # steps the optimizer and the LR only on the accumulation boundary
                else:
                    last = micro == run.grad_accum - 1
                    sync = contextlib.nullcontext() if last or wrapped is model else wrapped.no_sync()
                    with sync:
                        with autocast():
                            loss = wrapped(batch).loss
                        scaler.scale(loss / run.grad_accum).backward()
                window += torch.tensor([loss.detach().item(), 1, len(batch["ids"]), int(batch["attention_mask"].sum())],
                                       dtype=torch.float64)
            if engine is not None:
                grad_norm = float(engine.get_global_grad_norm() or 0.0)
            else:
                scaler.unscale_(optimizer)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], run.max_grad_norm))
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
            step += 1
            bar.update(1)
            if step % run.log_every == 0 or step == total_steps:
                if info.distributed:
                    tdist.all_reduce(window)
                elapsed = time.perf_counter() - window_start
                values = {"train/loss": float(window[0] / window[1]), "train/lr": scheduler.get_last_lr()[0],
                          "train/grad_norm": grad_norm, "train/samples_per_s": float(window[2]) / elapsed,
                          "train/tokens_per_s": float(window[3]) / elapsed}
                if metrics_log is not None:
                    metrics_log.write(step, epoch, values)
                    bar.set_postfix(loss=f"{values['train/loss']:.4f}", lr=f"{values['train/lr']:.2e}")
                window.zero_()
                window_start = time.perf_counter()
            evaluated = val_set is not None and ((run.eval_every and step % run.eval_every == 0)
                                                 or step == total_steps)
            if evaluated:
                validate(epoch)
            if (run.save_every and step % run.save_every == 0) or step == total_steps or (
                    evaluated and best["step"] == step):
                save(ckpt_dir / f"step_{step}")
            if step == total_steps:
                break
    bar.close()
    if metrics_log is not None:
        metrics_log.close()
    chosen = ckpt_dir / f"step_{best['step'] if best['step'] is not None else step}"
    final = out / "final"
    if info.is_main:
        ckpt.export_final(chosen, final)
        log.info("final checkpoint %s (from %s%s)", final, chosen.name,
                 f", val {run.best_metric} {best['value']:.4f}" if best["value"] is not None else "")
    dist.barrier()
    if val_set is not None and cfg.data.label_mode == "multi":
        save_decision(model, final, val_set, val_cfg, info)
    return final


def save_decision(model: EmotionLLaMA, final: Path, val_set: EmotionDataset, val_cfg: DictConfig,
                  info: dist.DistInfo) -> None:
    """Choose the multi-label score-mode threshold with the final weights on the validation split and save it
    in ``final/`` (``scoring.DECISION_FILE``), so evaluation never tunes on the split it scores."""
    from .evaluation import predict_with_decision
    from .scoring import save_decision as write_decision

    ckpt.load_trainable(model, final)
    _, decision = predict_with_decision(model, val_set, OmegaConf.merge(val_cfg, {"eval": {"mode": "score"}}))
    if info.is_main:
        write_decision(final, decision)
        log.info("multi-label decision saved in %s: %s", final, decision.describe()["rule"])
    dist.barrier()
