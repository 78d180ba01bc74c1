"""Trainable MiniLM text slot, dialogue context, classifier head and ONNX export.

Real MELD dev utterances where ../shared has them (``MELD_ROOT``); the tests that need no corpus use the demo.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minigpt4.data.collate import Collator
from minigpt4.data.dialogue import DialogueTokenizer
from minigpt4.data.pipeline import prepare_data
from minigpt4.data.run_config import load_config
from minigpt4.models import checkpoint as ckpt
from minigpt4.models.build import build_model
from minigpt4.models.classifier import ClassifierHead, tune_thresholds
from minigpt4.config import ConfigError
from minigpt4.models.text_encoder import segment_mean, utterance_mask
from minigpt4.runtime.dist import DistInfo
from minigpt4.training.engine import make_optimizer
from minigpt4.training.loop import fit
from minigpt4.training.sampling import LengthGroupedShardSampler, make_sampler

ROOT = Path(__file__).resolve().parents[1]
MELD_ROOT = Path(os.environ.get("MELD_ROOT", ROOT / ".." / "shared" / "data" / "meld"))
needs_meld = pytest.mark.skipif(not (MELD_ROOT / "dev_sent_emo.csv").is_file(),
                                reason=f"real MELD CSVs not found at {MELD_ROOT} (set MELD_ROOT)")
# MELD dev alone: fold 1 of 5 over its dialogues is held out, the inner validation carved from the rest.
MELD_DEV = [f"data.root={MELD_ROOT}", "data.options.splits=[dev]", "run.fold=1", "run.num_folds=5"]
CLASSIFIER = ROOT / "train_configs" / "meld_text_classifier.yaml"


def meld_cfg(path: Path, *overrides: str):
    return load_config(path, [*MELD_DEV, *overrides])


def test_context_truncation_keeps_utterance_and_drops_oldest_turns() -> None:
    tok = DialogueTokenizer(max_length=24)
    turns = ["Monica: the oldest turn of them all", "Joey: how you doin", "Rachel: no way"]
    full = DialogueTokenizer(max_length=128).encode("I am so happy today", "Ross", turns)
    assert full.turns == 3
    cut = tok.encode("I am so happy today", "Ross", turns)
    text = tok.tokenizer.decode(cut.input_ids)
    assert len(cut.input_ids) <= 24 and cut.turns == 2
    assert text == "[CLS] joey : how you doin [SEP] rachel : no way [SEP] ross : i am so happy today [SEP]"
    assert cut.token_type_ids == [0] * 12 + [1] * 8  # context (with [CLS] and its [SEP]) 0, utterance 1
    # An utterance longer than the budget is kept (cut at its end) and no turn fits beside it.
    long = tok.encode("word " * 50, None, turns)
    assert long.turns == 0 and len(long.input_ids) == 24
    assert tok.tokenizer.decode(long.input_ids[1:4]) == "word word word"


def test_later_turns_follow_the_utterance_and_give_way_to_earlier_ones() -> None:
    tok = DialogueTokenizer(max_length=24)
    earlier, later = ["Joey: how you doin", "Rachel: no way"], ["Monica: stop it", "Phoebe: the latest turn of them all"]
    both = tok.encode("I am so happy", "Ross", earlier, later)
    assert tok.tokenizer.decode(both.input_ids) == ("[CLS] joey : how you doin [SEP] rachel : no way [SEP] ross : i am "
                                                    "so happy [SEP] monica : stop it [SEP]")  # the farther one left out
    assert both.token_type_ids == [0] * 12 + [1] * 7 + [0] * 5 and both.turns == 2
    alone = tok.encode("I am so happy", "Ross", [], later[:1])
    assert alone.token_type_ids == [0] + [1] * 7 + [0] * 5  # the utterance is still the one of type 1
    assert tok.encode("I am so happy", "Ross", earlier) == tok.encode("I am so happy", "Ross", earlier, ())


def test_future_turns_need_the_text_encoder_and_a_corpus_with_later_turns() -> None:
    with pytest.raises(ConfigError, match="data.future_turns=1 is read by the trainable text slot only"):
        load_config(None, ["data.future_turns=1"])
    with pytest.raises(ConfigError, match="the demo reader gives no later turns"):
        load_config(None, ["data.future_turns=1", "model.text_encoder.enabled=true"])


@needs_meld
def test_meld_samples_read_their_next_turn_when_asked() -> None:
    cfg = meld_cfg(CLASSIFIER, "data.future_turns=1", "model.text_encoder.max_length=128")
    model = build_model(cfg)
    dataset = prepare_data(cfg, model).dataset("train", cfg, model, train=True)
    first = next(i for i, s in enumerate(dataset.samples) if s.following)
    ids = dataset[first]["text_input"].input_ids
    words = dataset.dialogue.tokenizer.decode(ids)
    assert words.endswith(dataset.dialogue.tokenizer.decode(
        dataset.dialogue.tokenizer(dataset.samples[first].following[0], add_special_tokens=False)["input_ids"]) + " [SEP]")


def test_segment_mean_pools_each_row_into_equal_segments() -> None:
    hidden = torch.arange(6, dtype=torch.float32).view(1, 6, 1).repeat(2, 1, 1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    out = segment_mean(hidden, mask, 2)
    assert out.squeeze(-1).tolist() == [[1.0, 4.0], [0.5, 2.5]]
    assert segment_mean(hidden, mask, 1).squeeze().tolist() == [2.5, 1.5]


def test_utterance_pooling_averages_the_utterance_and_falls_back_without_context() -> None:
    hidden = torch.tensor([[1.0, 2.0, 3.0, 10.0, 20.0, 0.0], [4.0, 6.0, 8.0, 0.0, 0.0, 0.0]]).unsqueeze(-1)
    attention = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    types = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]])  # row 2: no earlier turns, all type 0
    mask = utterance_mask(attention, types)
    assert mask.tolist() == [[0, 0, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0]]
    assert segment_mean(hidden, mask, 1).squeeze().tolist() == [15.0, 6.0]


def test_length_grouped_batches_cover_the_epoch_and_pad_less() -> None:
    lengths = [int(x) for x in np.random.default_rng(0).integers(5, 120, size=1000)]
    one = list(LengthGroupedShardSampler(lengths, 8, seed=1, rank=0, world=1))
    assert len(one) == 1000 and sorted(one) == list(range(1000))
    assert one == list(LengthGroupedShardSampler(lengths, 8, seed=1, rank=0, world=1))  # (seed, epoch) only
    moved = LengthGroupedShardSampler(lengths, 8, seed=1, rank=0, world=1)
    moved.set_epoch(1)
    assert list(moved) != one

    def padded(order: list[int]) -> int:
        return sum(max(lengths[i] for i in order[k:k + 8]) * 8 for k in range(0, len(order), 8))
    shuffled = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).tolist()
    real = sum(lengths)
    assert padded(shuffled) > 1.5 * real and padded(one) < 1.1 * real  # a shuffle pads to each batch's longest
    shards = [list(LengthGroupedShardSampler(lengths, 8, seed=1, rank=r, world=2)) for r in range(2)]
    assert not set(shards[0]) & set(shards[1]) and len(shards[0]) == len(shards[1]) == 496
    assert padded(shards[0]) < 1.1 * sum(lengths[i] for i in shards[0])  # every rank's batches stay grouped


def test_length_grouping_needs_the_text_encoder_and_not_the_weighted_sampler() -> None:
    with pytest.raises(ConfigError, match="run.group_by_length groups text-encoder inputs by length"):
        load_config(None, ["run.group_by_length=true"])
    cfg = load_config(None, ["model.head=classifier", "model.vision.kind=none", "data.modalities=[text]"])
    model = build_model(cfg)
    train = prepare_data(cfg, model).dataset("train", cfg, model, train=True)
    with pytest.raises(ValueError, match="needs model.text_encoder.enabled"):
        train.text_lengths()
    with pytest.raises(ConfigError, match="run.balance=sampler"):
        make_sampler(train, load_config(None, ["run.group_by_length=true", "run.balance=sampler",
                                             "model.text_encoder.enabled=true"]).run,
                     DistInfo(0, 1, 0, torch.device("cpu")))


def test_thresholds_tuned_per_class_and_used_for_decisions() -> None:
    probs = torch.tensor([[0.9, 0.30], [0.8, 0.20], [0.1, 0.25], [0.2, 0.05]])
    gold = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=torch.float32)
    thresholds = tune_thresholds(probs, gold)
    assert 0.2 <= thresholds[0] < 0.8 and 0.1 <= thresholds[1] < 0.25
    head = ClassifierHead(4, 0, 2, 0.0, multi_label=True)
    head.thresholds.copy_(thresholds)
    assert head.decide(probs).tolist() == [[True, True], [True, False], [False, True], [True, False]]


def _randomise_adapters(model) -> None:
    """LoRA B starts at zero (adapters are a no-op); give every trainable tensor random values."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.02)


