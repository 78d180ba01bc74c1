"""Checkpoint folders: trainable weights, the resolved config, the tokenizer and (for resume) the loop state.

Layout of one folder::

    trainable.safetensors   projectors + LoRA adapters (``EmotionLLaMA.trainable_state_dict``)
    config.yaml             the resolved run config
    tokenizer/              the packaged tiny tokenizer (absent when the config names a fixed tokenizer path)
    state.pt                optimizer, scheduler, step, epoch, position in the epoch, RNG states (resume only),
                            tensors and plain values only: read with ``weights_only=True``, so no code runs
    deepspeed/              the DeepSpeed engine's own checkpoint (resume of DeepSpeed runs only)

A folder is written under a temporary name and renamed into place, so a crash never leaves a folder that
looks complete but is not: readers only ever see a finished checkpoint or none.
"""
from __future__ import annotations

import io
import os
import random
import re
import shutil
from pathlib import Path
from pickle import UnpicklingError
from typing import Any, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from minigpt4.config import ConfigError, LLMConfig, ModelConfig, save_config
from minigpt4.models.model import EmotionLLaMA
from minigpt4.runtime.errors import CheckpointError
from minigpt4.runtime.run_folder import flatten

WEIGHTS = "trainable.safetensors"
STATE = "state.pt"
CONFIG = "config.yaml"
TOKENIZER = "tokenizer"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def tokenizer_is_packaged(llm: LLMConfig) -> bool:
    """True when the run uses the packaged tiny tokenizer, which then travels with every checkpoint."""
    return llm.path is None and not llm.package and not llm.tokenizer_path


