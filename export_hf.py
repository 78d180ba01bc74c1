"""Export a trained checkpoint as a standard Hugging Face folder (LoRA merged) plus the model's other parts.

    python export_hf.py model.checkpoint=runs/demo/final --output runs/demo/hf

``AutoModelForCausalLM.from_pretrained(OUT)`` and ``AutoTokenizer.from_pretrained(OUT)`` load the merged
backbone without this project; ``model.checkpoint=OUT`` makes every entry point of this project rebuild the full
model from ``OUT`` alone. Before the folder is published, the exported model is loaded back and must give the
checkpoint's label scores (candidate log-likelihoods) on a few samples within ``--tolerance``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from minigpt4 import entry

KEYS = ("model.checkpoint", "data.root")
EXAMPLES = ("python export_hf.py model.checkpoint=runs/demo/final --output runs/demo/hf",
            "python export_hf.py model.checkpoint=runs/meld/final data.root=/data/MELD --output exports/meld "
            "--max-shard-size 2GB",
            "python eval_emotion.py model.checkpoint=runs/demo/hf   # the project's loader reads the export")


def main(argv: list[str]) -> int:
    parser = entry.make_parser("export_hf.py", __doc__, KEYS, EXAMPLES, cfg_help=(
        "evaluation YAML whose eval: section is used for the parity check (default: the checkpoint's own "
        "config.yaml)"))
    parser.add_argument("--output", type=Path, required=True, help="folder to write (new, empty, or an earlier "
                        "export_hf.py folder with --overwrite)")
    parser.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard of the backbone")
    parser.add_argument("--check-samples", type=int, default=4, metavar="N",
                        help="samples of the parity check (0: skip it, e.g. without the corpus at hand)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed |export - checkpoint| label score (log-likelihood)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output")
    args, overrides = entry.parse(parser, argv)
    from minigpt4.config import ConfigError
    from minigpt4.runtime.output_folder import OutputFolderError
    from minigpt4.serving.hf_export import ExportError, export
    from minigpt4.serving.predictor import load_predict_config

    try:
        cfg = load_predict_config(args.cfg_path, overrides)
        used = args.cfg_path or Path(cfg.model.checkpoint) / "config.yaml"  # the checkpoint's own config
        entry.announce("export_hf.py", used, f"checkpoint {cfg.model.checkpoint}")
        gap = export(cfg, args.output, args.max_shard_size, args.check_samples, args.tolerance, args.overwrite)
    except (ConfigError, ExportError, OutputFolderError, FileNotFoundError) as err:
        print(f"export_hf.py: error: {err}", file=sys.stderr)
        return 1
    check = f"; label scores within {gap:.1e} of the checkpoint's" if gap is not None else ""
    print(f"wrote {args.output}{check}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
