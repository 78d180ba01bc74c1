"""Samples -> examples -> batches on the demo corpus: ablation layouts, answers, splits, class weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from minigpt4.data.collate import Collator
from minigpt4.data.pipeline import prepare_data
from minigpt4.data.run_config import load_config
from minigpt4.modalities import SLOT_IDS
from minigpt4.models.build import build_model


def dataset(overrides, split="train", train=False):
    cfg = load_config(None, overrides)
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    return cfg, model, data, data.dataset(split, cfg, model, train=train)


def slot_counts(example) -> dict[str, int]:
    return {name: example["slots"].count(i) for name, i in SLOT_IDS.items() if example["slots"].count(i)}


def assert_batch_loss_is_the_token_mean_of_sample_losses(model, examples):
    """Padding, masks and the placement of every modality leave each sample's loss as it is alone: the batch
    loss is the answer-token-weighted mean of the one-sample losses (and a random model's loss is far from 0)."""
    model.eval()
    collate = Collator(model.tokenizer.pad_token_id)
    assert len({len(e["ids"]) for e in examples}) > 1, "examples of one length would never be padded"
    with torch.no_grad():
        batch = float(model(collate(examples)).loss)
        alone = [(float(model(collate([e])).loss), len(e["answer"])) for e in examples]
    expected = sum(loss * n for loss, n in alone) / sum(n for _, n in alone)
    assert batch == pytest.approx(expected, rel=1e-4) and expected > 0.5


def test_full_layout_matches_model_slot_tokens():
    _, model, _, ds = dataset([])
    ex = ds[0]
    assert slot_counts(ex) == model.slot_tokens
    batch = Collator(model.tokenizer.pad_token_id)([ds[i] for i in range(4)])
    assert set(batch["features"]) == {"face", "video", "audio", "text"}
    assert batch["image"].shape == (4, 3, 32, 32)
    assert_batch_loss_is_the_token_mean_of_sample_losses(model, [ds[i] for i in range(4)])


def test_drop_removes_placeholder_spans():
    _, model, _, ds = dataset(["data.modalities=[audio,text]", "data.ablation=drop"])
    ex = ds[0]
    assert slot_counts(ex) == {"audio": 1, "text": 1}
    text = model.tokenizer.decode(ex["ids"])
    assert "<video>" not in text and "<feature>" in text
    assert set(ex["features"]) == {"audio", "text"} and ex["image"] is None
    assert_batch_loss_is_the_token_mean_of_sample_losses(model, [ds[i] for i in range(3)])


def test_zero_keeps_layout_and_feeds_zeros():
    _, model, _, full = dataset([])
    _, _, _, ds = dataset(["data.modalities=[audio]", "data.ablation=zero"])
    ex, ref = ds[0], full[0]
    assert ex["ids"] == ref["ids"] and ex["slots"] == ref["slots"]
    assert not ex["features"]["face"].any() and not ex["image"].any()
    np.testing.assert_array_equal(ex["features"]["audio"], ref["features"]["audio"])


def test_transcript_switch_and_multi_label_answer():
    _, model, _, ds = dataset(["data.transcript=false"])
    assert "says:" not in model.tokenizer.decode(ds[0]["ids"])
    _, model, data, ds = dataset(["data.label_mode=multi"])
    ex = ds[0]
    assert model.tokenizer.decode(ex["answer"], skip_special_tokens=True).strip() == \
        data.corpus.label_set.format_answer(ex["gold"])


def test_training_draws_are_reproducible_per_epoch():
    _, _, _, ds = dataset(["data.instruction=null"], train=True)
    first = [ds[i]["ids"] for i in range(8)]
    assert first == [ds[i]["ids"] for i in range(8)]
    ds.set_epoch(1)
    assert [ds[i]["ids"] for i in range(8)] != first


def test_fold_splits_are_disjoint_and_keep_test_apart():
    cfg, _, data, _ = dataset(["run.fold=2"])
    ids = {k: {s.id for s in v} for k, v in data.splits.items()}
    assert ids["fold"] and ids["train"] and ids["val"] and ids["test"]
    for a in ids:
        for b in ids:
            if a < b:
                assert not ids[a] & ids[b], (a, b)
    groups = {k: {s.group for s in v} for k, v in data.splits.items()}
    assert not groups["fold"] & (groups["train"] | groups["val"])


def test_balance_loss_weights_rare_classes_more():
    _, model, data, ds = dataset(["run.balance=loss"], train=True)
    weights = {}
    for i in range(len(ds)):
        weights[ds.samples[i].label] = ds[i]["weight"]
    counts = {c: sum(s.label == c for s in ds.samples) for c in weights}
    rare, common = min(counts, key=counts.get), max(counts, key=counts.get)
    assert weights[rare] > weights[common]
    batch = Collator(model.tokenizer.pad_token_id)([ds[0], ds[1]])
    assert batch["weight"].shape == (2,)


def test_reason_task_requires_reason_text():
    with pytest.raises(ValueError, match="needs a reason text"):
        _, _, _, ds = dataset(["data.tasks=[reason]"])
        ds[0]