def test_encoder_lora_weights_are_checkpointed_and_reload_exactly(tmp_path: Path) -> None:
    overrides = ["model.head=classifier", "model.text_encoder.enabled=true", "model.text_encoder.tune=lora",
                 "model.text_encoder.max_length=32", "model.vision.kind=none", "data.modalities=[text]"]
    cfg = load_config(None, overrides)  # the demo corpus
    model = build_model(cfg).eval()
    _randomise_adapters(model)
    lora = [n for n in model.trainable_state_dict() if n.startswith("text_encoder.") and "lora_" in n]
    assert len(lora) == 2 * 6 * 6  # A and B of query, key, value and three dense layers, in 6 layers
    ckpt.write_checkpoint(tmp_path / "ck", model, cfg)
    again = build_model(load_config(None, [*overrides, f"model.checkpoint={tmp_path / 'ck'}"])).eval()
    saved, loaded = model.trainable_state_dict(), again.trainable_state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    data = prepare_data(cfg, model)
    batch = Collator(model.tokenizer.pad_token_id, "prompt")([data.dataset("test", cfg, model)[i] for i in range(4)])
    assert torch.equal(model.classify(batch), again.classify(batch))


@needs_meld
def test_tiny_training_on_meld_dev_text_lowers_the_loss() -> None:
    cfg = meld_cfg(CLASSIFIER, "model.text_encoder.max_length=48")
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    dataset = data.dataset("train", cfg, model, train=True)
    batch = Collator(model.tokenizer.pad_token_id, "train")([dataset[i] for i in range(16)])
    assert batch["text_input"]["token_type_ids"].max() == 1  # earlier turns reached the encoder
    optimizer = make_optimizer(model, cfg)
    model.train()
    losses = []
    for _ in range(12):
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


