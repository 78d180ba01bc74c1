"""The one place where plain/DDP and DeepSpeed training differ: backward, step, save and load.

``make_engine`` returns a :class:`TorchEngine` (one process, or torchrun + DDP: autocast, fp16 loss scaling,
``no_sync`` on all but the last micro-batch, clipping) or a :class:`DeepSpeedEngine` (ZeRO through
``deepspeed.initialize``, which owns precision, accumulation and clipping). The training loop only calls
``backward``, ``step``, ``lr``, ``save`` and ``load``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from pickle import UnpicklingError
from typing import Any, Mapping

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from minigpt4.config import ConfigError, DataConfig, RunConfig
from minigpt4.data.dataset import present_slots
from minigpt4.models.model import EmotionLLaMA
from minigpt4.runtime import dist
from minigpt4.runtime.errors import CheckpointError

log = logging.getLogger(__name__)
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEEPSPEED_TAG = "deepspeed"


def lr_lambda(total_steps: int, warmup: int, min_ratio: float):
    """LR multiplier after ``s`` optimizer steps: linear warmup to 1, then cosine down to ``min_ratio``."""
    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        progress = min(1.0, (s - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def make_optimizer(model: nn.Module, cfg: DictConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (LoRA A/B, projector weights), never on biases or norms; the
    trainable text encoder's weights at ``model.text_encoder.lr`` and the LLM's adapters at ``model.lora.lr``
    when set; torch's fused kernel with ``run.fused_optimizer``."""
    encoder_lr = cfg.model.text_encoder.lr or cfg.run.lr
    lora_lr = cfg.model.lora.lr or cfg.run.lr
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            lr = encoder_lr if name.startswith("text_encoder.") else lora_lr if name.startswith("llm.") else cfg.run.lr
            groups.setdefault((lr, cfg.run.weight_decay if p.ndim >= 2 else 0.0), []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()],
                             lr=cfg.run.lr, betas=(0.9, 0.999), fused=cfg.run.fused_optimizer or None)


def unused_projectors(model: EmotionLLaMA, data: DataConfig) -> list[str]:
    """Projectors no prompt slot feeds under ``data.modalities`` (they receive no gradient)."""
    used, _ = present_slots(data.modalities, data.ablation, list(model.slot_tokens))
    return [name for name in model.projectors if name not in used]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


