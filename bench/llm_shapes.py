"""Cost of a LoRA training step on the real backbone (SmolLM2-135M-Instruct) for the MELD recipe's shapes.

Equal work: the same batch of MELD training prompts (``train_configs/meld_llm.yaml``: words only, two earlier
turns, 96-token budget) and the same answer loss, with LoRA r=16 on q/v of all 30 layers against the recipe's
top 6 (the backward pass then stops at layer 24). A forward pass without gradients (what scoring costs) is
timed too. CPU seconds per step, because wall time on a shared machine measures the neighbours (both printed).
Last line: ``ratio: R`` = all-layer CPU time / top-6 CPU time per step.

    python bench/llm_shapes.py data.root=MELD [--batch-size 16] [--steps 2] [key=value ...]   # needs: MELD CSVs
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minigpt4.config import split_cli  # noqa: E402
from minigpt4.data.collate import Collator  # noqa: E402
from minigpt4.data.pipeline import prepare_data  # noqa: E402
from minigpt4.data.run_config import load_config  # noqa: E402
from minigpt4.models.build import build_model  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "train_configs" / "meld_llm.yaml"


def timed(step, n: int) -> tuple[float, float]:
    """Wall and CPU seconds per call of ``step`` over ``n`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def costs(overrides: list[str], batch_size: int, steps: int) -> dict[str, tuple[float, float]]:
    """Seconds per training step and per forward of one model shape on the first ``batch_size`` prompts."""
    cfg = load_config(CONFIG, overrides)
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    dataset = data.dataset("train", cfg, model)
    batch = Collator(model.tokenizer.pad_token_id)([dataset[i] for i in range(batch_size)])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def train_step() -> None:
        model(batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    def forward() -> None:
        with torch.no_grad():
            model(batch)

    train_step()  # warm-up
    tokens = int(batch["attention_mask"].sum())
    print(f"  {tokens} tokens in the batch ({tokens / batch_size:.0f} per prompt)")
    return {"step": timed(train_step, steps), "forward": timed(forward, steps)}


def main(argv: list[str]) -> None:
    args, overrides = split_cli(argv)
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    opts = parser.parse_args(args)
    torch.set_num_threads(opts.threads)
    shapes = {"all 30 layers": ["model.lora.layers=[]"], "top 6 layers (recipe)": []}
    results = {}
    for name, extra in shapes.items():
        print(name)
        results[name] = costs([*overrides, *extra], opts.batch_size, opts.steps)
    for name, r in results.items():
        print(f"{name}: train step {r['step'][1]:.1f} CPU s ({r['step'][0]:.1f} s wall), forward "
              f"{r['forward'][1]:.1f} CPU s ({r['forward'][0]:.1f} s wall), batch of {opts.batch_size}")
    full, top = (r["step"][1] for r in results.values())
    print(f"ratio: {full / top:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
