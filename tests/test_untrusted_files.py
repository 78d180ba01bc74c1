"""Files from shared run folders and corpora are data, never code: a planted pickle payload does not run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from payloads import Payload

from minigpt4.data.run_config import load_config
from minigpt4.models import checkpoint as ckpt
from minigpt4.runtime.errors import CheckpointError
from minigpt4.training.loop import fit

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["run.eval_every=0", "eval.max_samples=16", "run.log_every=1", "run.warmup_steps=2"]


def cfg_for(out: Path, *overrides: str):
    return load_config(ROOT / "train_configs" / "demo.yaml", [f"run.output_dir={out}", *QUICK, *overrides])


def test_resume_state_is_weights_only_and_a_planted_payload_never_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ("run.max_steps=2", "run.save_every=1", "run.keep_last=5", "run.batch_size=4")
    fit(cfg_for(out, *args))
    state_file = out / "checkpoints" / "step_2" / ckpt.STATE
    state = torch.load(state_file, map_location="cpu", weights_only=True)  # RNG, optimizer, scheduler: plain
    assert state["step"] == 2 and state["rng"][0]["numpy"]["state"]["key"].dtype == torch.int64

    marker = tmp_path / "payload_ran"
    torch.save({**state, "best": Payload(marker)}, state_file)
    with pytest.raises(CheckpointError, match=rf"{state_file}: holds more than tensors.*not unpickled"):
        fit(cfg_for(out, *args, "run.resume=true"))
    assert not marker.exists()