class TorchEngine:
    """One process or DDP: each micro-batch loss is divided by ``grad_accum``; one clipped step per group."""

    def __init__(self, model: EmotionLLaMA, cfg: DictConfig, info: dist.DistInfo, total_steps: int) -> None:
        run = cfg.run
        self.model, self.device, self.grad_accum, self.max_grad_norm = model, info.device, run.grad_accum, run.max_grad_norm
        self.dtype = AUTOCAST[run.precision]
        self.optimizer = make_optimizer(model, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(total_steps, run.warmup_steps, run.min_lr_ratio))
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=run.precision == "fp16")
        self.module: nn.Module = model
        if info.distributed:
            unused = unused_projectors(model, cfg.data)
            if unused:
                log.info("projectors %s get no gradient under data.modalities: DDP finds unused parameters", unused)
            self.module = DistributedDataParallel(
                model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                find_unused_parameters=bool(unused))

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.dtype)

    def backward(self, batch: Mapping[str, Any], last: bool) -> torch.Tensor:
        """Forward and backward of one micro-batch; gradients are synchronised only on the ``last`` one."""
        sync = contextlib.nullcontext() if last or self.module is self.model else self.module.no_sync()
        with sync:
            with self.autocast():
                loss = self.module(batch).loss
            self.scaler.scale(loss / self.grad_accum).backward()
        return loss.detach()

    def step(self) -> float:
        """Unscale, clip, step optimizer and LR; return the gradient norm before clipping."""
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                              self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return float(norm)

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, tmp: Path) -> dict[str, Any]:
        """The optimizer, scheduler and scaler states, for the checkpoint's ``state.pt``."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load(self, folder: Path, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


class DeepSpeedEngine:
    """DeepSpeed ZeRO: the engine divides by its accumulation steps and steps only on the boundary."""

    def __init__(self, model: EmotionLLaMA, cfg: DictConfig, info: dist.DistInfo, total_steps: int) -> None:
        import deepspeed  # optional engine: imported only when run.deepspeed is set

        run = cfg.run
        optimizer = make_optimizer(model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(total_steps, run.warmup_steps, run.min_lr_ratio))
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg.run))
        self.module: nn.Module = self.engine

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # the engine casts itself (its bf16 / fp16 sections)

    def backward(self, batch: Mapping[str, Any], last: bool) -> torch.Tensor:
        loss = self.engine(batch).loss
        self.engine.backward(loss)
        self.engine.step()  # optimizer and LR move only on the accumulation boundary
        return loss.detach()

    def step(self) -> float:
        return float(self.engine.get_global_grad_norm() or 0.0)

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, tmp: Path) -> dict[str, Any]:
        """Every rank writes its shard of the engine state into the staging folder ``tmp``."""
        self.engine.save_checkpoint(str(tmp), tag=DEEPSPEED_TAG, exclude_frozen_parameters=True)
        return {}

    def load(self, folder: Path, state: Mapping[str, Any]) -> None:
        """DeepSpeed's own reader unpickles anything (``weights_only=False``); here its files are read
        weights-only, trusting just the few DeepSpeed classes its ZeRO checkpoints hold."""
        from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler  # optional engine (above)
        from deepspeed.runtime.zero.config import ZeroStageEnum
        from deepspeed.utils.tensor_fragment import fragment_address

        trusted = [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]

        def weights_only(path: str, map_location: Any = None) -> Any:
            with torch.serialization.safe_globals(trusted):
                return torch.load(path, map_location=map_location, weights_only=True)

        self.engine.checkpoint_engine.load = weights_only
        try:
            self.engine.load_checkpoint(str(folder), tag=DEEPSPEED_TAG, load_module_strict=False)
        except UnpicklingError as err:
            refused = str(err).split("WeightsUnpickler error: ")[-1].split("\n")[0]
            raise CheckpointError(f"{folder / DEEPSPEED_TAG}: holds more than tensors, plain values and DeepSpeed's "
                                  f"own state classes ({refused}); it is not unpickled, as that could run code "
                                  "from the file") from None


def deepspeed_config(run: RunConfig) -> dict[str, Any]:
    """The JSON file's settings plus the numbers the run config owns (batch, accumulation, clipping, precision).

    A JSON value that contradicts the run config is an error rather than a silent override.
    """
    path = Path(run.deepspeed)
    if not path.is_file():
        raise FileNotFoundError(f"run.deepspeed={path} does not exist")
    ds = json.loads(path.read_text())
    owned = {"train_micro_batch_size_per_gpu": run.batch_size, "gradient_accumulation_steps": run.grad_accum,
             "gradient_clipping": run.max_grad_norm}
    for key, value in owned.items():
        if ds.get(key, "auto") not in ("auto", value):
            raise ConfigError(f"{path}: {key}={ds[key]} contradicts the run config ({value}); set it to \"auto\"")
        ds[key] = value
    ds.pop("train_batch_size", None)
    ds["bf16"] = {**ds.get("bf16", {}), "enabled": run.precision == "bf16"}
    ds["fp16"] = {**ds.get("fp16", {}), "enabled": run.precision == "fp16"}
    return ds


Engine = TorchEngine | DeepSpeedEngine


def make_engine(model: EmotionLLaMA, cfg: DictConfig, info: dist.DistInfo, total_steps: int) -> Engine:
    """DeepSpeed when ``run.deepspeed`` names a JSON file, else plain / DDP."""
    return (DeepSpeedEngine if cfg.run.deepspeed else TorchEngine)(model, cfg, info, total_steps)
