"""The out-of-distribution flag: held-out demo clips pass, clips unlike the corpus (espeak-ng speech, other faces,
noise) are flagged, in ``predict.py``'s record; a checkpoint without feature statistics says unknown."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from media_clips import SENTENCES, unlike_clips
from serving_helpers import demo_statistics_predictor, untrained_checkpoint

from minigpt4.models.projectors import FeatureNorm
from minigpt4.serving.familiarity import LIMIT, Z_CAP, familiarity
from minigpt4.serving.predictor import Predictor, example_clips, load_predict_config


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return demo_statistics_predictor()


def test_held_out_demo_clips_are_not_flagged(predictor):
    examples = example_clips(predictor.cfg, per_label=3)
    assert len(examples) >= 10
    for example in examples:
        found = predictor.predict(example.path, example.name, example.transcript)["out_of_distribution"]
        assert set(found["distance"]) == {"audio", "face", "video", "text"}, found
        assert not found["flag"], (example.name, found)


def test_clips_unlike_the_corpus_are_flagged(predictor, tmp_path):
    spoken = dict(zip(("speech-astronaut-0", "speech-astronaut-1", "speech-cameraman"), SENTENCES))
    for name, path in unlike_clips(tmp_path).items():
        found = predictor.predict(path, name, spoken.get(name))["out_of_distribution"]
        assert found["flag"] and found["far"], (name, found)
        assert all(found["distance"][m] > LIMIT for m in found["far"])


def test_a_checkpoint_without_statistics_says_unknown(tmp_path):
    checkpoint = untrained_checkpoint(tmp_path / "ckpt")
    served = Predictor(load_predict_config(None, [f"model.checkpoint={checkpoint}"]))
    clip = next(iter(unlike_clips(tmp_path / "clips").values()))
    assert served.predict(clip)["out_of_distribution"] is None


def test_distance_is_the_rms_of_capped_z_scores():
    norm = FeatureNorm(4)
    assert familiarity({"audio": norm}, {"audio": np.zeros(4)}) is None  # identity: statistics never set
    norm.mean.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    norm.std.copy_(torch.tensor([1.0, 2.0, 1.0, 1.0]))
    near = familiarity({"audio": norm}, {"audio": np.array([[2.0, 3.0, 1.0, 1.0]])})
    assert near == {"flag": False, "far": [], "distance": {"audio": pytest.approx(np.sqrt(0.5), abs=1e-3)},
                    "limit": LIMIT}
    far = familiarity({"audio": norm}, {"audio": np.array([1e6, 1.0, 1.0, 1.0]), "face": np.ones(3)})
    assert far["distance"] == {"audio": Z_CAP / 2} and far["far"] == ["audio"] and far["flag"]
