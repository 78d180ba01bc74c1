"""Train EmotionLLaMA: ``python train.py --cfg-path train_configs/demo.yaml [key=value ...]``.

Multi-process: ``torchrun --nproc-per-node N train.py --cfg-path ...`` (DDP; gloo on CPU, nccl on GPU), or
DeepSpeed ZeRO-2 with ``run.deepspeed=train_configs/deepspeed_zero2.json``. The final checkpoint folder
(``<run.output_dir>/final``) is what ``model.checkpoint=`` of the other entry points takes.
"""
from __future__ import annotations

import argparse
import sys

from minigpt4.config import load_config, split_cli
from minigpt4.train_loop import fit


def main(argv: list[str]) -> None:
    args, overrides = split_cli(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg-path", default=None, help="YAML run config (default: the embedded demo setup)")
    opts = parser.parse_args(args)
    final = fit(load_config(opts.cfg_path, overrides))
    print(f"final checkpoint: {final}")


if __name__ == "__main__":
    main(sys.argv[1:])
