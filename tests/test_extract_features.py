"""datasets/extract_features.py: real clips -> packed store + manifest, failures with reasons, resume, workers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from media_clips import faststart_cut, sweep, truncate, write_audio, write_clip

from minigpt4.extract.store import extractors_from_store, read_manifest
from minigpt4.features.store import PackedFeatureStore
from minigpt4.runtime.output_folder import OutputFolderError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "datasets"))
import extract_features  # noqa: E402


def run_tool(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "datasets" / "extract_features.py"), *args], env=env,
                          capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("media")
    for i in range(3):
        write_clip(d / f"talk{i}.mp4", seconds=1.5, seed=i)
    write_clip(d / "black.mp4", seconds=1.0, black=True)
    write_clip(d / "noaudio.mp4", seconds=1.0, with_audio=False)
    truncate(d / "talk0.mp4", d / "broken.mp4")
    write_clip(d / "nested.avi", seconds=1.0, seed=5)
    return d


def test_store_shapes_manifest_and_failures(clip_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "store"
    summary = extract_features.main(["--clips", str(clip_dir), "--output", str(out), "--frames", "first",
                                     "--frame-size", "32"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    assert summary["clips"] == 7 and summary["ok"] == 4
    assert set(summary["failed"]) == {"black", "noaudio", "broken"}
    assert "no face found" in summary["failed"]["black"] and "constant" in summary["failed"]["black"]
    assert "no audio track" in summary["failed"]["noaudio"]
    assert "cannot decode" in summary["failed"]["broken"]
    assert summary["face_found"] == 5  # every clip with a picture of the astronaut
    manifest = read_manifest(out)["modalities"]
    assert {m: (e["extractor"], e["dim"], e["stored"]) for m, e in manifest.items()} == {
        "audio": ("librosa", 64, True), "face": ("fer", 135, True), "video": ("motion", 43, True),
        "text": ("minilm", 384, False)}
    store = PackedFeatureStore(out, {"audio": 64, "face": 135, "video": 43})
    good = ["talk0", "talk1", "talk2", "nested"]
    for modality in ("audio", "face", "video"):
        for clip_id in good:
            x = store.get(modality, clip_id)
            assert x.shape == (1, manifest[modality]["dim"]) and x.dtype == np.float32
            assert np.isfinite(x).all() and x.std() > 0
    assert not store.has("face", "black") and store.has("audio", "black") and not store.has("audio", "noaudio")
    assert not np.allclose(store.get("audio", "talk0"), store.get("audio", "talk1"))  # different sweeps
    assert np.load(out / "frames-first.npy").shape == (6, 32, 32, 3)  # every decodable clip
    assert json.loads((out / "failures.json").read_text()) == summary["failed"]
    rebuilt = extractors_from_store(out)
    assert {m: e.manifest() for m, e in rebuilt.items()} == {
        m: {k: v for k, v in e.items() if k != "stored"} for m, e in manifest.items()}
    again = extract_features.main(["--clips", str(clip_dir), "--output", str(out), "--frames", "first",
                                   "--frame-size", "32"])
    assert again["failed"] == summary["failed"] and again["ok"] == 4  # resumed: nothing left to do


def test_never_writes_into_a_foreign_or_different_store(clip_dir: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "corpus"
    foreign.mkdir()
    (foreign / "labels.csv").write_text("precious\n")
    with pytest.raises(OutputFolderError, match="not an output folder"):
        extract_features.main(["--clips", str(clip_dir / "talk0.mp4"), "--output", str(foreign), "--overwrite"])
    assert (foreign / "labels.csv").read_text() == "precious\n"
    out = tmp_path / "store"
    extract_features.main(["--clips", str(clip_dir / "talk0.mp4"), "--output", str(out), "--extractors", "audio=librosa"])
    with pytest.raises(OutputFolderError, match="other extractors"):
        extract_features.main(["--clips", str(clip_dir / "talk0.mp4"), "--output", str(out),
                               "--extractors", "audio=librosa", "--option", "audio.fmax=400"])
    summary = extract_features.main(["--clips", str(clip_dir / "talk0.mp4"), "--output", str(out), "--extractors",
                                     "audio=librosa", "--option", "audio.fmax=400", "--overwrite"])
    assert summary["ok"] == 1 and read_manifest(out)["modalities"]["audio"]["config"]["fmax"] == 400.0


def test_over_cap_and_truncated_clips_are_listed_with_their_reason(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips / "short.mp4", seconds=1.5)
    write_audio(clips / "lecture.mp4", 40.0)
    faststart_cut(clips / "cut.mp4")
    summary = extract_features.main(["--clips", str(clips), "--output", str(tmp_path / "store"), "--max-seconds", "30",
                                     "--extractors", "audio=librosa"])
    assert summary["ok"] == 1 and set(summary["failed"]) == {"lecture", "cut"}
    assert "the clip lasts 40.0 s, over the 30 s limit per clip" in summary["failed"]["lecture"]
    assert "truncated: only" in summary["failed"]["cut"] and "of the 13.6 s" in summary["failed"]["cut"]


def test_rerun_with_fewer_clips_is_refused_and_stale_temporaries_go(clip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    both = ["--clips", str(clip_dir / "talk0.mp4"), str(clip_dir / "talk1.mp4"), "--output", str(out),
            "--extractors", "audio=librosa"]
    extract_features.main(both)
    stale = out / "parts" / ".0123abcd.tmp-999999999.npz"  # left by a killed worker (no such pid)
    stale.write_bytes(b"half a part")
    with pytest.raises(OutputFolderError, match=r"holds 1 clip\(s\) this run does not list \(talk1\); packing "
                                                r"would drop them.*--overwrite to make a store of just these 1"):
        extract_features.main(["--clips", str(clip_dir / "talk0.mp4"), *both[3:]])
    assert extract_features.main(both)["ok"] == 2 and not stale.exists()
    assert extract_features.main(["--clips", str(clip_dir / "talk0.mp4"), *both[3:], "--overwrite"])["clips"] == 1


@pytest.mark.slow
def test_resume_after_kill_and_workers_give_the_same_store(clip_dir: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    run_tool("--clips", str(clip_dir), "--output", str(whole), "--workers", "2")
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "datasets" / "extract_features.py"), "--clips",
                             str(clip_dir), "--output", str(killed)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not list((killed / "parts").glob("*.npz")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((killed / "parts").glob("*.npz")))
    assert 1 <= done < 7 and not (killed / "index.json").exists()
    last = json.loads(run_tool("--clips", str(clip_dir), "--output", str(killed)).stdout.strip().splitlines()[-1])
    assert last["clips"] == 7 and last["ok"] == 4
    a, b = PackedFeatureStore(whole), PackedFeatureStore(killed)
    for modality in ("audio", "face", "video"):
        assert a.ids(modality) == b.ids(modality)
        for clip_id in a.ids(modality):
            np.testing.assert_array_equal(a.get(modality, clip_id), b.get(modality, clip_id))


MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
MELD_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}


def write_meld(root: Path, dialogues: dict[str, int]) -> int:
    """A MELD-layout corpus of real h264 + AAC clips (25 fps, a face, a voice-like sweep): joy clips sweep high and
    loud, sadness clips low and soft."""
    count = 0
    for split, n in dialogues.items():
        (root / MELD_DIRS[split]).mkdir(parents=True)
        lines = [MELD_HEADER]
        for dia in range(n):
            for utt, (emotion, f0, amp) in enumerate((("joy", 260.0, 0.4), ("sadness", 110.0, 0.1))):
                write_clip(root / MELD_DIRS[split] / f"dia{dia}_utt{utt}.mp4", seconds=1.2,
                           audio=sweep(1.2, f0, f0 * 1.3, amp), seed=count)
                text = "I am so happy!" if emotion == "joy" else "I feel so sad."
                lines.append(f'{count},{text},Ann,{emotion},neutral,{dia},{utt},1,1,"00:00:01,000","00:00:02,000"\n')
                count += 1
        (root / f"{split}_sent_emo.csv").write_text("".join(lines))
    return count


@pytest.mark.slow
def test_real_clips_extract_then_train_and_evaluate(tmp_path: Path) -> None:
    from minigpt4.data.run_config import load_config
    from minigpt4.evaluation.runner import run_evaluation
    from minigpt4.models.build import build_model
    from minigpt4.training.loop import fit

    root, store = tmp_path / "MELD", tmp_path / "store"
    clips = write_meld(root, {"train": 4, "dev": 1, "test": 1})
    summary = extract_features.main(["--corpus", "meld", "--root", str(root), "--output", str(store), "--frames",
                                     "first", "--frame-size", "32", "--workers", "2"])
    assert summary["clips"] == summary["ok"] == summary["face_found"] == clips and not summary["failed"]
    overrides = [f"data.root={root}", f"data.feature_store={store}", "data.corpus=meld", f"run.output_dir={tmp_path / 'run'}",
                 "run.max_steps=6", "run.batch_size=4", "run.eval_every=0", "run.log_every=1", "eval.mode=score"]
    cfg = load_config(None, overrides)
    assert {m: cfg.model.features[m].dim for m in ("audio", "face", "video")} == {"audio": 64, "face": 135, "video": 43}
    final = fit(cfg)
    trained = load_config(final / "config.yaml", [f"model.checkpoint={final}"])
    assert trained.model.features.audio.dim == 64  # the checkpoint records the store's widths
    metrics = run_evaluation(trained, build_model(trained), tmp_path / "eval")
    assert 0.0 <= metrics["accuracy"] <= 1.0 and (tmp_path / "eval" / "predictions.jsonl").is_file()
