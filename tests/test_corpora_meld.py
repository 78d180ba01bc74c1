"""MELD reader on CSVs written here in the published format, plus the real CSVs where ../shared has them."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from minigpt4.config import DataConfig
from minigpt4.data.corpora import CorpusError, load_corpus
from minigpt4.data.corpora.meld import repair_text

HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
TRAIN = HEADER + (
    '1,also I was the point person on my company’s transition from the KL-5 to GR-6 system.,Chandler,neutral,'
    'neutral,0,0,8,21,"00:16:16,059","00:16:21,731"\n'
    '2,"You must’ve had your hands full, right?",The Interviewer,joy,positive,0,1,8,21,"00:16:21,940","00:16:23,442"\n'
    '3,That I did.,Chandler,neutral,neutral,0,3,8,21,"00:16:23,454","00:16:26,710"\n'
    '4,Oh my God!,Monica,surprise,positive,1,0,3,19,"00:14:38,127","00:14:40,378"\n'
    '5,I hate this.,Ross,anger,negative,125,3,3,19,"00:14:41,000","00:14:42,000"\n'
)
DEV = HEADER + (
    '1,Why do all you’re coffee mugs have numbers on the bottom?,Mark,surprise,positive,0,0,3,19,'
    '"00:14:38,127","00:14:40,378"\n'
    '2,I’m scared.,Rachel,fear,negative,110,7,3,19,"00:14:41,000","00:14:42,000"\n'
)
TEST = HEADER + '1,Ugh.,Joey,disgust,negative,0,0,1,1,"00:00:01,000","00:00:02,000"\n'


def write_meld(root: Path, train: str = TRAIN, dev: str = DEV, test: str = TEST) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("dev", dev), ("test", test)):
        (root / f"{name}_sent_emo.csv").write_text(text, encoding="utf-8")
    return root


def cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(corpus="meld", root=str(root), **kw)


def test_reads_ids_labels_groups_context(tmp_path):
    corpus = load_corpus(cfg(write_meld(tmp_path)), [])
    by_id = {s.id: s for s in corpus.samples}
    assert corpus.label_set.name == "meld"
    assert len(by_id) == 8 and Counter(s.split for s in corpus.samples) == {"train": 5, "dev": 2, "test": 1}
    s = by_id["train_dia0_utt1"]
    assert s.labels == ("joy",) and s.group == "train_dia0" and s.text == "You must’ve had your hands full, right?"
    assert s.context == ("Chandler: also I was the point person on my company’s transition from the KL-5 to GR-6 system.",)
    assert len(by_id["train_dia0_utt3"].context) == 2  # a gap in Utterance_ID keeps the order
    assert by_id["train_dia0_utt0"].following[0] == "The Interviewer: You must’ve had your hands full, right?"
    assert len(by_id["train_dia0_utt0"].following) == 2 and by_id["train_dia0_utt3"].following == ()
    assert by_id["dev_dia0_utt0"].group == "dev_dia0" != by_id["train_dia0_utt0"].group
    assert by_id["train_dia0_utt0"].meta["start"] == "00:16:16,059"
    assert by_id["test_dia0_utt0"].media.endswith("output_repeated_splits_test/dia0_utt0.mp4")


def test_cp1252_file_and_mojibake_repaired(tmp_path):
    root = write_meld(tmp_path)
    (root / "train_sent_emo.csv").write_bytes(TRAIN.encode("cp1252"))
    (root / "dev_sent_emo.csv").write_text(DEV.replace("’", "\x92"), encoding="utf-8")
    by_id = {s.id: s for s in load_corpus(cfg(root), []).samples}
    assert by_id["train_dia0_utt1"].text == "You must’ve had your hands full, right?"
    assert by_id["dev_dia110_utt7"].text == "I’m scared."
    assert repair_text("It\u00e2\u20ac\u2122s") == "It’s" and repair_text("café") == "café"


@pytest.mark.parametrize("bad, message", [
    ('9,Hi,Joey,happyish,positive,3,0,1,1,"0","0"\n', "unknown label 'happyish'"),
    ('9,Hi,Joey,joy,positive,x3,0,1,1,"0","0"\n', "Dialogue_ID is 'x3', expected an integer"),
    ('9,,Joey,joy,positive,3,0,1,1,"0","0"\n', "empty Utterance"),
    ('9,Hi,Joey,joy,positive,0,0,1,1,"0","0"\n', "duplicate utterance Dialogue_ID=0 Utterance_ID=0"),
    # Speaker left out: read shifted, the sentiment would become the label and Utterance_ID the Dialogue_ID
    ('9,Hi,neutral,neutral,3,5,1,1,"0","0"\n', "row starting '9' has 10 field\\(s\\), the header has 11"),
    ('9,Hi,Joey,joy,positive,3,0,1,1,"0","0",extra\n', "has 12 field\\(s\\), the header has 11"),
])
def test_bad_rows_name_file_and_line(tmp_path, bad, message):
    root = write_meld(tmp_path, train=TRAIN + bad)
    with pytest.raises(CorpusError, match=message) as err:
        load_corpus(cfg(root), [])
    assert "train_sent_emo.csv:7" in str(err.value)


def test_missing_column_and_missing_split(tmp_path):
    root = write_meld(tmp_path, dev=DEV.replace("Emotion", "Feeling"))
    with pytest.raises(CorpusError, match="dev_sent_emo.csv: missing column.*Emotion"):
        load_corpus(cfg(root), [])
    (root / "test_sent_emo.csv").unlink()
    with pytest.raises(CorpusError, match="test_sent_emo.csv"):
        load_corpus(cfg(root, options={"splits": ["train", "test"]}), [])
    assert len(load_corpus(cfg(root, options={"splits": ["train"]}), []).samples) == 5


def test_missing_media_only_matters_for_image(tmp_path):
    root = write_meld(tmp_path)
    for split, folder in (("train", "train_splits"), ("dev", "dev_splits_complete"),
                          ("test", "output_repeated_splits_test")):
        (root / folder).mkdir()
    for name in ("train_splits/dia0_utt0", "train_splits/dia0_utt1", "train_splits/dia0_utt3",
                 "train_splits/dia1_utt0", "train_splits/dia125_utt3", "dev_splits_complete/dia0_utt0",
                 "output_repeated_splits_test/dia0_utt0"):
        (root / f"{name}.mp4").write_bytes(b"")
    assert len(load_corpus(cfg(root), []).samples) == 8
    with pytest.raises(CorpusError, match="2 sample\\(s\\) lack a file") as err:
        load_corpus(cfg(root), ["image"])
    assert "dev_dia110_utt7" in str(err.value) and "missing from the MELD release" in str(err.value)
    assert "train_dia125_utt3" in str(err.value) and "corrupted in the MELD release" in str(err.value)
    corpus = load_corpus(cfg(root, on_missing="skip"), ["image"])
    assert sorted(sid for sid, _ in corpus.skipped) == ["dev_dia110_utt7", "train_dia125_utt3"]
    assert len(corpus.samples) == 6


MELD_ROOT = Path(os.environ.get("MELD_ROOT", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "meld"))


@pytest.mark.skipif(not (MELD_ROOT / "train_sent_emo.csv").is_file(),
                    reason=f"real MELD CSVs not found at {MELD_ROOT} (set MELD_ROOT)")
def test_real_meld_counts():
    corpus = load_corpus(cfg(MELD_ROOT, options={"splits": ["train", "dev"]}), [])
    counts = {split: Counter(s.label for s in corpus.samples if s.split == split) for split in ("train", "dev")}
    assert sum(counts["train"].values()) == 9989 and sum(counts["dev"].values()) == 1109
    assert counts["train"] == {"neutral": 4710, "joy": 1743, "surprise": 1205, "anger": 1109, "sadness": 683,
                               "disgust": 271, "fear": 268}
    assert counts["dev"] == {"neutral": 470, "joy": 163, "surprise": 150, "anger": 153, "sadness": 111,
                             "disgust": 22, "fear": 40}
    train_dialogues = {s.group for s in corpus.samples if s.split == "train"}
    assert len(train_dialogues) == 1038 and "train_dia60" not in train_dialogues
    assert all(s.text for s in corpus.samples)
    assert sum(s.text.count("’") for s in corpus.samples if s.split == "train") >= 3500  # curly quotes kept