def staging_path(folder: str | Path) -> Path:
    """Where ``folder`` is assembled before the rename (hidden, so ``step_folders`` never lists it)."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.tmp"


def stage(folder: str | Path) -> Path:
    """Create an empty staging folder for ``folder`` (a leftover from a crashed write is discarded)."""
    tmp = staging_path(folder)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def write_checkpoint(folder: str | Path, model: EmotionLLaMA, cfg: DictConfig, state: dict[str, Any] | None = None,
                     tmp: Path | None = None) -> Path:
    """Write weights, config, tokenizer and ``state`` into the staging folder, then rename it to ``folder``.

    ``tmp`` is a staging folder that already holds files (DeepSpeed's engine state, written by every rank).
    """
    folder = Path(folder)
    tmp = tmp or stage(folder)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.trainable_state_dict().items()}
    # Serialised in memory and written by Python: a full disk is then OSError(ENOSPC) naming the file, where
    # torch.save says "basic_ios::clear: iostream error" and safetensors names no file.
    write_bytes(tmp / WEIGHTS, save_safetensors(tensors))
    save_config(cfg, tmp / CONFIG)
    if tokenizer_is_packaged(cfg.model.llm):
        model.tokenizer.save_pretrained(str(tmp / TOKENIZER))
    if state is not None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_bytes(tmp / STATE, buffer.getvalue())
    publish(tmp, folder)
    return folder


def write_bytes(path: Path, data: bytes) -> None:
    """``path.write_bytes`` whose ``OSError`` (a full disk above all) names the file."""
    try:
        path.write_bytes(data)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None


def export_final(src: str | Path, dst: str | Path) -> Path:
    """Copy a checkpoint's weights, config and tokenizer (no resume state) to ``dst``, atomically."""
    src, dst = Path(src), Path(dst)
    tmp = stage(dst)
    shutil.copy2(src / WEIGHTS, tmp / WEIGHTS)
    shutil.copy2(src / CONFIG, tmp / CONFIG)
    if (src / TOKENIZER).is_dir():
        shutil.copytree(src / TOKENIZER, tmp / TOKENIZER)
    publish(tmp, dst)
    return dst


def publish(tmp: Path, folder: Path) -> None:
    """Rename a finished ``tmp`` folder to ``folder``, replacing an older ``folder`` only after the rename."""
    old = folder.parent / f".{folder.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old)


def weights_file(path: str | Path) -> Path:
    """The safetensors file of a checkpoint folder, or ``path`` itself when it is a ``.safetensors`` file."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"model.checkpoint: no trainable weights at {path} (expected a checkpoint folder "
                                f"holding {WEIGHTS}, or a .safetensors file)")
    return path


def load_trainable(model: EmotionLLaMA, path: str | Path) -> None:
    """Load a checkpoint's trainable weights; any missing or unexpected key is an error that names it."""
    file = weights_file(path)
    try:
        tensors = load_file(str(file))
    except SafetensorError as err:
        raise ValueError(f"{file}: not a readable safetensors file ({err}); the checkpoint is truncated or corrupt "
                         f"(an interrupted copy?): copy it again or use another checkpoint") from None
    model.load_trainable_state_dict(tensors, source=str(file))


FREE_MODEL_KEYS = ("dtype", "gradient_checkpointing")
"""``model.*`` leaves that may differ between training and loading, besides paths (``*path``, ``*checkpoint``):
they change memory and speed, not what the weights mean."""

def _may_differ(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return leaf.endswith(("path", "checkpoint")) or leaf in FREE_MODEL_KEYS


def check_model_config(model_cfg: ModelConfig, path: str | Path) -> None:
    """Refuse to load a checkpoint into a model configured otherwise than the one it was trained with.

    The tiny backbone is rebuilt from ``model.seed`` and LoRA's scale from ``lora.alpha``; neither is in the
    weights file, so a different value loads cleanly and silently gives a different model. The checkpoint's
    ``config.yaml`` (a bare ``.safetensors`` file has none) is compared key by key. A key the checkpoint's config
    lacks was added to the schema after it was trained; a new key's default keeps the earlier behaviour, so
    the default is what it was trained with.
    """
    saved_file = Path(path) / CONFIG if Path(path).is_dir() else Path(path).with_name(CONFIG)
    if not saved_file.is_file():
        return

    defaults = flatten(OmegaConf.to_container(OmegaConf.structured(ModelConfig)), "model.")
    saved = defaults | flatten(OmegaConf.to_container(OmegaConf.load(saved_file).model, resolve=True), "model.")
    current = flatten(OmegaConf.to_container(model_cfg, resolve=True), "model.")
    diff = [f"{k}: {saved.get(k, '<unset>')!r} in the checkpoint, {current.get(k, '<unset>')!r} now"
            for k in sorted(saved.keys() | current.keys()) if saved.get(k) != current.get(k) and not _may_differ(k)]
    if diff:
        raise ConfigError(f"model.checkpoint={path} was trained with another model config ({saved_file}):\n  "
                          + "\n  ".join(diff) + "\nuse the checkpoint's model settings (only paths, dtype and "
                          "gradient checkpointing may differ)")


def load_state(folder: str | Path) -> dict[str, Any]:
    """The resume state of a checkpoint folder (written by training, not part of ``final/``).

    Run folders are shared and copied from clusters, so the file is read with ``weights_only=True``: a pickled
    object (which could run code) is refused, naming the file, instead of being executed.
    """
    file = Path(folder) / STATE
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: {folder} is not a resumable checkpoint (run.resume)")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except UnpicklingError as err:
        refused = str(err).split("WeightsUnpickler error: ")[-1].split("\n")[0]
        raise CheckpointError(f"{file}: holds more than tensors and plain values ({refused}); it is not unpickled, "
                              f"as that could run code from the file. Resume state written before resume files "
                              f"became weights-only cannot be resumed: restart the run, or delete {folder}") from None


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and current CUDA device) generator states, as tensors and plain values."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = {**state["numpy"], "state": {**state["numpy"]["state"]}}
    numpy_state["state"]["key"] = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def average_weights(folders: Sequence[Path]) -> dict[str, torch.Tensor]:
    """Mean of the checkpoints' trainable tensors (summed in float64, cast back); every checkpoint must hold the
    same keys and shapes, and integer tensors must agree."""
    tensors = [load_file(str(weights_file(f))) for f in folders]
    first = tensors[0]
    for folder, other in zip(folders[1:], tensors[1:]):
        if other.keys() != first.keys() or any(other[k].shape != first[k].shape for k in first):
            raise CheckpointError(f"{folder}: its weights differ in keys or shapes from {folders[0]}'s; "
                                  f"only checkpoints of one run can be averaged")
    mean = {}
    for key, value in first.items():
        if value.is_floating_point():
            mean[key] = (sum(t[key].double() for t in tensors) / len(tensors)).to(value.dtype)
        elif all(torch.equal(t[key], value) for t in tensors):
            mean[key] = value
        else:
            raise CheckpointError(f"{key}: an integer tensor that differs between {folders[0]} and later "
                                  f"checkpoints cannot be averaged")
    return mean


def step_folders(root: str | Path) -> list[Path]:
    """Finished ``step_<N>`` folders under ``root``, oldest step first (temporary folders never match)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def prune(root: str | Path, keep_last: int, keep: Sequence[Path] = ()) -> None:
    """Delete step folders except the newest ``keep_last`` and those in ``keep`` (the best so far, the ones
    ``run.average_last`` averages)."""
    folders = step_folders(root)
    survivors = set(folders[-keep_last:]) if keep_last > 0 else set()
    kept = {k.resolve() for k in keep}
    for folder in folders:
        if folder not in survivors and folder.resolve() not in kept:
            shutil.rmtree(folder)
