"""ECF 2.0 (SemEval-2024 Task 3) reader on JSON written here in the task's format."""
from __future__ import annotations

import json

import pytest

from minigpt4.config import DataConfig
from minigpt4.data.corpora import CorpusError, load_corpus

TRAIN = [{"conversation_ID": 1, "conversation": [
    {"utterance_ID": 1, "text": "Alright , so I am back in high school .", "speaker": "Chandler", "emotion": "neutral"},
    {"utterance_ID": 2, "text": "Oh no !", "speaker": "Monica", "emotion": "surprise"}],
    "emotion-cause_pairs": [["2_surprise", "1_I am back in high school ."]]}]
TEST = [{"conversation_ID": 1375, "conversation": [
    {"utterance_ID": 1, "text": "Please do not do that again .", "speaker": "Chandler", "emotion": "disgust",
     "video_source": ["S01E01", "00:07:40.335", "00:07:44.880"], "video_name": "dia1375utt1.mp4"}],
    "emotion-cause_pairs": [["1_disgust", "1"]]}]


def write(root, train=TRAIN, test=TEST):
    (root / "Subtask_2_train.json").write_text(json.dumps(train))
    (root / "Subtask_2_test.json").write_text(json.dumps(test))
    return root


def test_reads_conversations(tmp_path):
    corpus = load_corpus(DataConfig(corpus="ecf", root=str(write(tmp_path))), [])
    samples = {s.id: s for s in corpus.samples}
    assert corpus.label_set.name == "ecf" and set(samples) == {"dia1utt1", "dia1utt2", "dia1375utt1"}
    assert samples["dia1utt2"].context == ("Chandler: Alright , so I am back in high school .",)
    assert samples["dia1utt2"].group == "dia1" and samples["dia1utt2"].split == "train"
    assert samples["dia1375utt1"].media.endswith("videos/dia1375utt1.mp4") and samples["dia1utt1"].media is None
    assert samples["dia1375utt1"].labels == ("disgust",)


def test_bad_inputs(tmp_path):
    bad = json.loads(json.dumps(TRAIN))
    bad[0]["conversation"][1]["emotion"] = "glee"
    with pytest.raises(CorpusError, match="Subtask_2_train.json: conversation 1, utterance 2: unknown label 'glee'"):
        load_corpus(DataConfig(corpus="ecf", root=str(write(tmp_path, train=bad))), [])
    bad[0]["conversation"][1] = {"utterance_ID": 2, "text": "x"}
    with pytest.raises(CorpusError, match="conversation 1, utterance 2: expected an object with"):
        load_corpus(DataConfig(corpus="ecf", root=str(write(tmp_path, train=bad))), [])
    with pytest.raises(CorpusError, match="duplicate sample id 'dia1375utt1'"):
        load_corpus(DataConfig(corpus="ecf", root=str(write(tmp_path, train=TEST))), [])
