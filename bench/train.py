"""Training-step throughput of EmotionLLaMA against a bare ``LlamaForCausalLM`` with the same LoRA.

Both run the tiny preset's LlamaConfig on the same token count (a demo-pipeline batch); the bare model gets
``inputs_embeds`` from its embedding table, so the difference is our overhead: projectors, the frozen frame
encoder, slot scatter and the loss. Timed in alternating blocks (median) so machine noise hits both alike.
Last line: ``ratio: R`` = bare time / our time (1.0 means no overhead).

    python bench/train.py [--steps 20] [--blocks 5] [key=value ...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minigpt4.build import build_model  # noqa: E402
from minigpt4.collate import Collator  # noqa: E402
from minigpt4.config import load_config, split_cli  # noqa: E402
from minigpt4.pipeline import prepare_data  # noqa: E402


def timed(step, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    args, overrides = split_cli(argv)
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    opts = parser.parse_args(args)
    torch.manual_seed(0)
    cfg = load_config(None, overrides)
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    ds = data.dataset("train", cfg, model, train=True)
    batch = Collator(model.tokenizer.pad_token_id, "train")([ds[i] for i in range(opts.batch_size)])
    tokens = int(batch["attention_mask"].sum())

    base = model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm
    bare = LlamaForCausalLM(base.config)
    bare.requires_grad_(False)
    lora = cfg.model.lora
    bare = get_peft_model(bare, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                           target_modules=list(lora.target_modules), task_type="CAUSAL_LM"))
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]

    opt_ours = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    opt_bare = torch.optim.AdamW([p for p in bare.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    bare.train()

    def ours() -> None:
        model(batch).loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def reference() -> None:
        embeds = bare.get_input_embeddings()(ids)
        bare(inputs_embeds=embeds, attention_mask=mask, labels=labels, use_cache=False).loss.backward()
        opt_bare.step()
        opt_bare.zero_grad(set_to_none=True)

    timed(ours, 3)
    timed(reference, 3)
    t_ours, t_bare = [], []
    for _ in range(opts.blocks):
        t_ours.append(timed(ours, opts.steps))
        t_bare.append(timed(reference, opts.steps))
    ours_s, bare_s = statistics.median(t_ours), statistics.median(t_bare)
    print(f"batch {opts.batch_size} x {ids.shape[1]} positions, {tokens} tokens per step, "
          f"{model.trainable_summary()}")
    print(f"emotion-llama: {tokens * opts.steps / ours_s:,.0f} tokens/s ({1000 * ours_s / opts.steps:.1f} ms/step)")
    print(f"bare llama:    {tokens * opts.steps / bare_s:,.0f} tokens/s ({1000 * bare_s / opts.steps:.1f} ms/step)")
    print(f"ratio: {bare_s / ours_s:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
