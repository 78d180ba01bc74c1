"""Serving many clients: extraction in worker processes, the model on batches of waiting requests, and the
same answers as one request at a time."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from media_clips import truncate, write_clip
from serving_helpers import untrained_checkpoint

from minigpt4.extract import MediaError
from minigpt4.serving.concurrent import ConcurrentPredictor
from minigpt4.serving.predictor import Predictor, load_predict_config
from minigpt4.serving.web import create_app

TRANSCRIPTS = ["I passed the exam!", None, "Leave me alone.", "Well, fine then, whatever you say.", None]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrent")
    checkpoint = untrained_checkpoint(root / "ckpt")
    clips = [write_clip(root / f"clip{i}.mp4", seconds=1.0, seed=i, face=i != 3) for i in range(5)]
    return clips, Predictor(load_predict_config(None, [f"model.checkpoint={checkpoint}"]))


def same_answer(a: dict, b: dict) -> None:
    """Labels, answer and what was used exactly; probabilities to float rounding (a batch pads prompts)."""
    assert {k: v for k, v in a.items() if k not in ("seconds", "probabilities")} == \
        {k: v for k, v in b.items() if k not in ("seconds", "probabilities")}
    assert a["probabilities"].keys() == b["probabilities"].keys()
    np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-5)


def test_a_batch_of_requests_answers_as_each_alone(served):
    clips, predictor = served
    requests = [predictor.request(c, transcript=t) for c, t in zip(clips, TRANSCRIPTS)]
    assert len({r.group for r in requests}) == 3  # with / without transcript, and the faceless clip
    batched = predictor.run_requests(requests)
    for request, result in zip(requests, batched):
        (alone,) = predictor.run_requests([request])
        same_answer(predictor.record(request, result, 0, False), predictor.record(request, alone, 0, False))


@pytest.mark.slow
def test_concurrent_clients_get_the_answers_of_one_at_a_time(served, tmp_path):
    clips, predictor = served
    uploads = [(clips[i % 5], TRANSCRIPTS[i % 5]) for i in range(10)]
    expected = [predictor.predict(c, transcript=t) for c, t in uploads]
    concurrent = ConcurrentPredictor(predictor, workers=2, max_batch=4)
    try:
        with TestClient(create_app(concurrent, upload_dir=tmp_path / "up"), base_url="http://127.0.0.1") as client:
            def post(upload) -> dict:
                clip, transcript = upload
                form = {"transcript": transcript} if transcript else {}
                response = client.post("/predict", files={"clip": (clip.name, clip.read_bytes())}, data=form)
                assert response.status_code == 200, response.text
                return response.json()

            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(post, uploads))
            bad = truncate(clips[0], tmp_path / "bad.mp4")
            response = client.post("/predict", files={"clip": ("bad.mp4", bad.read_bytes())})
            assert response.status_code == 422 and "bad.mp4" in response.json()["detail"]
            assert client.get("/health").json()["extraction_workers"] == 2
    finally:
        concurrent.close()
    for got, want in zip(answers, expected):
        same_answer(got, want)
    assert sum(concurrent.batcher.batches) == len(uploads)


def test_a_media_error_in_a_worker_reaches_the_caller_naming_the_file(served, tmp_path):
    clips, predictor = served
    concurrent = ConcurrentPredictor(predictor, workers=1)
    try:
        with pytest.raises(MediaError, match="bad.mp4"):
            concurrent.predict(truncate(clips[1], tmp_path / "bad.mp4"))
    finally:
        concurrent.close()
