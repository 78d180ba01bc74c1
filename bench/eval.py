"""Samples/s of evaluation: our batched generation and label scoring against upstream-style generation, on the
same tiny model and the same demo test samples.

    python bench/eval.py [--samples 64] [--batch-size 64] [--max-new-tokens 8] [--threads 1]

Upstream style (Emotion-LLaMA's ``eval_emotion.py``): one sample per call, greedy, ``max_new_tokens=500``
(stopping at EOS, as its stopping criterion did). Ours: ``--batch-size`` samples per call with left-padded
prompts and a small ``max_new_tokens`` (labels are a few tokens), or one forward per batch scoring every label
answer. Every run goes through ``evaluation.predict`` after an untimed warm-up, twice: on examples loaded
beforehand (the evaluation loop alone: the headline) and on the dataset itself (feature and frame reading
included; that per-sample cost is the same for every mode and has its own benchmark, ``bench/data.py``).

The tiny model is first overfitted briefly (projectors + LoRA, AdamW) on some demo samples so that it answers
with labels and stops at EOS, which makes the agreement check meaningful: it compares each mode's parsed labels
with upstream-style generation wherever both parsed. Last line: ``ratio: R`` (samples/s of our generation over
upstream-style, evaluation loop alone).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from minigpt4.build import build_model
from minigpt4.collate import Collator
from minigpt4.config import load_config
from minigpt4.data import EmotionDataset
from minigpt4.evaluation import predict
from minigpt4.model import EmotionLLaMA
from minigpt4.pipeline import prepare_data
from minigpt4.report import Prediction

UPSTREAM_MAX_NEW_TOKENS = 500


class Preloaded(Dataset):
    """A dataset's first ``n`` examples held in memory, with what ``predict`` reads (corpus, builder)."""

    def __init__(self, dataset: EmotionDataset, n: int) -> None:
        self.examples = [dataset[i] for i in range(n)]
        self.corpus, self.builder = dataset.corpus, dataset.builder

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.examples[index]


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


def timed(model: EmotionLLaMA, dataset: Dataset, cfg: DictConfig) -> tuple[list[Prediction], float]:
    predict(model, dataset, with_eval(cfg, max_samples=2))  # warm-up
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
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads; 1 keeps timings stable on a shared machine (oversubscribed threads spin)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_config(None, [f"eval.max_samples={args.samples}", f"eval.batch_size={args.batch_size}",
                             f"eval.max_new_tokens={args.max_new_tokens}"])
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    dataset = data.dataset("test", cfg, model)
    if len(dataset) < args.samples:
        raise SystemExit(f"--samples {args.samples}: the demo test split has only {len(dataset)}")
    loss = overfit(model, [dataset[i] for i in range(args.overfit_samples)], args.overfit_steps)
    print(f"overfitted on {args.overfit_samples} samples for {args.overfit_steps} steps: loss {loss:.4f}; "
          f"{args.samples} demo test samples, {torch.get_num_threads()} CPU thread(s)")

    runs = {
        "upstream-style generate (bs 1, 500 new tokens)": with_eval(
            cfg, mode="generate", batch_size=1, max_new_tokens=UPSTREAM_MAX_NEW_TOKENS),
        f"ours generate (bs {args.batch_size}, {args.max_new_tokens} new tokens)": with_eval(cfg, mode="generate"),
        f"ours score (bs {args.batch_size})": with_eval(cfg, mode="score"),
    }
    preloaded = Preloaded(dataset, args.samples)
    ratio = 0.0
    for label, source in (("evaluation loop", preloaded), ("with data loading", dataset)):
        results = {name: timed(model, source, run_cfg) for name, run_cfg in runs.items()}
        print(f"\n{label:<50} {'samples/s':>10} {'parsed':>7} {'accuracy':>9}")
        for name, (preds, rate) in results.items():
            parsed = sum(bool(p.pred) for p in preds)
            acc = sum(p.pred[:1] == p.gold[:1] for p in preds) / len(preds)
            print(f"{name:<50} {rate:>10.2f} {parsed:>4}/{len(preds):<2} {acc:>9.3f}")
        (upstream, up_rate), (gen, gen_rate), (score, score_rate) = results.values()
        for name, preds in (("generate", gen), ("score", score)):
            agree, both = agreement(upstream, preds)
            print(f"agreement with upstream-style, {name}: {agree}/{both} samples where both parsed")
        print(f"over upstream-style: generate {gen_rate / up_rate:.1f}x, score {score_rate / up_rate:.1f}x")
        if source is preloaded:
            ratio = gen_rate / up_rate
    print(f"ratio: {ratio:.1f}")


if __name__ == "__main__":
    main()
