"""torchrun integration: environment detection, process group, rank helpers and rank-0-only logging.

Launch with ``torchrun --nproc-per-node N train.py ...``; a plain ``python train.py`` is a world of one and
never initialises a process group. CPU runs use gloo, GPU runs nccl with one device per local rank.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as tdist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (rank, world size, device); a single process is rank 0 of 1."""
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(force_group: bool = False) -> DistInfo:
    """Read the torchrun environment, pick the device and join the process group.

    A world of one has no group unless ``force_group`` (DeepSpeed needs one even for a single process).
    """
    if force_group and not launched_by_torchrun():
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if (world > 1 or force_group) and not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                 device_id=device if device.type == "cuda" else None)
    return DistInfo(rank, world, local, device)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank() -> int:
    return tdist.get_rank() if tdist.is_initialized() else 0


def world_size() -> int:
    return tdist.get_world_size() if tdist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if tdist.is_initialized():
        tdist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (filling shared caches: demo corpus, text embeddings), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_gather_object(obj: object) -> list[object]:
    """Every rank's ``obj`` (a list of one element outside a process group)."""
    if not tdist.is_initialized():
        return [obj]
    out: list[object] = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not tdist.is_initialized():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()


def setup_logging(log_file: str | Path | None, main: bool) -> None:
    """Rank 0 logs INFO to the console and ``log_file``; other ranks only report warnings and errors."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if main and log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO if main else logging.WARNING, handlers=handlers, force=True,
                        format=f"%(asctime)s {'' if main else f'[rank {rank()}] '}%(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
