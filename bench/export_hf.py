"""Memory of ``export_hf.py`` against merging into a copy: peak resident memory above the loaded model while
exporting a LoRA checkpoint of a ~100M-parameter random LLaMA (the tiny preset, widened), on CPU.

    python bench/export_hf.py [--hidden 1024] [--layers 8] [--shard 64MB]

Each way runs in its own process, which first builds the checkpoint's model (backbone + LoRA), then records
its resident memory, then exports: ``inplace`` is the project's path (peft ``merge_and_unload`` on the loaded
model, ``save_pretrained`` in shards); ``copy`` merges a deep copy and saves its whole state dict at once, the
straightforward way. Figures: the extra peak in MB and as a multiple of the backbone's weight bytes. Last
line: ``ratio: R`` (copy's extra peak over inplace's).
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from minigpt4.data.run_config import load_config
from minigpt4.models import checkpoint as ckpt
from minigpt4.models.build import build_model
from minigpt4.models.hf_folder import write_export

MB = 2**20


def rss() -> float:
    """Resident memory now, in MB (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / MB


def peak() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def overrides(hidden: int, layers: int) -> list[str]:
    return [f"model.llm.hidden_size={hidden}", f"model.llm.num_layers={layers}", "model.llm.num_heads=16",
            "model.llm.num_kv_heads=16", f"model.llm.intermediate_size={hidden * 11 // 4}"]


def measure(way: str, folder: Path, shard: str) -> dict[str, float]:
    """In this process: load the checkpoint, then export it ``way``; memory figures in MB."""
    cfg = load_config(folder / "final" / ckpt.CONFIG, [f"model.checkpoint={folder / 'final'}"])
    model = build_model(cfg).eval()
    weights = sum(t.numel() * t.element_size() for t in model.llm.base_model.model.state_dict().values()) / MB
    before = rss()
    out = folder / way
    out.mkdir()
    if way == "inplace":
        write_export(model, cfg, ["a"], out, shard)
    else:
        merged = copy.deepcopy(model.llm).merge_and_unload()
        save_file({k: v.contiguous() for k, v in merged.state_dict().items()}, str(out / "model.safetensors"))
    return {"weights": weights, "extra": peak() - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--shard", default="64MB", help="max_shard_size of the in-place export")
    parser.add_argument("--way", choices=("inplace", "copy"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(json.dumps(measure(args.way, args.folder, args.shard)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, overrides(args.hidden, args.layers))
        model = build_model(cfg)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.02)
        ckpt.write_checkpoint(Path(tmp) / "final", model, cfg)
        del model
        figures = {}
        for way in ("inplace", "copy"):
            cmd = [sys.executable, __file__, "--way", way, "--folder", tmp, "--shard", args.shard]
            printed = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            figures[way] = json.loads(printed.splitlines()[-1])
    weights = figures["inplace"]["weights"]
    print(f"backbone weights: {weights:.0f} MB (hidden {args.hidden}, {args.layers} layers, float32)")
    print(f"{'way':<8} {'extra peak MB':>14} {'x weights':>10}")
    for way, f in figures.items():
        print(f"{way:<8} {f['extra']:>14.0f} {f['extra'] / weights:>10.2f}")
    print(f"ratio: {figures['copy']['extra'] / max(figures['inplace']['extra'], 1.0):.2f}")


if __name__ == "__main__":
    main()
