"""Training step of the trainable text slot in fp32 against bf16 autocast (``run.precision``), on equal work.

    python bench/bf16_encoder.py [--encoder mpnet] [--threads 1] [--steps 6] [--length 41]

Builds the text encoder as the MELD configs do (every layer tuned, utterance pooling) and times forward,
backward and an AdamW step on the same batch of 32 MELD-length rows (41 tokens: MELD train's mean with two
earlier turns) under each precision, alternating so that neither gets a warmer machine; the median step of
each is printed. On CPUs with AMX (Sapphire Rapids and later) oneDNN runs bf16 matmuls on the tile unit;
without it bf16 can be slower than fp32, which this prints as a ratio below 1. The last line is
``ratio: fp32 time / bf16 time``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minigpt4.config import TextEncoderConfig  # noqa: E402  (the repository root is put on the path first)
from minigpt4.models.text_encoder import TextEncoder  # noqa: E402


def step_seconds(encoder: TextEncoder, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, ...],
                 dtype: torch.dtype | None) -> float:
    """One forward + backward + optimizer step, timed."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        pooled = encoder(*batch)
    pooled.float().pow(2).mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="mpnet", help="model.text_encoder.name (minilm, mpnet or a folder)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per precision (after one warm-up each)")
    parser.add_argument("--length", type=int, default=41)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = TextEncoder(TextEncoderConfig(name=args.encoder, tune="top_layers", top_layers=1, pool="utterance"),
                          tokens=1)
    encoder.bert.requires_grad_(True)
    encoder.bert.embeddings.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-6)
    ids = torch.randint(1000, 20000, (32, args.length))
    types = (torch.arange(args.length) >= args.length // 2).long().expand(32, -1).contiguous()
    batch = (ids, torch.ones_like(ids), types)
    times: dict[str, list[float]] = {"fp32": [], "bf16 autocast": []}
    for dtype in (None, torch.bfloat16):  # warm-up
        step_seconds(encoder, optimizer, batch, dtype)
    for _ in range(args.steps):
        times["fp32"].append(step_seconds(encoder, optimizer, batch, None))
        times["bf16 autocast"].append(step_seconds(encoder, optimizer, batch, torch.bfloat16))
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.encoder}, every layer tuned, batch 32 x {args.length} tokens, {args.threads} thread(s), "
          f"median of {args.steps} steps")
    print("| precision | s per step | samples/s |")
    print("|---|---|---|")
    for name, seconds in median.items():
        print(f"| {name} | {seconds:.3f} | {32 / seconds:.1f} |")
    print(f"ratio: {median['fp32'] / median['bf16 autocast']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
