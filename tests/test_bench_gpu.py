"""bench/gpu.py's code path at a tiny shape on CPU: the 7B run on a lent GPU runs exactly this."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_run_trains_scores_and_generates(capsys):
    _bench_gpu().main(["--tiny", "--max-batch", "2"])
    out = capsys.readouterr().out
    assert re.search(r"prompt: 56 tokens \(8 slot \+ 48 text\), answer 8", out)
    assert re.search(r"LoRA r=8 q/v \+ projectors, AdamW\): batch 2 \(largest tried that fits, <= 2\), "
                     r"[\d.]+ samples/s, peak memory [\d.]+ GiB", out)
    assert re.search(r"score-mode evaluation \(batch 4, 9 candidate answers\): [\d.]+ samples/s", out)
    assert re.search(r"generation \(batch 1, greedy, KV cache, 8 new tokens\): [\d.]+ samples/s", out)
    assert float(out.strip().splitlines()[-1].removeprefix("ratio: ")) > 0


def test_the_full_shape_is_upstreams():
    bench = _bench_gpu()
    shape = bench.SHAPES["7b"]
    assert (shape.hidden, shape.layers, shape.intermediate, shape.vocab) == (4096, 32, 11008, 32000)  # LLaMA-2-7B
    assert (shape.vit_width, shape.vit_depth, shape.image // shape.patch) == (1408, 39, 32)  # EVA ViT-g at 448
    assert (shape.image // shape.patch) ** 2 // 4 + len(bench.FEATURES) + 1 == 260  # image + face/video/audio + CLS


def test_the_full_shape_refuses_a_cpu():
    with pytest.raises(SystemExit, match="needs a GPU"):
        _bench_gpu().main(["--device", "cpu"])
