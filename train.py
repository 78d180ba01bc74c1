"""Train EmotionLLaMA once: config -> model -> ``fit`` -> ``<run.output_dir>/final``.

Multi-process: ``torchrun --nproc-per-node N train.py ...`` (DDP; gloo on CPU, nccl on GPU), or DeepSpeed ZeRO-2
with ``run.deepspeed=train_configs/deepspeed_zero2.json``. The final checkpoint folder is what
``model.checkpoint=`` of the other entry points takes.
"""
from __future__ import annotations

import os
import sys

from minigpt4 import entry

KEYS = ("run.output_dir", "run.max_steps", "run.lr", "run.batch_size", "run.seed", "run.balance", "data.corpus",
        "data.root", "data.label_mode", "model.preset", "model.checkpoint", "run.resume")
EXAMPLES = ("python train.py",
            "python train.py run.max_steps=100 run.output_dir=runs/demo_short",
            "torchrun --nproc-per-node 2 train.py run.output_dir=runs/demo_ddp",
            "python train.py --cfg-path train_configs/meld.yaml data.root=/data/MELD")


def main(argv: list[str]) -> int:
    parser = entry.make_parser("train.py", __doc__, KEYS, EXAMPLES,
                               default="; writes runs/demo (make demo's folds use runs/cross/demo)")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard an earlier train.py run in run.output_dir (never a folder it did not create)")
    args, overrides = entry.parse(parser, argv)
    from minigpt4.data.run_config import load_config
    from minigpt4.evaluation.explain import explains, held_out_sentence
    from minigpt4.training.loop import TrainingInterrupted, fit

    cfg = load_config(entry.recipe(args.cfg_path), overrides)
    entry.announce("train.py", args.cfg_path, f"run folder {cfg.run.output_dir}")
    try:
        final = fit(cfg, overwrite=args.overwrite)
    except TrainingInterrupted as err:
        print(f"train.py: {err}", file=sys.stderr)
        return err.exit_status  # 128 + the signal, as if it had ended the process
    print(f"final checkpoint: {final}")
    if explains(cfg) and os.environ.get("RANK", "0") == "0":  # one process speaks after torchrun
        said = held_out_sentence(cfg, final)
        print(f"held-out {said['sample']} ({said['gold']}): \"{said['transcript']}\" -> {said['predicted']}: "
              f"{said['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(entry.run_main("train.py", main))
