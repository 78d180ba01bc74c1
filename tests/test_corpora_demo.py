"""The embedded demo corpus: generated deterministically in the IEMOCAP layout, read by the IEMOCAP reader."""
from __future__ import annotations

import filecmp
import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from minigpt4.config import DataConfig
from minigpt4.data.corpora import CorpusError, demo, load_corpus
from minigpt4.data.corpora.demo import VERSION
from minigpt4.data.jobs import sample_jobs
from minigpt4.extract import build_extractors, extract_clip


@pytest.fixture(scope="module")
def cache():
    """The shared cached demo corpus (generated, media and extracted store, on first use)."""
    return demo.root(DataConfig()).parent


def test_demo_corpus(cache):
    corpus = load_corpus(DataConfig(), ["image", "face", "video", "audio"], demo.store_dims())
    assert (cache / VERSION / "demo.json").is_file()
    assert corpus.label_set.name == "demo" and 500 <= len(corpus.samples) <= 600
    groups = Counter((s.group, s.split) for s in corpus.samples)
    assert len(groups) == 6 and {g for (g, split) in groups if split == "test"} == {"Session6"}
    counts = Counter(s.label for s in corpus.samples)
    assert set(counts) == {"happy", "sad", "neutral", "angry"} and max(counts.values()) > 1.4 * min(counts.values())
    s = corpus.samples[0]
    assert corpus.features.get("audio", s.id).shape == (1, 64)
    assert corpus.frames.get(s).shape == (32, 32, 3)
    assert all(s.text for s in corpus.samples) and not corpus.skipped
    multi = load_corpus(DataConfig(label_mode="multi"), [])
    # About a third are blends of two emotions (two evaluator votes for the second): enough for multi-label.
    share = sum(len(s.labels) == 2 for s in multi.samples) / len(multi.samples)
    assert 0.25 <= share <= 0.5 and all(len(s.labels) <= 2 for s in multi.samples)


def test_demo_media_and_features_are_deterministic(cache, tmp_path):
    """Media rewritten from the seed are byte-identical; re-extracting an utterance gives its stored rows."""
    a = cache / VERSION
    demo._write(tmp_path, np.random.default_rng(demo.SEED))
    for name in ("Session3/dialog/EmoEvaluation/Ses03F_impro01.txt",
                 "Session3/sentences/wav/Ses03F_impro01/Ses03F_impro01_F000.wav"):
        assert filecmp.cmp(a / name, tmp_path / name, shallow=False), name
    corpus = load_corpus(DataConfig(), ["audio", "face", "video"])
    extractors = build_extractors(demo.build_spec())
    for job in sample_jobs(corpus.samples[:3]):
        clip = extract_clip(job.path, extractors, **job.decode)
        for modality in ("audio", "face", "video"):
            np.testing.assert_allclose(clip.features[modality], corpus.features.get(modality, job.clip_id),
                                       rtol=1e-5, atol=1e-6)


def test_demo_audio_prosody_separates_classes(cache):
    """The class signal is in the media: mean pitch (log2 f0/100, after 40 MFCC values) orders sad < neutral <
    happy, as the generator's prosody says."""
    corpus = load_corpus(DataConfig(), ["audio"])
    pitch: dict[str, list[float]] = {}
    for s in corpus.samples:
        if s.meta["side"] == "left" and s.id.split("_")[-1][0] == "F":  # one sex: pitch levels differ by sex
            pitch.setdefault(s.label, []).append(float(corpus.features.get("audio", s.id)[0, 40]))
    means = {k: np.mean(v) for k, v in pitch.items()}
    assert means["sad"] < means["neutral"] < means["happy"], means


def test_demo_rejects_options_and_other_setups(tmp_path):
    with pytest.raises(CorpusError, match="unknown key"):
        load_corpus(DataConfig(root=str(tmp_path / "d"), options={"pickle": "x"}), [])
    with pytest.raises(CorpusError, match="not a label setup of corpus 'demo'"):
        load_corpus(DataConfig(root=str(tmp_path / "d"), labels="6class"), [])


def _script(name: str):
    path = Path(__file__).resolve().parents[1] / "datasets" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"datasets_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inspect_and_pack_scripts(cache, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("EMOTION_LLAMA_CACHE", str(cache))
    report = _script("inspect_corpus").main(["--corpus", "demo", "label_mode=multi"])
    assert json.loads(capsys.readouterr().out) == report
    assert report["n_samples"] == sum(report["label_counts"].values()) == sum(report["split_counts"].values())
    assert len(report["group_counts"]) == 6 and report["multi_label_samples"] > 0
    _script("pack_features").main(["--corpus", "demo", "--out", str(tmp_path / "store"), "--modalities", "audio",
                                   "--dims=audio=64", "--frames", "first", "--frame-size", "32"])
    packed = load_corpus(DataConfig(feature_store=str(tmp_path / "store")), ["image", "audio"], {"audio": 64})
    plain = load_corpus(DataConfig(), ["image", "audio"])
    s = plain.samples[7]
    np.testing.assert_array_equal(packed.features.get("audio", s.id), plain.features.get("audio", s.id))
    assert packed.frames.get(s).shape == plain.frames.get(s).shape == (32, 32, 3)
    assert abs(packed.frames.get(s).astype(float) - plain.frames.get(s)).mean() < 8  # cv2 vs PyAV decoding


def test_pack_features_replaces_only_its_own_store_and_only_when_asked(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("EMOTION_LLAMA_CACHE", str(cache))
    pack = _script("pack_features").main
    corpus_root = tmp_path / "corpus"
    corpus_root.mkdir()
    (corpus_root / "labels.csv").write_text("precious")
    with pytest.raises(SystemExit, match="not an output folder of pack_features.py"):
        pack(["--corpus", "demo", "--out", str(corpus_root), "--modalities", "audio", "--overwrite"])
    assert [p.name for p in corpus_root.iterdir()] == ["labels.csv"]

    store = tmp_path / "store"
    args = ["--corpus", "demo", "--out", str(store), "--modalities", "audio", "--dims", "audio=64"]  # as --help writes it
    pack(args)
    assert json.loads((store / "created_by.json").read_text())["identity"]["dims"] == "audio=64"
    with pytest.raises(SystemExit, match="holds a store packed earlier: pass --overwrite"):
        pack(args)
    pack([*args, "--overwrite"])
    assert sorted(p.name for p in store.iterdir()) == ["audio.npy", "created_by.json", "index.json"]
