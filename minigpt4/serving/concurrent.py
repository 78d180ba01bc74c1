"""Serving concurrent requests: extraction of each request in a pool of worker processes, so clips decode and
extract in parallel, and the model on small batches gathered from the requests waiting for it.

Why processes for extraction: PyAV, OpenCV's cascades and the CNNs release the GIL only in parts, and the
cascade classifier is not documented thread-safe; a worker process holds its own extractors, computes on one
thread (``minigpt4.extract.threads``) and gives the same features as the server's own process would. Why one
model thread: the model runs fastest on a batch, and a batch of the requests that arrived while the previous
one ran costs little more than one request. Answers are the same as one request at a time (tested).
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping


from minigpt4.extract.base import ClipFeatures, extract_clip
from minigpt4.extract.registry import build_extractors
from minigpt4.extract.run import warm_up
from minigpt4.extract.threads import single_thread
from minigpt4.serving.predictor import Predictor, Request, check_client

_WORKER: dict[str, Any] = {}


def _init(spec: Mapping[str, Any]) -> None:
    single_thread()
    _WORKER["extractors"] = build_extractors(spec)
    warm_up(_WORKER["extractors"])


def _extract(path: str, transcript: str | None, max_seconds: float | None) -> ClipFeatures:
    return extract_clip(path, _WORKER["extractors"], transcript, max_seconds=max_seconds)


def _ready() -> bool:
    return "extractors" in _WORKER


class ExtractionPool:
    """``workers`` spawned processes, each holding the checkpoint's extractors (built once, at start-up)."""

    def __init__(self, spec: Mapping[str, Any], workers: int) -> None:
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init, initargs=(dict(spec),))
        for future in [self.pool.submit(_ready) for _ in range(workers)]:
            future.result()  # start-up (imports, model loads) is paid here, not by the first requests

    def extract(self, path: str | Path, transcript: str | None, max_seconds: float | None = None) -> ClipFeatures:
        """Raises the worker's ``MediaError`` for a clip that cannot be decoded (or is over ``max_seconds``)."""
        return self.pool.submit(_extract, str(path), transcript, max_seconds).result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class ModelBatcher:
    """One thread runs the model; each call takes every request waiting (up to ``max_batch``) at once."""

    def __init__(self, predictor: Predictor, max_batch: int) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.waiting: queue.Queue[tuple[Request, Future] | None] = queue.Queue()
        self.batches: list[int] = []
        """Size of every batch run."""
        self.thread = threading.Thread(target=self._loop, name="model-batcher", daemon=True)
        self.thread.start()

    def run(self, request: Request) -> dict[str, Any]:
        future: Future = Future()
        self.waiting.put((request, future))
        return future.result()

    def _take(self) -> list[tuple[Request, Future]] | None:
        first = self.waiting.get()
        if first is None:
            return None
        taken = [first]
        while len(taken) < self.max_batch:
            try:
                item = self.waiting.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.waiting.put(None)
                break
            taken.append(item)
        return taken

    def _loop(self) -> None:
        while (taken := self._take()) is not None:
            self.batches.append(len(taken))
            try:
                results = self.predictor.run_requests([r for r, _ in taken])
            except BaseException as err:  # noqa: BLE001 - every waiting request gets the error, the thread lives on
                for _, future in taken:
                    future.set_exception(err)
                continue
            for (_, future), result in zip(taken, results):
                future.set_result(result)

    def close(self) -> None:
        self.waiting.put(None)
        self.thread.join()


class ConcurrentPredictor:
    """``Predictor``'s serving interface (``health``, ``predict``) for many clients at once."""

    def __init__(self, predictor: Predictor, workers: int | None = None, max_batch: int = 8) -> None:
        workers = workers or min(2, os.cpu_count() or 1)
        self.predictor = predictor
        warm_up(predictor.extractors)  # librosa's numba kernels compile here, once, before the workers start
        self.extraction = ExtractionPool(predictor.extractor_spec(), workers)
        self.batcher = ModelBatcher(predictor, max_batch)

    def health(self) -> dict[str, Any]:
        return {**self.predictor.health(), "extraction_workers": self.extraction.workers,
                "max_batch": self.batcher.max_batch}

    def predict(self, path: str | Path, clip_id: str | None = None, transcript: str | None = None,
                visuals: bool = False, max_seconds: float | None = None,
                gone: Callable[[], bool] | None = None) -> dict[str, Any]:
        """As ``Predictor.predict``: extraction in a worker, then the model in the next batch."""
        start = time.perf_counter()
        check_client(gone)
        request = self.predictor.request(path, clip_id, transcript, self.extraction.extract, max_seconds)
        check_client(gone)
        result = self.batcher.run(request)
        return self.predictor.record(request, result, time.perf_counter() - start, visuals)

    def close(self) -> None:
        self.batcher.close()
        self.extraction.close()
