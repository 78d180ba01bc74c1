"""Utterances/s of the text classifier path (MiniLM + projector + head) in PyTorch and in onnxruntime, on CPU,
on the same real utterances in the same batches.

    python bench/onnx.py --cfg-path train_configs/meld_text_classifier.yaml data.root=DIR \
        [model.checkpoint=runs/meld_text_classifier/final] [--samples 256] [--batch-size 32] [--threads 2]

Without ``model.checkpoint`` the untrained model is timed (the cost does not depend on the weights). The
utterances are the first ``--samples`` of the validation split, tokenised (with their dialogue context)
before timing; both runtimes get an untimed warm-up batch and the same thread count. Last line:
``ratio: R`` (onnxruntime utterances/s over PyTorch's).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder leads sys.path, where this file would shadow the ``onnx`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from minigpt4.models.build import build_model  # noqa: E402
from minigpt4.data.collate import Collator  # noqa: E402
from minigpt4.config import split_cli  # noqa: E402
from minigpt4.data.run_config import load_config
from minigpt4.serving.onnx_export import check_exportable, export_onnx, onnx_logits, onnx_session  # noqa: E402
from minigpt4.data.pipeline import prepare_data  # noqa: E402


def timed(run, batches: list) -> float:
    """Seconds for one pass over ``batches`` after one untimed warm-up call."""
    run(batches[0])
    start = time.perf_counter()
    for batch in batches:
        run(batch)
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    args, overrides = split_cli(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg-path", required=True)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    opts = parser.parse_args(args)
    torch.set_num_threads(opts.threads)
    cfg = load_config(opts.cfg_path, overrides)
    model = build_model(cfg).eval()
    check_exportable(cfg, model)
    data = prepare_data(cfg, model)
    dataset = data.dataset("val" if data.splits["val"] else "train", cfg, model)
    n = min(opts.samples, len(dataset))
    collate = Collator(model.tokenizer.pad_token_id, "prompt")
    batches = [collate([dataset[i] for i in range(s, min(s + opts.batch_size, n))])["text_input"]
               for s in range(0, n, opts.batch_size)]
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, batches[0], Path(tmp) / "model.onnx")
        session = onnx_session(path, threads=opts.threads)
        with torch.no_grad():
            torch_s = timed(lambda b: model.classifier_logits({"text_input": b}), batches)
        ort_s = timed(lambda b: onnx_logits(session, b), batches)
    print(f"{n} utterances, batch {opts.batch_size}, {opts.threads} thread(s)")
    print(f"pytorch:     {n / torch_s:8.1f} utterances/s")
    print(f"onnxruntime: {n / ort_s:8.1f} utterances/s")
    print(f"ratio: {torch_s / ort_s:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
