"""What every entry point shares before its real work: one embedded default, one first log line, one --help.

With no ``--cfg-path`` every entry point (train.py, eval_emotion.py, cross_train.py, predict.py, app.py) runs
the shipped demo recipe, ``train_configs/demo.yaml``, and its first line says so. Entry points that need a
trained model (evaluation, prediction, the page) take the newest demo checkpoint when none is named, and
otherwise stop with the command that makes one: an untrained model is never evaluated by accident.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from minigpt4.config import ENV_OVERRIDES, field_doc, split_cli
from minigpt4.data.run_config import load_config
from minigpt4.models.checkpoint import WEIGHTS
from minigpt4.runtime.errors import UserError

REPO = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO / "train_configs" / "demo.yaml"
"""The embedded default of every entry point."""
MAKE_CHECKPOINT = "`make demo` (cross-validation) or `python train.py` (one run)"


def shown(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies below it (what a user would type)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def recipe(cfg_path: str | Path | None) -> Path:
    """The config file an entry point runs: ``--cfg-path`` when given, else the demo recipe."""
    return Path(cfg_path) if cfg_path else DEMO_RECIPE


def announce(program: str, cfg_path: str | Path | None, detail: str = "") -> None:
    """The first log line: which config runs (and that it is the embedded default), plus ``detail``."""
    if os.environ.get("RANK", "0") != "0":
        return
    source = (f"embedded demo recipe {shown(DEMO_RECIPE)} (no --cfg-path)" if not cfg_path
              else f"config {shown(cfg_path)}")
    env = os.environ.get(ENV_OVERRIDES, "").strip()
    extra = f"; {ENV_OVERRIDES}: {env}" if env else ""
    print(f"{program}: {source}{extra}{'; ' + detail if detail else ''}", file=sys.stderr, flush=True)


def demo_checkpoints() -> list[Path]:
    """Where the demo's whole-pool runs put their weights: ``python train.py`` and ``make demo``'s test run."""
    out = Path(load_config(DEMO_RECIPE).run.output_dir)
    return [out / "final", Path("runs") / "cross" / DEMO_RECIPE.stem / "test" / "final"]


def newest_demo_checkpoint() -> Path | None:
    """The most recently written finished demo checkpoint, or None when there is none yet."""

    found = [p for p in demo_checkpoints() if (p / WEIGHTS).is_file()]
    return max(found, key=lambda p: (p / WEIGHTS).stat().st_mtime) if found else None


def pick_checkpoint(program: str, cfg_path: str | Path | None, given: str | None,
                    untrained: bool | None = None) -> tuple[str | None, str]:
    """The weights of an entry point that needs a trained model (evaluation, prediction, the page), and a
    note on them for :func:`announce`.

    ``given`` (from the command line or the config) is kept; without it and without ``--cfg-path``, the newest
    demo checkpoint; with none at all this stops naming the command that trains one. ``untrained`` is the
    ``--untrained`` flag of entry points that offer it (None: not offered); only it yields no checkpoint.
    """
    if given:
        return given, f"checkpoint {given}"
    if untrained:
        return None, "UNTRAINED initial weights (--untrained)"
    escape = ", or --untrained to use the initial weights on purpose" if untrained is not None else ""
    if cfg_path:
        raise SystemExit(f"{program}: error: {cfg_path} names no model.checkpoint. Pass model.checkpoint=RUN/final "
                         f"(train one with {MAKE_CHECKPOINT}){escape}.")
    found = newest_demo_checkpoint()
    if found is None:
        raise SystemExit(f"{program}: error: no demo checkpoint yet (looked for "
                         f"{' and '.join(map(str, demo_checkpoints()))}). Make one with {MAKE_CHECKPOINT}, then "
                         f"rerun this command; or name one with model.checkpoint=RUN/final.")
    return str(found), f"checkpoint {found} (newest demo checkpoint)"


def load_trained(program: str, cfg_path: str | Path | None, overrides: Sequence[str],
                 untrained: bool = False) -> tuple[DictConfig, str]:
    """Config (``--cfg-path`` or the demo recipe) with the checkpoint :func:`pick_checkpoint` chooses, and
    its note for :func:`announce`."""
    cfg = load_config(cfg_path or DEMO_RECIPE, overrides)
    given = cfg.model.checkpoint or cfg.model.upstream_checkpoint
    checkpoint, note = pick_checkpoint(program, cfg_path, given, untrained)
    if checkpoint and not given:
        cfg.model.checkpoint = checkpoint
    return cfg, note


NEWEST_DEMO_CHECKPOINT = ("; model.checkpoint defaults to the newest demo checkpoint\n  (runs/demo/final from "
                          "`python train.py`, runs/cross/demo/test/final from `make demo`)")
"""What --help says about the weights evaluation, predict.py and app.py take by default (``pick_checkpoint``)."""

def make_serving_parser(program: str, doc: str, keys: Sequence[str], examples: Sequence[str],
                        default: str = "") -> argparse.ArgumentParser:
    """predict.py's and app.py's parser: the model comes from the checkpoint, --cfg-path gives only eval:."""
    return make_parser(program, doc, keys, examples, default=NEWEST_DEMO_CHECKPOINT + default,
                       cfg_help="evaluation YAML whose eval: section says how to predict (default: the "
                                "checkpoint's own config.yaml)")


def make_parser(program: str, doc: str, keys: Sequence[str], examples: Sequence[str],
                default: str = "", cfg_help: str | None = None) -> argparse.ArgumentParser:
    """An entry point's parser: ``--cfg-path``, and a --help that lists the embedded default, the config
    keys most often changed (their demo values and schema docs) and examples."""
    demo = load_config(DEMO_RECIPE)
    values = [yaml_value(OmegaConf.select(demo, k)) for k in keys]
    width = max(len(k) for k in keys) + 2
    vwidth = max(len(v) for v in values) + 2
    key_lines = [textwrap.fill(field_doc(k) or "-", 116, initial_indent=f"  {k:<{width}}{v:<{vwidth}}",
                               subsequent_indent=" " * (2 + width + vwidth)) for k, v in zip(keys, values)]
    epilog = "\n".join([
        "embedded default:",
        f"  without --cfg-path: the shipped demo recipe {shown(DEMO_RECIPE)} (tiny random LLaMA + LoRA on the",
        f"  synthetic demo corpus; CPU, no download){default}",
        "",
        "config keys most often changed (key=value after the flags; column 2: the demo recipe's value):",
        *key_lines,
        f"  (any key of minigpt4/config/schema.py works; {ENV_OVERRIDES}='k=v ...' adds overrides to every command)",
        "",
        "examples:",
        *(f"  {e}" for e in examples),
    ])
    parser = argparse.ArgumentParser(prog=program, description=doc, epilog=epilog,
                                     usage="%(prog)s [options] [key=value ...]",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg-path", metavar="FILE.yaml", default=None,
                        help=cfg_help or f"run config (default: the demo recipe {shown(DEMO_RECIPE)})")
    return parser


def yaml_value(value: object) -> str:
    """A config value as it is typed on the command line (``null``, ``false``, ``[a, b]``)."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    return json.dumps(value).replace('"', "") if not isinstance(value, str) else value


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Flags through ``parser``; ``key=value`` overrides returned apart."""
    flags, overrides = split_cli(list(argv))
    return parser.parse_args(flags), overrides


USER_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
"""OS errors about a path the user gave: reported like ``UserError``."""


def run_main(program: str, main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> int:
    """Run an entry point's ``main(argv)`` and return its exit status.

    The project's own errors (``UserError``: config, media, corpus, checkpoint, output folder), a path the OS
    refuses and a full disk print one line ``<program>: error: <file>: <cause>`` and exit 1; any other
    exception is a bug and keeps its traceback. ``main`` returning a non-int (a summary) means success.
    """
    try:
        result = main(list(sys.argv[1:] if argv is None else argv))
    except (UserError, *USER_OS_ERRORS) as err:
        print(f"{program}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        print(f"{program}: error: no space left on device writing {err.filename or 'the output'}; free space "
              f"there or choose another output folder", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0
