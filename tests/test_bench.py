"""Benchmark instrumentation: what bench/eval.py reports as tokens per sample and decoding steps."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from minigpt4.models.model import answer_logits_to_keep

REPO = Path(__file__).resolve().parents[1]


def load_bench(file: str):
    """A ``bench/`` script as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{Path(file).stem}", REPO / "bench" / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_decode_counter_counts_new_tokens_up_to_eos():
    eos, pad = 2, 3
    outputs = [torch.tensor([[7, eos, pad, pad], [8, 9, 9, eos], [5, 5, 5, 5]]), torch.tensor([[eos]])]
    counter = load_bench("eval.py").DecodeCounter(eos)
    generate = counter.wrap(lambda: outputs.pop(0))
    generate()
    generate()
    assert counter.tokens == [2, 4, 4, 1]  # EOS counts; a row that never ended counts every step
    assert counter.steps == [4, 1]
    counter.reset()
    assert counter.tokens == [] and counter.steps == []


def test_logits_to_keep_starts_just_before_the_earliest_answer():
    labels = torch.full((2, 10), -100)
    labels[0, 6:8] = 1
    labels[1, 4:9] = 1
    assert answer_logits_to_keep(labels) == 7  # positions 3..9: position 3 predicts the first answer token
    labels[1, 0] = 1
    assert answer_logits_to_keep(labels) == 10


def test_bf16_bench_times_both_precisions_on_the_same_batch(capsys):
    module = load_bench("bf16_encoder.py")
    assert module.main(["--encoder", "minilm", "--steps", "1", "--length", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split(" | ")[0].strip("| "): float(line.split(" | ")[1]) for line in lines[3:5]}
    assert set(rows) == {"fp32", "bf16 autocast"} and all(v > 0 for v in rows.values())
    assert lines[-1].startswith("ratio: ")
    assert abs(float(lines[-1][7:]) - rows["fp32"] / rows["bf16 autocast"]) < 0.05


def test_fused_adamw_bench_times_the_three_implementations_on_the_same_weights(capsys):
    module = load_bench("fused_adamw.py")
    assert module.main(["--encoder", "minilm", "--steps", "1", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split(" | ")[0].strip("| "): line.strip("| ").split(" | ") for line in lines[3:6]}
    assert set(rows) == {"loop", "foreach", "fused"}
    assert float(rows["loop"][2]) == 0 and 0 <= float(rows["fused"][2]) < 1e-5  # same update up to rounding
    seconds = {name: float(row[1]) for name, row in rows.items()}
    assert lines[-1].startswith("ratio: ")
    ratio = min(seconds["loop"], seconds["foreach"]) / seconds["fused"]
    assert abs(float(lines[-1][7:]) - ratio) < 0.05 * ratio + 0.01
