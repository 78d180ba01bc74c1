"""Training-step throughput of EmotionLLaMA against a bare ``LlamaForCausalLM`` with the same LoRA.

Equal work: both run the tiny preset's LlamaConfig on the same batch (a demo-pipeline batch, same positions
and attention mask), compute the LM head only over the same trailing positions (``logits_to_keep`` from the
answer start, as ``EmotionLLaMA.forward`` does) and take the same answer-token cross-entropy. The bare model
gets ``inputs_embeds`` from its embedding table, so the difference is our overhead: projectors (and their
optimizer state), the frozen frame encoder and the slot scatter. Timed in alternating blocks (median) so
machine noise hits both alike. Last line: ``ratio: R`` = bare CPU time / our CPU time per step (1.0 means no overhead; CPU time, because
wall time on a shared machine measures the neighbours; both are printed).

    python bench/train.py [--steps 20] [--blocks 5] [key=value ...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minigpt4.models.build import build_model  # noqa: E402
from minigpt4.data.collate import Collator  # noqa: E402
from minigpt4.config import split_cli  # noqa: E402
from minigpt4.data.run_config import load_config
from minigpt4.models.model import answer_logits_to_keep  # noqa: E402
from minigpt4.data.pipeline import prepare_data  # noqa: E402


def timed(step, n: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``n`` steps (CPU time is what a shared machine cannot inflate)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str]) -> None:
    args, overrides = split_cli(argv)
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads; 1 keeps timings stable on a shared machine (oversubscribed threads spin)")
    opts = parser.parse_args(args)
    torch.set_num_threads(opts.threads)
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
    keep = answer_logits_to_keep(labels)
    target = labels[:, labels.shape[1] - keep + 1:]

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
        logits = bare(inputs_embeds=embeds, attention_mask=mask, use_cache=False, logits_to_keep=keep).logits
        F.cross_entropy(logits[:, :-1].flatten(0, 1), target.flatten(), ignore_index=-100).backward()
        opt_bare.step()
        opt_bare.zero_grad(set_to_none=True)

    timed(ours, 3)
    timed(reference, 3)
    t_ours, t_bare = [], []
    for _ in range(opts.blocks):
        t_ours.append(timed(ours, opts.steps))
        t_bare.append(timed(reference, opts.steps))
    (ours_wall, ours_cpu), (bare_wall, bare_cpu) = ([statistics.median(x) for x in zip(*t)] for t in (t_ours, t_bare))
    print(f"batch {opts.batch_size} x {ids.shape[1]} positions ({keep} with logits), {tokens} tokens per step, "
          f"{torch.get_num_threads()} thread(s), {model.trainable_summary()}")
    print(f"median of {opts.blocks} blocks of {opts.steps} steps   {'wall ms/step':>12} {'CPU ms/step':>12} "
          f"{'tokens/s (CPU)':>15}")
    for name, wall, cpu in (("emotion-llama", ours_wall, ours_cpu), ("bare llama", bare_wall, bare_cpu)):
        print(f"{name:<38} {1000 * wall / opts.steps:>12.1f} {1000 * cpu / opts.steps:>12.1f} "
              f"{tokens * opts.steps / cpu:>15,.0f}")
    print(f"wall-time ratio: {bare_wall / ours_wall:.3f} (inflated by other load on a shared machine)")
    print(f"ratio: {bare_cpu / ours_cpu:.3f}")

if __name__ == "__main__":
    main(sys.argv[1:])
