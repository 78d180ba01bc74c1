"""predict.py and the app's JSON API (FastAPI TestClient) on generated clips and an untrained tiny checkpoint."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient
from media_clips import truncate, write_audio, write_clip
from serving_helpers import untrained_checkpoint

from minigpt4.extract import decode_clip
from minigpt4.serving.predictor import (
    ClientGone,
    Example,
    Predictor,
    example_clips,
    load_predict_config,
)
from minigpt4.serving.web import create_app

REPO = Path(__file__).resolve().parents[1]
VOLATILE = ("seconds",)


def stable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    checkpoint = untrained_checkpoint(root / "ckpt")
    (root / "clips").mkdir()
    clips = [write_clip(root / "clips" / f"clip{i}.mp4", seconds=1.0, seed=i, face=i != 5) for i in range(8)]
    predictor = Predictor(load_predict_config(None, [f"model.checkpoint={checkpoint}"]))
    return root, checkpoint, clips, predictor


@pytest.fixture()
def client(served, tmp_path):
    root, _, clips, predictor = served
    uploads = tmp_path / "uploads"
    app = create_app(predictor, [Example("first.mp4", clips[0], "happy", "I passed!")], max_upload_mb=0.25, upload_dir=uploads)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        c.uploads = uploads
        yield c
    assert not uploads.exists() or not any(uploads.iterdir()), "an upload was left behind"


def post(client, path: Path, name: str | None = None, transcript: str | None = None, data: bytes | None = None):
    body = path.read_bytes() if data is None else data
    form = {"transcript": transcript} if transcript is not None else {}
    return client.post("/predict", files={"clip": (name or path.name, body, "video/mp4")}, data=form)


def test_good_clip_gets_the_prediction_record(client, served):
    _, checkpoint, clips, predictor = served
    response = post(client, clips[0], transcript="I passed the exam!")
    assert response.status_code == 200, response.text
    record = response.json()
    labels = predictor.label_set.labels
    assert record["id"] == "clip0"
    assert list(record["probabilities"]) == list(labels)
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    best = max(record["probabilities"], key=record["probabilities"].get)
    assert record["labels"] == [best] and record["answer"] == best  # demo recipe predicts by scoring
    assert record["modalities"] == ["image", "face", "video", "audio", "text"]
    assert record["transcript"] == "I passed the exam!" and record["seconds"] > 0
    assert "visuals" not in record and "reason" not in record
    # Without a transcript the text modality is left out, and the record says so.
    bare = post(client, clips[0]).json()
    assert bare["modalities"] == ["image", "face", "video", "audio"]
    assert list(bare["left_out"]) == ["text"] and "transcript" in bare["left_out"]["text"]
    assert str(client.uploads) not in json.dumps(bare)


def test_visuals_carry_face_crop_frame_and_waveform(client, served):
    clip = served[2][1]
    response = client.post("/predict", files={"clip": (clip.name, clip.read_bytes())}, data={"visuals": "true"})
    visuals = response.json()["visuals"]
    assert visuals["frame"].startswith("data:image/png;base64,")
    assert visuals["face_crop"] is None or visuals["face_crop"].startswith("data:image/png;base64,")
    envelope = visuals["waveform"]
    assert 10 < len(envelope) <= 240 and all(lo <= hi for lo, hi in envelope)
    assert max(hi for _, hi in envelope) > 0.05  # the clip's tone, not silence


def test_truncated_clip_is_422_naming_the_upload(client, served, tmp_path):
    clip = truncate(served[2][0], tmp_path / "cut.mp4")
    response = post(client, clip)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "cut.mp4" in detail and str(client.uploads) not in detail


def test_text_renamed_mp4_is_415(client, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("just some notes, not a video\n" * 20)
    response = post(client, fake)
    assert response.status_code == 415
    assert "notes.mp4" in response.json()["detail"] and "MP4" in response.json()["detail"]


def test_oversized_upload_is_413_declared_or_streamed(client, served):
    big = served[2][0].read_bytes() * 40  # ~400 KB against a 256 KB cap
    assert post(client, served[2][0], data=big).status_code == 413
    # Streamed without a Content-Length: stopped while reading, not after buffering everything.
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"clip\"; filename=\"big.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    chunks = iter([head, *[big[i:i + 65536] for i in range(0, len(big), 65536)], f"\r\n--{boundary}--\r\n".encode()])
    response = client.post("/predict", content=chunks,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text


def test_missing_clip_field_is_422(client):
    response = client.post("/predict", data={"transcript": "hello"})
    assert response.status_code == 422 and "clip" in response.json()["detail"]


@pytest.mark.slow
def test_eight_concurrent_requests_each_get_their_own_answer(client, served):
    _, _, clips, predictor = served
    requests = [clips[i % 4] for i in range(8)]  # four clips, each twice, interleaved
    expected = {c.stem: stable(predictor.predict(c)) for c in clips[:4]}
    seen_threads = set()

    def one(clip: Path) -> dict:
        seen_threads.add(threading.get_ident())
        response = post(client, clip)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, requests))
    assert len(seen_threads) > 1
    assert [stable(a) for a in answers] == [expected[c.stem] for c in requests]
    assert len({json.dumps(a["probabilities"]) for a in answers}) == 4, "the four clips should differ"
    assert not any(client.uploads.iterdir())


def test_health_and_examples(client, served):
    health = client.get("/health").json()
    assert health["checkpoint"] == f"{served[1].parent.name}/{served[1].name}"  # not the server's absolute path
    assert health["labels"] == ["happy", "sad", "neutral", "angry"]
    assert health["modalities"] == ["image", "face", "video", "audio", "text"] and health["mode"] == "score"
    assert health["examples"] == [{"name": "first.mp4", "label": "happy", "transcript": "I passed!"}]
    assert client.get("/examples/first.mp4").content == served[2][0].read_bytes()
    for name in ("clip1.mp4", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):
        assert client.get(f"/examples/{name}").status_code == 404


def test_page_is_self_contained(client):
    response = client.get("/")
    assert response.status_code == 200 and "<svg id=\"chart\"" in response.text
    assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in response.text and "<link" not in response.text and " src=\"" not in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


def run_script(script: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_predict_cli_matches_the_api_and_goes_on_after_a_bad_clip(client, served, tmp_path):
    _, checkpoint, clips, _ = served
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(clips[3].read_bytes()[:500])
    (tmp_path / "clip3.txt").write_text("What a lovely surprise")
    good = tmp_path / "clip3.mp4"
    good.write_bytes(clips[3].read_bytes())
    out = tmp_path / "preds.jsonl"
    result = run_script("predict.py", f"model.checkpoint={checkpoint}", str(bad), str(good), "--output", str(out))
    assert result.returncode == 1, result.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["bad", "clip3"]
    assert "error" in lines[0] and "bad.mp4" in lines[0]["error"] and "bad" in result.stderr
    api = post(client, good, transcript="What a lovely surprise").json()
    assert stable(lines[1]) == stable(api)
    assert lines[1]["transcript"] == "What a lovely surprise"  # read from clip3.txt beside the clip


def entry_point(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_predict_cli_never_overwrites_silently(tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    out.write_text("earlier results\n")
    with pytest.raises(SystemExit) as stop:
        entry_point("predict").main(["clip.mp4", "--output", str(out)])
    assert stop.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "earlier results\n"
    with pytest.raises(SystemExit) as stop:  # checked before any model loads, even with --overwrite
        entry_point("predict").main(["clip.mp4", "--output", str(tmp_path), "--overwrite"])
    assert stop.value.code == 2 and f"--output {tmp_path} is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["app", "predict"])
def test_entry_points_without_a_checkpoint_name_the_training_command(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ here: no demo checkpoint
    monkeypatch.setattr("minigpt4.entry.demo_checkpoints", lambda: [tmp_path / "runs/demo/final"])
    with pytest.raises(SystemExit) as stop:
        entry_point(name).main(["clip.mp4"] if name == "predict" else [])
    assert "make demo" in str(stop.value) and "model.checkpoint=" in str(stop.value)



def test_a_clip_without_a_face_leaves_the_face_out_and_says_why(served):
    record = served[3].predict(served[2][5], transcript="hello there")
    assert not record["face_found"]
    assert "face" not in record["modalities"] and "image" in record["modalities"]
    assert "face" in record["left_out"] and "clip5" in record["left_out"]["face"]


def test_demo_examples_are_held_out_clips_one_per_class(served):
    cfg = served[3].cfg
    examples = example_clips(cfg)
    assert [e.label for e in examples] == list(served[3].label_set.labels)
    assert all(e.path.is_file() and e.name == e.path.name and e.transcript for e in examples)
    # Each is one utterance cut from its dialogue recording: a short clip a user could upload.
    clip = decode_clip(examples[0].path, max_frames=1000)
    assert clip.frames is not None and clip.duration < 3.0


def test_generate_mode_from_an_eval_config_parses_the_generated_answer(served):
    _, checkpoint, clips, _ = served
    cfg = load_predict_config(REPO / "eval_configs" / "demo.yaml", [f"model.checkpoint={checkpoint}",
                                                                      "eval.max_new_tokens=6"])
    assert cfg.eval.mode == "generate" and cfg.data.feature_store == served[3].cfg.data.feature_store
    predictor = Predictor(cfg)
    record = predictor.predict(clips[0], transcript="Oh no, not again")
    assert record["labels"] == list(predictor.label_set.parse(record["answer"]))
    # The same weights and features give the same scores whatever the mode.
    assert record["probabilities"] == served[3].predict(clips[0], transcript="Oh no, not again")["probabilities"]


def test_a_non_utf8_transcript_sidecar_is_that_clips_error_line_and_the_rest_go_on(served, tmp_path):
    _, _, clips, predictor = served
    for name, clip in (("latin", clips[1]), ("fine", clips[2])):
        (tmp_path / f"{name}.mp4").write_bytes(clip.read_bytes())
    (tmp_path / "latin.txt").write_bytes("Ça va très bien".encode("latin-1"))
    (tmp_path / "fine.txt").write_text("Ça va très bien", encoding="utf-8")
    out = io.StringIO()
    failed = entry_point("predict").predict_all(
        predictor, [("latin", tmp_path / "latin.mp4"), ("fine", tmp_path / "fine.mp4")], None, out)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert failed == 1 and [x["id"] for x in lines] == ["latin", "fine"]
    assert lines[0]["error"].startswith(f"{tmp_path / 'latin.txt'}: the transcript is not UTF-8 text")
    assert lines[1]["transcript"] == "Ça va très bien"


def test_a_clip_over_the_duration_cap_is_413_naming_the_limit(client, tmp_path):
    long = write_audio(tmp_path / "talk.mp4", 70.0)
    assert long.stat().st_size < 0.25 * 2**20  # under the byte cap: only the duration refuses it
    response = post(client, long)
    assert response.status_code == 413, response.text
    assert "talk.mp4: the clip lasts 70.0 s, over the 60 s limit per clip" in response.json()["detail"]
    assert client.get("/health").json()["max_clip_seconds"] == 60


def test_cross_origin_posts_and_foreign_hosts_are_refused(client, served):
    clip = served[2][0]
    other = client.post("/predict", files={"clip": ("a.mp4", clip.read_bytes(), "video/mp4")},
                        headers={"Origin": "http://evil.example"})
    assert other.status_code == 403 and "cross-origin request from http://evil.example" in other.json()["detail"]
    same = client.post("/predict", files={"clip": ("a.mp4", clip.read_bytes(), "video/mp4")},
                       headers={"Origin": "http://127.0.0.1"})
    assert same.status_code == 200, same.text
    assert client.get("/health", headers={"Host": "attacker.example"}).status_code == 400  # DNS rebinding


def test_a_non_utf8_transcript_is_422_not_read_as_latin1(client, served):
    clip = served[2][0]
    response = client.post("/predict", files={"clip": ("a.mp4", clip.read_bytes(), "video/mp4"),
                                              "transcript": (None, "très bien".encode("latin-1"))})
    assert response.status_code == 422 and "'transcript' field is not UTF-8 text" in response.json()["detail"]
    fine = client.post("/predict", files={"clip": ("a.mp4", clip.read_bytes(), "video/mp4"),
                                          "transcript": (None, "très bien".encode())})
    assert fine.status_code == 200 and fine.json()["transcript"] == "très bien"


def test_a_silent_wav_is_refused_saying_it_is_silent(client, tmp_path):
    silent = tmp_path / "quiet.wav"
    soundfile.write(silent, np.zeros(16000, np.float32), 16000)
    response = post(client, silent)
    assert response.status_code == 422
    assert "quiet.wav: the clip provides none of the modalities" in response.json()["detail"]
    assert "audio: the audio track is silent" in response.json()["detail"]


def test_a_client_that_hung_up_is_not_processed(served):
    _, _, clips, predictor = served
    asked = []

    def gone() -> bool:
        asked.append(True)
        return True

    with pytest.raises(ClientGone, match="hung up"):
        predictor.predict(clips[0], gone=gone)
    assert asked == [True]  # checked once, when the clip's turn came: nothing was decoded for it
