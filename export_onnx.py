"""Export the text classifier path (MiniLM + projector + head) of a checkpoint to ONNX.

    python export_onnx.py --cfg-path train_configs/meld_text_classifier.yaml data.root=DIR \
        model.checkpoint=runs/meld_text_classifier/final --output model.onnx

Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (batch and sequence axes dynamic; build them with
``minigpt4.data.dialogue.DialogueTokenizer``), output ``logits`` in the corpus's label order. The export is checked
against PyTorch on a few samples of the validation split before the command succeeds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    from minigpt4.config import split_cli
    from minigpt4.data.run_config import load_config

    args, overrides = split_cli(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg-path", required=True, help="the run's YAML config (a text classifier config)")
    parser.add_argument("--output", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--samples", type=int, default=8, help="validation samples of the parity check")
    opts = parser.parse_args(args)

    import torch

    from minigpt4.models.build import build_model
    from minigpt4.data.collate import Collator
    from minigpt4.serving.onnx_export import check_exportable, export_onnx, onnx_logits, onnx_session
    from minigpt4.data.pipeline import prepare_data

    cfg = load_config(opts.cfg_path, overrides)
    if not cfg.model.checkpoint:
        raise SystemExit("export_onnx.py: set model.checkpoint=DIR (a checkpoint folder written by train.py)")
    model = build_model(cfg).eval()
    check_exportable(cfg, model)
    data = prepare_data(cfg, model)
    split = "val" if data.splits["val"] else "train"
    dataset = data.dataset(split, cfg, model)
    batch = Collator(model.tokenizer.pad_token_id, "prompt")([dataset[i] for i in range(min(opts.samples,
                                                                                           len(dataset)))])
    path = export_onnx(model, batch["text_input"], opts.output)
    with torch.no_grad():
        reference = model.classifier_logits(batch).numpy()
    gap = float(abs(onnx_logits(onnx_session(path), batch["text_input"]) - reference).max())
    if gap > 1e-4:
        raise SystemExit(f"export_onnx.py: {path} disagrees with PyTorch by {gap:.2e} (> 1e-4) on {split} samples")
    print(f"wrote {path} (max |onnxruntime - PyTorch| = {gap:.1e} on {len(reference)} {split} samples)")


if __name__ == "__main__":
    from minigpt4 import entry

    sys.exit(entry.run_main("export_onnx.py", main))
