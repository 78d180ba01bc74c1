"""Numeric config values out of range fail at load, naming the key (not later as a FileNotFoundError)."""
from __future__ import annotations

import pytest

from minigpt4.config import ConfigError
from minigpt4.data.run_config import load_config


@pytest.mark.parametrize("override, expected", [
    ("run.max_steps=-5", "run.max_steps=-5: expected at least 0"),
    ("run.batch_size=0", "run.batch_size=0: expected at least 1"),
    ("run.lr=0", "run.lr=0.0: expected a number above 0"),
    ("run.lr=-1e-4", "run.lr=-0.0001: expected a number above 0"),
    ("data.val_fraction=1.5", "data.val_fraction=1.5: expected a fraction between 0 and 1"),
    ("eval.threshold=2", "eval.threshold=2.0: expected a fraction between 0 and 1"),
    ("model.max_answer_tokens=1", "model.max_answer_tokens=1: expected at least 2"),
    ("model.features.audio.tokens=0", "model.features.audio.tokens=0: expected at least 1"),
    ("eval.max_labels=0", "eval.max_labels=0: expected at least 1"),
])
def test_out_of_range_values_fail_at_load(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, [override])


def test_boundary_values_load() -> None:
    cfg = load_config(None, ["run.max_steps=0", "data.val_fraction=0", "eval.threshold=1", "run.warmup_steps=0"])
    assert cfg.run.max_steps == 0 and cfg.eval.threshold == 1
