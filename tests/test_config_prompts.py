"""Typed config errors, presets, and the single prompt builder shared by training and evaluation."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from minigpt4.config import ConfigError
from minigpt4.data.labels import get_label_set
from minigpt4.data.prompts import PromptBuilder, emotion_pool
from minigpt4.data.run_config import load_config
from minigpt4.modalities import SLOT_IDS
from minigpt4.models.assemble import build_tokenizer
from minigpt4.models.build import build_model
from minigpt4.models.tiny_tokenizer import ASSET_DIR, train


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "model:\n  llm:\n    hiden_size: 32\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "hiden_size" in str(err.value) and str(path) in str(err.value)


def test_wrong_type_names_key_and_file(tmp_path):
    path = write(tmp_path, "run:\n  max_steps: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "max_steps" in str(err.value) and str(path) in str(err.value)


def test_bad_choice_and_override_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.ablation='blank' is not one of drop, zero"):
        load_config(None, ["data.ablation=blank"])
    with pytest.raises(ConfigError, match="unknown modality 'smell'"):
        load_config(None, ["data.modalities=[audio,smell]"])
    with pytest.raises(ConfigError, match="command line.*nope"):
        load_config(None, ["run.nope=1"])


def test_overrides_beat_file_and_preset(tmp_path):
    path = write(tmp_path, "run:\n  lr: 0.5\n  max_steps: 3\n")
    cfg = load_config(path, ["run.max_steps=7"])
    assert cfg.run.lr == 0.5 and cfg.run.max_steps == 7
    assert cfg.model.llm.initializer_range == 0.5  # from the tiny preset


def test_real_preset_fails_clearly_without_paths():
    with pytest.raises(ConfigError, match="required keys are not set: model.llm.path, model.vision.checkpoint"):
        load_config(None, ["model.preset=llama2_7b"])
    cfg = load_config(None, ["model.preset=llama2_7b"], allow_missing=True)
    assert OmegaConf.is_missing(cfg.model.llm, "path")
    with pytest.raises(ConfigError, match="model.llm.path is required by model preset 'llama2_7b'"):
        build_model(cfg)
    cfg = load_config(None, ["model.preset=llama2_7b", "model.llm.path=/nonexistent/llama",
                             "model.vision.checkpoint=/nonexistent/eva.pth"])
    with pytest.raises(FileNotFoundError, match="/nonexistent/llama"):
        build_tokenizer(cfg.model)


def test_unknown_preset_lists_available():
    with pytest.raises(ConfigError, match="available: llama2_7b.*tiny"):
        load_config(None, ["model.preset=gpt5"])


@pytest.fixture(scope="module")
def builder():
    tok = build_tokenizer(load_config(None).model)
    return PromptBuilder(tok, {"image": 4, "cls": 1, "face": 1, "video": 1, "audio": 1, "text": 1}, "[INST] {} [/INST]")


def test_prompt_text_reproduces_upstream_template(builder):
    text = builder.instruction("emotion", "Please determine which emotion label in the video represents: happy.",
                               ["image", "cls", "face", "video", "audio"], "I am fine")
    assert text == ("<video><ImageHere></video> <feature><FaceHere><VideoHere><AudioHere><ClsHere></feature> "
                    "The person in video says: I am fine.  [emotion] Please determine which emotion label in the "
                    "video represents: happy. ")
    assert emotion_pool(get_label_set("merr"), "single")[0] == (
        "Please determine which emotion label in the video represents: happy, sad, neutral, angry, worried, "
        "surprise, fear, contempt, doubt.")


def test_prompt_token_ids_are_pinned_with_one_bos(builder):
    enc = builder.build("emotion", "Which emotion?", ["audio", "text"], "Oh no")
    bos = builder.tokenizer.bos_token_id
    assert enc.ids.count(bos) == 1 and enc.ids[0] == bos
    assert enc.slots.count(SLOT_IDS["audio"]) == 1 and enc.slots.count(SLOT_IDS["text"]) == 1
    assert enc.ids == PINNED_IDS
    answer = builder.encode_answer("happy")
    assert answer[-1] == builder.tokenizer.eos_token_id and len(answer) == 2


# The committed tiny tokenizer's ids of that prompt: a change here means every saved run's prompts changed.
PINNED_IDS = [1, 631, 807, 64, 805, 806, 33, 3, 3, 224, 801, 806, 33, 730, 472, 302, 368, 1061, 29, 409, 75, 2259, 17,
              224, 631, 358, 64, 683, 367, 34, 224, 1116, 807, 64]


def test_training_and_evaluation_share_the_prompt():
    """Training and evaluation examples come from EmotionDataset; train-mode collation (right padding, answer
    appended) holds the very same prompt ids that prompt-mode collation left-pads, for prompts of different
    lengths in one batch."""
    from minigpt4.data.collate import Collator
    from minigpt4.data.pipeline import prepare_data

    cfg = load_config(None, ["data.modalities=[audio,text]", "data.instruction=0"])
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    train_examples = [data.dataset("train", cfg, model, train=True)[i] for i in range(6)]
    eval_examples = [data.dataset("train", cfg, model)[i] for i in range(6)]
    assert [e["ids"] for e in train_examples] == [e["ids"] for e in eval_examples]
    lengths = [len(e["ids"]) for e in eval_examples]
    assert len(set(lengths)) > 1, "prompts of one length would never be padded"
    train = Collator(model.tokenizer.pad_token_id)(train_examples)
    prompt = Collator(model.tokenizer.pad_token_id, "prompt")(eval_examples)
    width = prompt["input_ids"].shape[1]
    for row, (n, ex) in enumerate(zip(lengths, eval_examples)):
        assert train["input_ids"][row, :n].tolist() == prompt["input_ids"][row, width - n:].tolist() == ex["ids"]
        assert prompt["attention_mask"][row].tolist() == [0] * (width - n) + [1] * n
        answer = train["labels"][row][train["labels"][row] != -100].tolist()
        assert answer == train_examples[row]["answer"] and train["labels"][row, :n].eq(-100).all()


def test_tiny_tokenizer_rebuilds_identically(tmp_path):
    train(tmp_path)
    assert (tmp_path / "tokenizer.json").read_bytes() == (ASSET_DIR / "tokenizer.json").read_bytes()


def test_few_shot_examples_come_before_the_question_one_per_label():
    from minigpt4.data.pipeline import prepare_data
    from minigpt4.data.prompts import SHOT_WORDS

    cfg = load_config(None, ["data.modalities=[audio]", "data.instruction=0", "data.few_shot=3",
                             "model.max_prompt_tokens=400"])
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    shots = data.builder.shots
    labels = data.corpus.label_set.labels
    assert [s.answer for s in shots] == list(labels[:3])
    train = {(s.text, s.label) for s in data.splits["train"]}
    for shot in shots:  # a training utterance of that label, of a useful length
        assert (shot.transcript, shot.answer) in train
        assert SHOT_WORDS[0] <= len(shot.transcript.split()) <= SHOT_WORDS[1]
    test = data.dataset("test", cfg, model)
    text = model.tokenizer.decode(test[0]["ids"])
    question = text.rindex("[INST]")
    for shot in shots:  # each shot as an earlier turn, answered
        assert f"says: {shot.transcript}.  [emotion]" in text[:question]
        assert f"[/INST] {shot.answer} [INST]" in text.replace("  ", " ")
    assert f"says: {test.samples[0].text}." in text[question:]
    plain = prepare_data(load_config(None, ["data.modalities=[audio]", "data.instruction=0"]), model)
    assert len(test[0]["ids"]) > len(plain.dataset("test", cfg, model)[0]["ids"]) + 30
    assert plain.builder.shots == ()
