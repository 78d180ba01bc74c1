"""Samples/s of evaluation on a model that answers: our batched generation (and label scoring) against
upstream-style generation, on the same checkpoint and the same held-out samples.

    python bench/eval.py [--checkpoint DIR] [--samples 64] [--batch-size 64] [--max-new-tokens 8] [--threads 1]
                         [key=value ...]

The model: ``--checkpoint`` (a ``final/`` folder, e.g. ``runs/cross/demo/test/final`` after ``make demo``, read
with its own ``config.yaml``), or else the demo recipe trained here on the train split (``training.loop.fit``, into a temporary folder). The
samples are the first ``--samples`` of the test split, which that training never saw.

Upstream style (Emotion-LLaMA's ``eval_emotion.py``): one sample per call, greedy, ``max_new_tokens=500``,
stopping at EOS. Ours: ``--batch-size`` samples per call with left-padded prompts, greedy, a small
``max_new_tokens`` (labels are one or two tokens), also stopping at EOS (a batch ends when every row has); or
one forward per batch scoring every label answer. Every run goes through ``evaluation.predict`` after an
untimed warm-up (median of ``--repeat`` passes), twice: on examples loaded beforehand (the evaluation loop alone: the headline) and on the
dataset itself (feature and frame reading included; ``bench/data.py`` benchmarks that part on its own).

Printed per generating run: new tokens per sample up to and including EOS, and decoding steps per call
(a batch runs until its longest answer ends); the parse rate of every run, and the agreement of each mode's
labels with upstream-style generation. Then the reason task (generated sentences): the same samples under
upstream's reason instruction, ours batched up to ``model.max_answer_tokens`` new tokens (what the server
generates reasons with) against upstream-style batch 1 up to 500, both stopping at EOS, with tokens per sample
and whether the texts agree. Timings are wall seconds and the process's CPU seconds (on a shared
machine wall time also measures the neighbours). Last two lines: ``parsed: F`` (the lower parse fraction of
the two generating runs) and ``ratio: R`` (samples/s of our generation over upstream-style, evaluation loop
alone, wall time).
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from minigpt4.models.build import build_model  # noqa: E402
from minigpt4.config import split_cli  # noqa: E402
from minigpt4.data.run_config import load_config
from minigpt4.data.collate import Collator  # noqa: E402
from minigpt4.data.dataset import EmotionDataset  # noqa: E402
from minigpt4.evaluation.predict import predict  # noqa: E402
from minigpt4.models.model import EmotionLLaMA  # noqa: E402
from minigpt4.data.pipeline import prepare_data  # noqa: E402
from minigpt4.evaluation.report import Prediction  # noqa: E402

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


@dataclass
class DecodeCounter:
    """Counts what the LM's ``generate`` produced: new tokens per row (up to and including EOS), steps per call."""

    eos: int
    tokens: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)

    def wrap(self, generate):
        @functools.wraps(generate)
        def counted(*args, **kwargs):
            out = generate(*args, **kwargs)  # with inputs_embeds, only the new tokens come back
            self.steps.append(out.shape[1])
            is_eos = out == self.eos
            ended = is_eos.any(dim=1)
            self.tokens += torch.where(ended, is_eos.int().argmax(dim=1) + 1, out.shape[1]).tolist()
            return out
        return counted

    def reset(self) -> None:
        self.tokens.clear()
        self.steps.clear()


def trained_checkpoint(cfg: DictConfig, folder: Path) -> Path:
    """Train ``cfg`` (the demo recipe by default) on its train split into ``folder``; return its ``final/``."""
    from minigpt4.training.loop import fit

    train_cfg = OmegaConf.merge(cfg, {"run": {"output_dir": str(folder)}})
    start = time.perf_counter()
    final = fit(train_cfg)
    print(f"trained {train_cfg.run.max_steps} steps on the train split in {time.perf_counter() - start:.0f}s")
    return final


def with_eval(cfg: DictConfig, **values: object) -> DictConfig:
    return OmegaConf.merge(cfg, {"eval": values})


def timed(model: EmotionLLaMA, dataset: Dataset, cfg: DictConfig, counter: DecodeCounter,
          repeat: int) -> tuple[list[Prediction], float, float]:
    """Predictions and the median wall and CPU seconds of ``repeat`` ``predict`` passes after a warm-up."""
    predict(model, dataset, with_eval(cfg, max_samples=2))
    walls, cpus = [], []
    for _ in range(repeat):
        counter.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        preds = predict(model, dataset, cfg)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return preds, statistics.median(walls), statistics.median(cpus)


