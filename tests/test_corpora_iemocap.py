"""IEMOCAP reader on a miniature raw release written here in the release's own formats."""
from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from minigpt4.config import DataConfig
from minigpt4.data.corpora import CorpusError, load_corpus

EVAL_S1 = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
C-E3:\tNeutral;\t()
C-E4:\tNeutral;\t()
C-F1:\tNeutral;\t(curious)
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[3.5000, 3.5000, 3.0000]
C-E2:\tExcited; Happiness;\t()
C-E3:\tExcited;\t()
C-E4:\tHappiness;\t()
C-M1:\tExcited;\t()

[12.0000 - 13.5000]\tSes01F_impro01_F001\tang\t[1.5000, 4.0000, 4.5000]
C-E2:\tAnger; Frustration;\t()
C-E3:\tAnger; Sadness;\t()
C-E4:\tFrustration; Sadness;\t()

[14.0000 - 15.0000]\tSes01F_impro01_M001\txxx\t[2.0000, 2.0000, 2.0000]
C-E2:\tSadness;\t()
C-E3:\tNeutral state;\t()
C-E4:\tSadness;\t()

[16.0000 - 17.0000]\tSes01F_impro01_F002\tfru\t[2.0000, 3.0000, 3.0000]
C-E2:\tFrustration;\t()
C-E3:\tFrustration;\t()
C-E4:\tAnger;\t()
"""
TRANS_S1 = """Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
Ses01F_impro01_M000 [010.0100-011.3925]: Do you have your forms?
M: [BREATHING]
Ses01F_impro01_F001 [012.0000-013.5000]: [GARBAGE] Yeah.
Ses01F_impro01_M001 [014.0000-015.0000]: Let me see them.
Ses01F_impro01_F002 [016.0000-017.0000]: Is there a problem?
"""
EVAL_S2 = """[1.0000 - 2.0000]\tSes02M_script01_1_M000\tsad\t[2.0000, 2.0000, 2.0000]
C-E1:\tSadness;\t()
C-E2:\tSadness;\t()

