"""Requests/s and latency of the demo server (``app.py``'s FastAPI app under uvicorn) for 1 and 4 concurrent
clients, on the same requests.

    python bench/serve.py [model.checkpoint=DIR] [--requests 24] [--clients 4]

Default: the demo checkpoint ``make demo`` trains, and the held-out demo clips the page offers as examples,
cycled so each run posts the same ``--requests`` uploads (with their transcripts). The server is ``app.py``'s
(``serving.concurrent``: extraction in worker processes, the model on batches of waiting requests) and runs in
this process on 127.0.0.1; each client is a thread with its own HTTP connection; one untimed request warms up.
Latency is per request, upload to answer. Last line: ``ratio: R`` (requests/s with ``--clients`` clients over
requests/s with one).
"""
from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from minigpt4.config import split_cli
from minigpt4.serving.concurrent import ConcurrentPredictor
from minigpt4.serving.predictor import Example, Predictor, example_clips, load_predict_config, with_checkpoint
from minigpt4.serving.web import create_app


def start_server(app) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def run(base: str, uploads: list[tuple[str, bytes, str]], clients: int) -> tuple[float, list[float]]:
    """Post every upload once, ``clients`` at a time; (wall seconds, per-request latencies)."""
    local = threading.local()

    def one(upload: tuple[str, bytes, str]) -> float:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=600)
        name, body, transcript = upload
        start = time.perf_counter()
        response = local.client.post("/predict", files={"clip": (name, body)}, data={"transcript": transcript})
        response.raise_for_status()
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, uploads))
    return time.perf_counter() - start, latencies


def main(argv: list[str]) -> None:
    flags, overrides = split_cli(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=24, help="uploads per run (the same in every run)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of the second run")
    args = parser.parse_args(flags)
    overrides, _ = with_checkpoint("bench/serve.py", None, overrides)
    cfg = load_predict_config(None, overrides)
    examples: list[Example] = example_clips(cfg)
    if not examples:
        sys.exit("bench/serve.py: the checkpoint's corpus offers no example clips (the demo corpus does)")
    clips = [(e.name, Path(e.path).read_bytes(), e.transcript or "") for e in examples]
    uploads = [clips[i % len(clips)] for i in range(args.requests)]
    predictor = ConcurrentPredictor(Predictor(cfg))
    server, base = start_server(create_app(predictor, examples))
    try:
        run(base, uploads[:1], 1)  # warm-up
        rows = []
        for clients in (1, args.clients):
            wall, latencies = run(base, uploads, clients)
            rows.append((clients, len(uploads) / wall, np.percentile(latencies, 50), np.percentile(latencies, 95)))
    finally:
        server.should_exit = True
        predictor.close()
    batches = predictor.batcher.batches
    print(f"checkpoint {cfg.model.checkpoint}, {len(uploads)} uploads of {len(clips)} demo clips per run")
    print(f"{'clients':>8} {'requests/s':>11} {'p50 ms':>8} {'p95 ms':>8}")
    for clients, rps, p50, p95 in rows:
        print(f"{clients:>8} {rps:>11.2f} {1000 * p50:>8.0f} {1000 * p95:>8.0f}")
    print(f"{predictor.extraction.workers} extraction worker processes; model batches of "
          f"{sum(batches) / len(batches):.2f} requests on average (largest {max(batches)})")
    print(f"ratio: {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