def reason_examples(dataset: EmotionDataset, n: int) -> list[dict[str, Any]]:
    """The first ``n`` samples under the reason task's prompt (upstream's reason instruction), as the server
    builds them."""
    examples = []
    for i, sample in enumerate(dataset.samples[:n]):
        prompt = dataset.builder.build("reason", dataset.pools["reason"][0], dataset.slots,
                                       sample.text if dataset.spec.transcript else None)
        examples.append({**dataset[i], "ids": prompt.ids, "slots": prompt.slots})
    return examples


def timed_sentences(model: EmotionLLaMA, examples: list[dict[str, Any]], batch_size: int, limit: int,
                    counter: DecodeCounter, repeat: int) -> tuple[list[str], float, list[int]]:
    """Generated texts, the median wall seconds of ``repeat`` passes after a warm-up, and tokens per sample."""
    collate = Collator(model.tokenizer.pad_token_id, "prompt")

    def run(items: list[dict[str, Any]]) -> list[str]:
        return [t for i in range(0, len(items), batch_size)
                for t in model.generate(collate(items[i:i + batch_size]), max_new_tokens=limit)]

    run(examples[:2])
    walls = []
    for _ in range(repeat):
        counter.reset()
        start = time.perf_counter()
        texts = run(examples)
        walls.append(time.perf_counter() - start)
    return texts, statistics.median(walls), list(counter.tokens)


def sentence_figure(model: EmotionLLaMA, dataset: EmotionDataset, args: argparse.Namespace, limit: int,
                    counter: DecodeCounter) -> float:
    """Reason-task generation: ours batched against upstream-style batch 1 up to 500 tokens, both stopping at
    EOS; returns upstream-style wall time over ours."""
    examples = reason_examples(dataset, args.samples)
    runs = {f"upstream-style reason (bs 1, <= {UPSTREAM_MAX_NEW_TOKENS} new tokens)":
            timed_sentences(model, examples, 1, UPSTREAM_MAX_NEW_TOKENS, counter, args.repeat),
            f"ours reason (bs {args.batch_size}, <= {limit} new tokens)":
            timed_sentences(model, examples, args.batch_size, limit, counter, args.repeat)}
    print(f"\n{'reason task (generated sentences)':<48} {'samples/s':>9} {'tokens/s':>9} {'tokens/sample':>13} "
          f"{'longest':>7}")
    for name, (_, wall, tokens) in runs.items():
        print(f"{name:<48} {len(examples) / wall:>9.2f} {sum(tokens) / wall:>9.1f} {sum(tokens) / len(tokens):>13.2f} "
              f"{max(tokens):>7}")
    (up_texts, up_wall, up_tokens), (our_texts, our_wall, our_tokens) = runs.values()
    print(f"same text as upstream-style: {sum(a == b for a, b in zip(up_texts, our_texts))}/{len(examples)}")
    if max(our_tokens) >= limit:
        print(f"note: ours stops at {limit} new tokens (model.max_answer_tokens, what the server generates reasons "
              f"with) and upstream-style at {UPSTREAM_MAX_NEW_TOKENS}: samples/s compare unequal work, tokens/s "
              f"compare decoding speed ({sum(our_tokens) / our_wall / (sum(up_tokens) / up_wall):.1f}x)")
    if sum(our_tokens) / len(our_tokens) <= 3:
        print("note: this model answers a label and EOS (the demo recipe's tiny model is trained on label answers "
              "only), so these are not sentences; a checkpoint of a backbone that writes sentences "
              "(model.preset=smollm2_135m) measures real reasons")
    return up_wall / our_wall


def agreement(a: list[Prediction], b: list[Prediction]) -> tuple[int, int]:
    both = [(x.pred, y.pred) for x, y in zip(a, b) if x.pred and y.pred]
    return sum(x == y for x, y in both), len(both)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    args, overrides = split_cli(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a final/ checkpoint folder (default: train one here)")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per run (the median counts)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads; 1 keeps timings stable on a shared machine (oversubscribed threads spin)")
    return parser.parse_args(args), overrides