[3.0000 - 4.0000]\tSes02M_script01_1_F000\thap\t[4.0000, 3.0000, 3.0000]
C-E1:\tHappiness;\t()
C-E2:\tHappiness;\t()
"""
TRANS_S2 = """Ses02M_script01_1_M000 [001.0000-002.0000]: I miss her.
Ses02M_script01_1_F000 [003.0000-004.0000]: Good news!
"""


def write_release(root: Path, eval_s1: str = EVAL_S1, trans_s1: str = TRANS_S1) -> Path:
    release = root / "IEMOCAP_full_release"
    for session, dialog, ev, tr in ((1, "Ses01F_impro01", eval_s1, trans_s1),
                                    (2, "Ses02M_script01_1", EVAL_S2, TRANS_S2)):
        base = release / f"Session{session}" / "dialog"
        for sub in ("EmoEvaluation", "transcriptions"):
            (base / sub).mkdir(parents=True)
        (base / "EmoEvaluation" / f"{dialog}.txt").write_text(ev)
        (base / "transcriptions" / f"{dialog}.txt").write_text(tr)
    return root


def cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(corpus="iemocap", root=str(root), **kw)


def by_id(corpus):
    return {s.id: s for s in corpus.samples}


def test_4class_default(tmp_path):
    corpus = load_corpus(cfg(write_release(tmp_path)), [])
    samples = by_id(corpus)
    assert corpus.label_set.name == "iemocap_4class"
    assert {k: v.labels for k, v in samples.items()} == {
        "Ses01F_impro01_F000": ("neutral",), "Ses01F_impro01_M000": ("happy",), "Ses01F_impro01_F001": ("angry",),
        "Ses02M_script01_1_M000": ("sad",), "Ses02M_script01_1_F000": ("happy",)}
    assert corpus.excluded == {"undecided (xxx)": 1, "consensus fru outside the label setup": 1}
    s = samples["Ses01F_impro01_F001"]
    assert s.group == "Session1" and s.split is None and s.text == "[GARBAGE] Yeah."
    assert s.context == ("F: Excuse me.", "M: Do you have your forms?")
    assert samples["Ses01F_impro01_F000"].following[:2] == ("M: Do you have your forms?", "F: [GARBAGE] Yeah.")
    assert s.meta["votes"] == {"ang": 2, "fru": 2, "sad": 2} and s.meta["segment"] == (12.0, 13.5)
    assert s.meta["side"] == "left" and samples["Ses01F_impro01_M000"].meta["side"] == "right"
    assert samples["Ses02M_script01_1_M000"].meta["side"] == "left"
    assert s.media.endswith("Session1/dialog/avi/DivX/Ses01F_impro01.avi")


def test_multi_label_from_votes(tmp_path):
    root = write_release(tmp_path)
    samples = by_id(load_corpus(cfg(root, label_mode="multi"), []))
    assert samples["Ses01F_impro01_F001"].labels == ("angry", "sad")  # fru is outside 4-class
    assert samples["Ses01F_impro01_M000"].labels == ("happy",)  # exc + hap merge, one vote per judge
    six = by_id(load_corpus(cfg(root, labels="6class", label_mode="multi"), []))
    assert six["Ses01F_impro01_F001"].labels == ("angry", "sad", "frustrated")
    assert six["Ses01F_impro01_M000"].labels == ("excited", "happy")
    assert six["Ses01F_impro01_F002"].labels == ("frustrated",)
    three = by_id(load_corpus(cfg(root, labels="6class", label_mode="multi", min_votes=3), []))
    assert three["Ses01F_impro01_F001"].labels == ("angry",)


def test_setups_and_undecided(tmp_path):
    root = write_release(tmp_path)
    everything = load_corpus(cfg(root, labels="all", keep_undecided=True), [])
    assert everything.label_set.name == "iemocap_all" and len(everything.samples) == 7
    assert by_id(everything)["Ses01F_impro01_M001"].labels == ("sad",)  # most-voted label of an xxx utterance
    test_split = load_corpus(cfg(root, options={"test_sessions": [2]}), [])
    assert Counter(s.split for s in test_split.samples) == {"train": 3, "test": 2}
    only2 = load_corpus(cfg(root, options={"sessions": [2]}), [])
    assert {s.group for s in only2.samples} == {"Session2"}
    with pytest.raises(CorpusError, match="data.labels='7class' is not a label setup of corpus 'iemocap'"):
        load_corpus(cfg(root, labels="7class"), [])
    with pytest.raises(CorpusError, match="unknown key\\(s\\) sesions"):
        load_corpus(cfg(root, options={"sesions": [1]}), [])


@pytest.mark.parametrize("old, new, message", [
    ("C-E3:\tNeutral;\t()", "C-E3:\tBored;\t()", "Ses01F_impro01.txt:5: unknown evaluation label 'bored'"),
    ("[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu", "[6.2901 8.2357]\tSes01F_impro01_F000\tneu",
     "Ses01F_impro01.txt:3: malformed block header"),
    ("\tneu\t[2.5000", "\tmeh\t[2.5000", "Ses01F_impro01.txt:3: unknown consensus code 'meh'"),
    ("A-E3:\tval 3", "random text\tval 3", "Ses01F_impro01.txt:8: unexpected line"),
    ("C-E3:\tNeutral;\t()", "C-E3:\tNeutral;", "Ses01F_impro01.txt:5: judgement line of Ses01F_impro01_F000 has 2 "),
])
def test_bad_evaluation_lines(tmp_path, old, new, message):
    root = write_release(tmp_path, eval_s1=EVAL_S1.replace(old, new, 1))
    with pytest.raises(CorpusError, match=message):
        load_corpus(cfg(root), [])


def test_bad_transcriptions(tmp_path):
    bad = TRANS_S1.replace("Ses01F_impro01_F001 [012.0000-013.5000]:", "Ses01F_impro01_F001 [012.0000-013.5000]")
    with pytest.raises(CorpusError, match="Ses01F_impro01.txt:4: malformed utterance line"):
        load_corpus(cfg(write_release(tmp_path / "a", trans_s1=bad)), [])
    missing = TRANS_S1.replace("Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n", "")
    root = write_release(tmp_path / "b", trans_s1=missing)
    with pytest.raises(CorpusError, match="no transcript for utterance Ses01F_impro01_F000"):
        load_corpus(cfg(root), [])
    assert by_id(load_corpus(cfg(root, transcript=False), []))["Ses01F_impro01_F000"].text is None


def test_features_and_dialogue_frames(tmp_path):
    root = write_release(tmp_path)
    for folder in ("mae_features", "maeV_features", "hubert_features"):
        (root / folder).mkdir()
        for sid in by_id(load_corpus(cfg(root), [])):
            np.save(root / folder / f"{sid}.npy", np.ones(16, np.float32))
    with pytest.raises(CorpusError, match="Ses01F_impro01_F000: image: media .*Ses01F_impro01.avi not found"):
        load_corpus(cfg(root), ["audio", "image"])
    avi = root / "IEMOCAP_full_release/Session1/dialog/avi/DivX/Ses01F_impro01.avi"
    avi.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"DIVX"), 10, (64, 48))
    for i in range(200):
        frame = np.zeros((48, 64, 3), np.uint8)
        if 120 <= i < 135:
            frame[:, :32] = 255  # F001 (12.0-13.5 s) speaks on the left
        writer.write(frame)
    writer.release()
    corpus = load_corpus(cfg(root, options={"sessions": [1]}), ["audio", "image", "face", "video"], {"audio": 16})
    s = by_id(corpus)["Ses01F_impro01_F001"]
    assert corpus.features.get("audio", s.id).shape == (1, 16)
    frame = corpus.frames.get(s)
    assert frame.shape == (24, 32, 3) and frame.mean() > 200
    np.save(root / "hubert_features" / f"{s.id}.npy", np.ones(15, np.float32))
    with pytest.raises(ValueError, match="Ses01F_impro01_F001.*dimension 15, expected 16"):
        corpus.features.get("audio", s.id)


def test_scr_pickle(tmp_path):
    records = [
        {"id": "Ses01F_impro01_F000", "emotion": "neu", "transcription": "Excuse me.", "start": 6.29, "end": 8.23},
        {"id": "Ses05M_script01_1_F001", "emotion": "exc", "transcription": "Yes!"},
        {"id": "Ses01F_impro01_F001", "emotion": "fru", "transcription": "Ugh."},
    ]
    (tmp_path / "data_collected.pickle").write_bytes(pickle.dumps(records))
    corpus = load_corpus(cfg(tmp_path, options={"pickle": "data_collected.pickle", "test_sessions": [5]}), [])
    samples = by_id(corpus)
    assert samples["Ses05M_script01_1_F001"].labels == ("happy",) and samples["Ses05M_script01_1_F001"].split == "test"
    assert samples["Ses01F_impro01_F000"].group == "Session1"
    assert samples["Ses01F_impro01_F000"].media.endswith("processed_videoframes/Ses01F_impro01_F000.npy")
    assert corpus.excluded == {"emotion fru outside the label setup": 1}
    (tmp_path / "bad.pickle").write_bytes(pickle.dumps([{"id": "Ses01F_impro01_F000", "emotion": "zzz"}]))
    with pytest.raises(CorpusError, match="bad.pickle: record 0 \\(Ses01F_impro01_F000\\): unknown emotion 'zzz'"):
        load_corpus(cfg(tmp_path, options={"pickle": "bad.pickle"}), [])


def test_scr_pickle_with_a_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    records = [{"id": "Ses01F_impro01_F000", "emotion": "neu", "start": np.float64(6.29), "x": Payload()}]
    (tmp_path / "evil.pickle").write_bytes(pickle.dumps(records))
    with pytest.raises(CorpusError, match=r"evil.pickle: it names posix.system, which is not plain data; it is not "
                                          r"unpickled"):
        load_corpus(cfg(tmp_path, options={"pickle": "evil.pickle"}), [])
    assert not marker.exists()
    records[0].pop("x")  # NumPy values (a float64 start) are data and still load
    (tmp_path / "numpy.pickle").write_bytes(pickle.dumps(records))
    assert list(by_id(load_corpus(cfg(tmp_path, options={"pickle": "numpy.pickle"}), []))) == ["Ses01F_impro01_F000"]
