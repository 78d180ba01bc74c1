"""What a training run reports and listens to: metrics (console, CSV, TensorBoard), throughput, SIGTERM."""
from __future__ import annotations

import csv
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist

from minigpt4.runtime import dist

log = logging.getLogger(__name__)


class MetricsLog:
    """Rank-0 metrics sink: console, ``metrics.csv`` (long format: step, epoch, name, value) and TensorBoard."""

    def __init__(self, out: Path, start_step: int) -> None:
        # heavy import (protobuf, the TensorBoard stack): only rank 0 of a training run needs it
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


class StopOnSignal:
    """SIGTERM (SLURM, ``timeout``, a stopped ``cross_train.py``) or Ctrl-C (SIGINT, sent to the whole process
    group: every trainer of ``cross_train.py`` too) asks the loop to stop after the current step, with a
    checkpoint. A second Ctrl-C aborts at once (``KeyboardInterrupt``, no checkpoint).

    Every rank is asked the same question each step, so all of them stop (and checkpoint) at the same step.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def _handle(self, signum: int, frame: object) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt("second Ctrl-C: aborted without a checkpoint")
        self.received = self.received or signal.Signals(signum)
        again = "; Ctrl-C again aborts at once, without one" if signum == signal.SIGINT else ""
        log.warning("%s received: stopping after the current step with a checkpoint%s", signal.Signals(signum).name,
                    again)

    @property
    def name(self) -> str:
        """The signal that asked to stop (a rank asked by another rank's signal says so)."""
        return self.received.name if self.received else "a signal to another process"

    def requested(self, info: dist.DistInfo) -> bool:
        if not info.distributed:
            return self.received
        flag = torch.tensor([int(self.received is not None)], device=info.device)
        tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
        return bool(flag.item())
