"""Convert an upstream Emotion-LLaMA ``checkpoint_best.pth`` into this project's checkpoint folder.

    python convert_checkpoint.py --upstream checkpoint_best.pth --llm-config /models/Llama-2-7b-chat-hf \\
        --output checkpoints/emotion_llama [--cfg-path train_configs/X.yaml] [key=value ...]

Only ``config.json`` is read from ``--llm-config``: the model is built on the ``meta`` device, so no LLaMA or
EVA weights are needed and none are loaded. Without ``--cfg-path`` the setup is upstream's: preset ``llama2_7b``
on the MERR layout, whose FaceMAE / VideoMAE / HuBERT features are 1024 wide (the embedded demo corpus's
extracted features are narrower and would not fit upstream's projectors). The output folder holds ``trainable.safetensors`` and the resolved ``config.yaml``; later runs load it
with ``model.checkpoint=OUTPUT`` and never unpickle. One coverage line is printed; any unknown key or missing
parameter is an error naming it (exit status 1) and nothing is written.
"""
from __future__ import annotations

import argparse
import sys

from minigpt4.config import split_cli

from minigpt4.data.run_config import load_config
from minigpt4.models.convert import convert_to_folder


def main(argv: list[str]) -> int:
    args, overrides = split_cli(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="upstream checkpoint (.pth with a 'model' state dict)")
    parser.add_argument("--llm-config", required=True, help="folder with the backbone's Hugging Face config.json")
    parser.add_argument("--output", required=True, help="checkpoint folder to create (must not exist)")
    parser.add_argument("--cfg-path", default=None, help="run config describing the model (default: preset llama2_7b, MERR layout)")
    opts = parser.parse_args(args)
    if opts.cfg_path is None:
        upstream_setup = {"model.preset": "llama2_7b", "data.corpus": "merr"}
        given = {o.split("=", 1)[0] for o in overrides}
        overrides = [f"{k}={v}" for k, v in upstream_setup.items() if k not in given] + overrides
    cfg = load_config(opts.cfg_path, overrides, allow_missing=True)
    try:
        convert_to_folder(opts.upstream, opts.llm_config, opts.output, cfg)
    except (KeyError, OSError, ValueError) as err:  # unknown/missing keys, absent or existing paths, bad files
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 1
    print(f"wrote {opts.output}: load it with model.checkpoint={opts.output}")
    return 0


if __name__ == "__main__":
    from minigpt4 import entry

    sys.exit(entry.run_main("convert_checkpoint.py", main))