@needs_meld
@pytest.mark.parametrize(("name", "layers"), [("meld_text", 6), ("meld_text_classifier", 6), ("meld_text_mpnet", 12)])
def test_shipped_meld_text_configs_train_and_evaluate(tmp_path: Path, name: str, layers: int) -> None:
    import eval_emotion

    quick = [f"run.output_dir={tmp_path / 'run'}", "run.max_steps=2", "run.batch_size=4", "run.eval_every=0",
             "eval.max_samples=8", "model.text_encoder.max_length=32"]
    final = fit(meld_cfg(ROOT / "train_configs" / f"{name}.yaml", *quick))
    tuned = [k for k in load_file(str(ckpt.weights_file(final))) if k.startswith("text_encoder.")]
    tuned_layers = {k.split(".layer.")[1].split(".")[0] for k in tuned if ".layer." in k}
    assert tuned_layers == {str(i) for i in range(layers)} and not any(".embeddings." in k for k in tuned)
    eval_emotion.main(["--cfg-path", str(ROOT / "eval_configs" / f"{name}.yaml"), f"data.root={MELD_ROOT}",
                       "data.options.splits=[dev]", "eval.split=val", f"model.checkpoint={final}",
                       f"run.output_dir={tmp_path / 'eval'}", "eval.max_samples=8", "model.text_encoder.max_length=32"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_samples"] == 8 and 0.0 <= metrics["weighted_f1"] <= 1.0
    assert {"fear", "disgust"} <= set(metrics["per_class"])


@needs_meld
def test_slot_probe_prints_the_head_beside_a_probe_on_its_slot(tmp_path: Path, capsys) -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location("slot_probe", ROOT / "bench" / "slot_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    quick = [f"run.output_dir={tmp_path / 'run'}", "run.max_steps=2", "run.batch_size=4", "run.eval_every=1",
             "run.average_last=0", "model.text_encoder.max_length=32"]
    final = fit(meld_cfg(ROOT / "train_configs" / "meld_text.yaml", *quick))
    assert probe.main(["--checkpoint", str(final), *MELD_DEV]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split(" | ")[0]: [float(x) for x in line.strip("| ").split(" | ")[1:]] for line in lines
            if line.startswith("| the checkpoint's own") or line.startswith("| logistic")}
    own, probed = rows["| the checkpoint's own LLM head (label scoring)"], rows["| logistic-regression probe"]
    assert all(0.0 <= v <= 1.0 for v in own + probed)
    assert lines[-1].startswith("ratio: ") and float(lines[-1][7:]) == pytest.approx(own[0] / probed[0], abs=0.02)


@needs_meld
def test_onnx_export_matches_pytorch_on_meld_dev(tmp_path: Path) -> None:
    from minigpt4.serving.onnx_export import export_onnx, onnx_logits, onnx_session

    cfg = meld_cfg(CLASSIFIER, "model.text_encoder.tune=lora")
    model = build_model(cfg).eval()
    _randomise_adapters(model)
    data = prepare_data(cfg, model)
    dev = data.dataset("fold", cfg, model)
    collate = Collator(model.tokenizer.pad_token_id, "prompt")
    batch = collate([dev[i] for i in range(16)])
    path = export_onnx(model, collate([dev[0], dev[0]])["text_input"], tmp_path / "model.onnx")  # no padding
    session = onnx_session(path)
    with torch.no_grad():
        reference = model.classifier_logits(batch).numpy()
    got = onnx_logits(session, batch["text_input"])  # another batch size and length than the export's
    assert got.shape == (16, 7)
    np.testing.assert_allclose(got, reference, atol=1e-4, rtol=0)
