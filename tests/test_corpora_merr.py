"""MERR / MER2023 reader on files written here in Emotion-LLaMA's layout."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from minigpt4.config import DataConfig
from minigpt4.data.corpora import CorpusError, load_corpus

COARSE = "sample_00000003 43 happy\nsample_00000047 22 surprise\nsample_00000013 250 worried\n"
FINE = "sample_00000023 35 angry -1.174107\nsample_00000047 22 surprise -0.61232674\n"
TRANSCRIPTS = ("name,chinese,sentence\nsample_00000003,x,I won the game!\nsample_00000047,x,\"Oh, really?\"\n"
               "sample_00000013,x,What if it fails?\nsample_00000023,x,Get out.\n")


def write_merr(root: Path, annotation: str = COARSE, transcripts: str = TRANSCRIPTS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "MERR_coarse_grained.txt").write_text(annotation)
    (root / "transcription_en_all.csv").write_text(transcripts)
    return root


def cfg(root: Path, corpus: str = "merr", **kw) -> DataConfig:
    return DataConfig(corpus=corpus, root=str(root), **kw)


def test_merr_coarse(tmp_path):
    corpus = load_corpus(cfg(write_merr(tmp_path)), [])
    samples = {s.id: s for s in corpus.samples}
    assert corpus.label_set.name == "merr" and len(samples) == 3
    s = samples["sample_00000047"]
    assert s.labels == ("surprise",) and s.text == "Oh, really?" and s.group == s.id and s.split is None
    assert s.meta["frames"] == 22 and s.meta["valence"] is None and s.reason is None
    assert s.media.endswith("video/sample_00000047.mp4")


def test_fine_grained_four_columns_and_mer2023_splits(tmp_path):
    root = write_merr(tmp_path)
    (root / "fine.txt").write_text(FINE)
    samples = {s.id: s for s in load_corpus(cfg(root, options={"annotation": "fine.txt"}), []).samples}
    assert samples["sample_00000023"].meta["valence"] == pytest.approx(-1.174107)
    (root / "relative_train_NCEV.txt").write_text("samplenew_00006611 125 sad -10\nsample_00000003 43 happy -10\n")
    (root / "relative_test3_NCEV.txt").write_text("samplenew_00006666 205 angry -10\n")
    corpus = load_corpus(cfg(root, "mer2023", transcript=False), [])
    assert corpus.label_set.name == "mer2023"
    assert {s.id: s.split for s in corpus.samples} == {"samplenew_00006611": "train", "sample_00000003": "train",
                                                       "samplenew_00006666": "test"}
    assert all(s.meta["valence"] is None for s in corpus.samples)
    with pytest.raises(CorpusError, match="no transcript .* for sample samplenew_00006611 .*relative_train_NCEV.txt:1"):
        load_corpus(cfg(root, "mer2023"), [])


def test_reason_json_loaded_only_for_reason_task(tmp_path):
    root = write_merr(tmp_path)
    (root / "MERR_coarse_grained.json").write_text("{ not json")
    assert load_corpus(cfg(root), []).samples[0].reason is None  # emotion task never opens the JSON
    reasons = {n: {"caption": f"because {n}", "smp_reason_caption": f"fine {n}"}
               for n in ("sample_00000003", "sample_00000047", "sample_00000013")}
    (root / "MERR_coarse_grained.json").write_text(json.dumps(reasons))
    (root / "MERR_fine_grained.json").write_text(json.dumps(reasons))
    coarse = load_corpus(cfg(root, tasks=["emotion", "reason"]), [])
    assert coarse.samples[0].reason == "because sample_00000003"
    fine = load_corpus(cfg(root, tasks=["reason"], options={"reason_source": "fine"}), [])
    assert fine.samples[0].reason == "fine sample_00000003"
    del reasons["sample_00000013"]
    (root / "MERR_coarse_grained.json").write_text(json.dumps(reasons))
    with pytest.raises(CorpusError, match="no reason text for sample sample_00000013"):
        load_corpus(cfg(root, tasks=["reason"]), [])


@pytest.mark.parametrize("annotation, message", [
    (COARSE + "sample_00000099 12\n", "MERR_coarse_grained.txt:4: 2 column\\(s\\)"),
    (COARSE + "sample_00000099 twelve happy\n", "MERR_coarse_grained.txt:4: frame count 'twelve'"),
    (COARSE + "sample_00000099 12 ecstatic\n", "MERR_coarse_grained.txt:4: sample sample_00000099: unknown label"),
    (COARSE + "sample_00000099 12 happy high\n", "MERR_coarse_grained.txt:4: valence 'high'"),
    (COARSE + "sample_00000003 43 happy\n", "duplicate sample id 'sample_00000003'"),
])
def test_bad_annotation(tmp_path, annotation, message):
    transcripts = TRANSCRIPTS + "sample_00000099,x,Hello\n"
    with pytest.raises(CorpusError, match=message):
        load_corpus(cfg(write_merr(tmp_path, annotation, transcripts)), [])


def test_transcript_errors(tmp_path):
    root = write_merr(tmp_path, transcripts=TRANSCRIPTS.replace("What if it fails?", ""))
    with pytest.raises(CorpusError, match="no transcript \\(column 'sentence'\\) for sample sample_00000013"):
        load_corpus(cfg(root), [])
    assert load_corpus(cfg(root, transcript=False), []).samples[2].text is None
    with pytest.raises(CorpusError, match="missing column\\(s\\) sentence_en"):
        load_corpus(cfg(root, options={"transcript_column": "sentence_en"}), [])
    shifted = write_merr(tmp_path / "shifted", transcripts=TRANSCRIPTS.replace("sample_00000013,x,", "sample_00000013,"))
    with pytest.raises(CorpusError, match=r"transcription_en_all.csv:4: row starting 'sample_00000013' has 2 field"):
        load_corpus(cfg(shifted), [])


def test_features_beside_annotation_and_missing(tmp_path):
    root = write_merr(tmp_path)
    for folder in ("mae_340_UTT", "maeV_399_UTT", "HL-UTT"):
        (root / folder).mkdir()
        for sid in ("sample_00000003", "sample_00000047"):
            np.save(root / folder / f"{sid}.npy", np.zeros((1, 1024), np.float32))
    with pytest.raises(CorpusError, match="sample_00000013: face: .*mae_340_UTT/sample_00000013.npy not found"):
        load_corpus(cfg(root), ["face", "video", "audio"])
    corpus = load_corpus(cfg(root, on_missing="skip"), ["face", "video", "audio"], {"face": 1024})
    assert [s.id for s in corpus.samples] == ["sample_00000003", "sample_00000047"]
    assert corpus.skipped[0][0] == "sample_00000013" and "mae_340_UTT" in corpus.skipped[0][1]
    assert corpus.features.get("video", "sample_00000047").shape == (1, 1024)
