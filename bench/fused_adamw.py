"""AdamW's step over the text slot's trainable weights: torch's loop and foreach implementations against its
fused kernel (``run.fused_optimizer``), on equal work.

    python bench/fused_adamw.py [--encoder mpnet] [--threads 2] [--steps 5]

Builds the text encoder as ``meld_text_mpnet`` tunes it (every transformer layer, embeddings frozen: 85M
weights for MPNet), gives every weight the same gradient under each implementation, and times ``optimizer.step()``
alone, alternating implementations so that none gets a warmer machine; the median step of each is printed,
with the largest difference of any weight from the loop's after all steps (the implementations agree up to
rounding, not bit for bit). The baseline is the faster of loop and foreach, torch's own choices when
``fused`` is not set. The last line is ``ratio: best unfused time / fused time``.
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

IMPLEMENTATIONS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="mpnet", help="model.text_encoder.name (minilm, mpnet or a folder)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per implementation (after one warm-up)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = TextEncoder(TextEncoderConfig(name=args.encoder, tune="top_layers", top_layers=1), tokens=1)
    encoder.bert.encoder.layer.requires_grad_(True)
    start = [p.detach().clone() for p in encoder.bert.parameters() if p.requires_grad]
    grads = [torch.randn_like(p) * 1e-3 for p in start]
    params = {name: [torch.nn.Parameter(p.clone()) for p in start] for name in IMPLEMENTATIONS}
    optimizers = {name: torch.optim.AdamW(params[name], lr=3e-5, weight_decay=0.01, **kw)
                  for name, kw in IMPLEMENTATIONS.items()}
    for name in IMPLEMENTATIONS:
        for p, g in zip(params[name], grads):
            p.grad = g
    times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for step in range(args.steps + 1):
        for name, optimizer in optimizers.items():
            began = time.perf_counter()
            optimizer.step()
            if step:  # the first step builds the optimizer state: warm-up, untimed
                times[name].append(time.perf_counter() - began)
    median = {name: statistics.median(t) for name, t in times.items()}
    differs = {name: max(float((a - b).abs().max()) for a, b in zip(params[name], params["loop"]))
               for name in IMPLEMENTATIONS}
    print(f"{args.encoder}: {sum(p.numel() for p in start) / 1e6:.1f}M weights, {args.threads} thread(s), "
          f"median of {args.steps} steps")
    print("| AdamW | s per step | max weight difference from loop |")
    print("|---|---|---|")
    for name, seconds in median.items():
        print(f"| {name} | {seconds:.4f} | {differs[name]:.1e} |")
    print(f"ratio: {min(median['loop'], median['foreach']) / median['fused']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
