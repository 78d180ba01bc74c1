"""Samples/s of evaluation: our batched generation and label scoring against upstream-style generation, on the
same tiny model and the same demo test samples.

    python bench/eval.py [--samples 64] [--batch-size 64] [--max-new-tokens 8]

Upstream style (Emotion-LLaMA's ``eval_emotion.py``): one sample per call, greedy, ``max_new_tokens=500``
(stopping at EOS, as its stopping criterion did). Ours: ``eval.batch_size`` samples per call with left-padded
prompts and a small ``max_new_tokens`` (labels are a few tokens), or one forward per batch scoring every
label answer. All three go through ``evaluation.predict`` (data loading included) after an untimed warm-up.
The tiny model is first overfitted briefly (projectors + LoRA, AdamW) on some demo samples so that it
answers with labels and stops at EOS, which makes the agreement check meaningful: it compares the parsed
labels of each mode with upstream-style generation wherever both parsed. Last line: ``ratio: R`` (samples/s of
our generation over upstream-style).
"""
from __future__ import annotations

import argparse
import time

import torch
from omegaconf import DictConfig, OmegaConf

from minigpt4.build import build_model
from minigpt4.collate import Collator
from minigpt4.config import load_config
from minigpt4.evaluation import predict
from minigpt4.model import EmotionLLaMA
from minigpt4.pipeline import prepare_data
from minigpt4.report import Prediction

UPSTREAM_MAX_NEW_TOKENS = 500


def overfit(model: EmotionLLaMA, examples: list[dict], steps: int) -> float:
    batch = Collator(model.tokenizer.pad_token_id, "train")(examples)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.detach().item()


def with_eval(cfg: DictConfig, **values: object) -> DictConfig:
    return OmegaConf.merge(cfg, {"eval": values})


def timed(model: EmotionLLaMA, dataset, cfg: DictConfig) -> tuple[list[Prediction], float]:
    predict(model, dataset, with_eval(cfg, max_samples=min(2, cfg.eval.max_samples)))  # warm-up
    start = time.perf_counter()
    preds = predict(model, dataset, cfg)
    return preds, len(preds) / (time.perf_counter() - start)


def agreement(a: list[Prediction], b: list[Prediction]) -> tuple[int, int]:
    both = [(x.pred, y.pred) for x, y in zip(a, b) if x.pred and y.pred]
    return sum(x == y for x, y in both), len(both)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--overfit-samples", type=int, default=16)
    parser.add_argument("--overfit-steps", type=int, default=60)
    args = parser.parse_args()

    cfg = load_config(None, [f"eval.max_samples={args.samples}", f"eval.batch_size={args.batch_size}",
                             f"eval.max_new_tokens={args.max_new_tokens}"])
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    dataset = data.dataset("test", cfg, model)
    if len(dataset) < args.samples:
        raise SystemExit(f"--samples {args.samples}: the demo test split has only {len(dataset)}")
    loss = overfit(model, [dataset[i] for i in range(args.overfit_samples)], args.overfit_steps)
    print(f"overfitted on {args.overfit_samples} samples for {args.overfit_steps} steps: loss {loss:.4f}")

    runs = {
        "upstream-style generate (bs 1, 500 new tokens)": with_eval(
            cfg, mode="generate", batch_size=1, max_new_tokens=UPSTREAM_MAX_NEW_TOKENS),
        f"ours generate (bs {args.batch_size}, {args.max_new_tokens} new tokens)": with_eval(cfg, mode="generate"),
        f"ours score (bs {args.batch_size})": with_eval(cfg, mode="score"),
    }
    results = {name: timed(model, dataset, run_cfg) for name, run_cfg in runs.items()}
    (upstream, up_rate), (gen, gen_rate), (score, score_rate) = results.values()

    print(f"{'run':<50} {'samples/s':>10} {'parsed':>7} {'accuracy':>9}")
    for name, (preds, rate) in results.items():
        parsed = sum(bool(p.pred) for p in preds)
        acc = sum(p.pred[:1] == p.gold[:1] for p in preds) / len(preds)
        print(f"{name:<50} {rate:>10.2f} {parsed:>4}/{len(preds):<2} {acc:>9.3f}")
    for name, preds in (("generate", gen), ("score", score)):
        agree, both = agreement(upstream, preds)
        print(f"agreement with upstream-style, {name}: {agree}/{both} samples where both parsed")
    print(f"score over upstream-style: {score_rate / up_rate:.1f}x")
    print(f"ratio: {gen_rate / up_rate:.1f}")


if __name__ == "__main__":
    main()