def report(label: str, runs: dict[str, tuple[list[Prediction], float, float, DecodeCounter | None]]) -> None:
    print(f"\n{label:<48} {'samples/s':>9} {'CPU s':>6} {'parsed':>7} {'accuracy':>8} {'tokens/sample':>13} "
          f"{'steps/call':>10}")
    for name, (preds, wall, cpu, counter) in runs.items():
        parsed = sum(bool(p.pred) for p in preds)
        acc = sum(p.pred[:1] == p.gold[:1] for p in preds) / len(preds)
        tokens = f"{sum(counter.tokens) / len(counter.tokens):.2f}" if counter else "-"
        steps = f"{sum(counter.steps) / len(counter.steps):.2f}" if counter else "-"
        print(f"{name:<48} {len(preds) / wall:>9.2f} {cpu:>6.2f} {parsed:>4}/{len(preds):<2} {acc:>8.3f} "
              f"{tokens:>13} {steps:>10}")


def main(argv: list[str]) -> None:
    args, overrides = parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = args.checkpoint / "config.yaml" if args.checkpoint else REPO / "train_configs" / "demo.yaml"
    cfg = load_config(recipe, overrides)  # a checkpoint's own config: its backbone, slots and labels
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or trained_checkpoint(cfg, Path(tmp) / "train")
        cfg = OmegaConf.merge(cfg, {"model": {"checkpoint": str(checkpoint)},
                                    "eval": {"split": "test", "max_samples": args.samples,
                                             "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}})
        model = build_model(cfg)
    dataset = prepare_data(cfg, model).dataset("test", cfg, model)
    if len(dataset) < args.samples:
        raise SystemExit(f"--samples {args.samples}: the test split has only {len(dataset)} samples")
    counter = DecodeCounter(model.tokenizer.eos_token_id)
    model.llm.generate = counter.wrap(model.llm.generate)
    print(f"checkpoint {'trained here' if args.checkpoint is None else checkpoint}; {args.samples} test-split samples (unseen in training), "
          f"{torch.get_num_threads()} CPU thread(s)")

    runs = {
        f"upstream-style generate (bs 1, <= {UPSTREAM_MAX_NEW_TOKENS} new tokens)": with_eval(
            cfg, mode="generate", batch_size=1, max_new_tokens=UPSTREAM_MAX_NEW_TOKENS),
        f"ours generate (bs {args.batch_size}, <= {args.max_new_tokens} new tokens)": with_eval(cfg, mode="generate"),
        f"ours score (bs {args.batch_size})": with_eval(cfg, mode="score"),
    }
    preloaded = Preloaded(dataset, args.samples)
    ratios: dict[str, float] = {}
    parsed = 1.0
    for label, source in (("evaluation loop", preloaded), ("with data loading", dataset)):
        results = {}
        for name, run_cfg in runs.items():
            preds, wall, cpu = timed(model, source, run_cfg, counter, args.repeat)
            results[name] = (preds, wall, cpu, DecodeCounter(counter.eos, list(counter.tokens), list(counter.steps))
                             if run_cfg.eval.mode == "generate" else None)
        report(label, results)
        (upstream, up_wall, up_cpu, _), (gen, gen_wall, gen_cpu, _), (score, score_wall, _, _) = results.values()
        for name, preds in (("generate", gen), ("score", score)):
            agree, both = agreement(upstream, preds)
            print(f"agreement with upstream-style, {name}: {agree}/{both} samples where both parsed")
        print(f"over upstream-style: generate {up_wall / gen_wall:.1f}x (CPU time {up_cpu / gen_cpu:.1f}x), "
              f"score {up_wall / score_wall:.1f}x")
        ratios[label] = up_wall / gen_wall
        parsed = min(parsed, *(sum(bool(p.pred) for p in preds) / len(preds) for preds in (upstream, gen)))
    sentences = sentence_figure(model, dataset, args, cfg.model.max_answer_tokens, counter)
    print(f"\ngenerate over upstream-style: {ratios['evaluation loop']:.1f}x evaluation loop, "
          f"{ratios['with data loading']:.1f}x with data loading")
    print(f"reason sentences over upstream-style: {sentences:.1f}x")
    print(f"parsed: {parsed:.3f}")
    print(f"ratio: {ratios['evaluation loop']:.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
