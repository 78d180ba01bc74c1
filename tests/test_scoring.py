"""Score mode with a tokenizer that splits labels into different numbers of tokens (one token per character:
"sad" is 3 tokens, "neutral" 7): the exact values of every ``eval.score_norm`` against a brute-force forward
pass, and the short-label bias that summed scores show and per-token means remove."""
from __future__ import annotations

import string
from collections import Counter

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from minigpt4.data.collate import Collator
from minigpt4.data.pipeline import prepare_data
from minigpt4.data.run_config import load_config
from minigpt4.evaluation.predict import _empty_prompt_prior, predict
from minigpt4.evaluation.scoring import (
    candidate_sets,
    choose,
    label_marginals,
    normalise,
    tune_threshold,
)
from minigpt4.models.build import build_model

N = 12
# A near-uniform untrained backbone (init std 0.02): every character costs about log(vocabulary) nats.
OVERRIDES = ["model.llm.initializer_range=0.02", "data.modalities=[audio,text]", f"eval.max_samples={N}", "eval.batch_size=6", "eval.mode=score"]


def char_tokenizer() -> PreTrainedTokenizerFast:
    """Every printable character is one token, so label answers differ in length."""
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    chars = sorted(set(string.printable) - set("\r\x0b\x0c"))
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(specials + chars)}, merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    cfg = load_config(None, OVERRIDES)
    model = build_model(cfg, tokenizer=char_tokenizer()).eval()
    data = prepare_data(cfg, model)
    return cfg, model, data.dataset("test", cfg, model)


def brute_force(model, ids: list[int], answer: list[int]) -> float:
    """Summed log-likelihood of ``answer`` after the text-only prompt ``ids``, one plain forward pass."""
    full = torch.tensor([ids + answer])
    with torch.no_grad():
        logp = model.llm(input_ids=full).logits[0, :-1].float().log_softmax(-1)
    return float(sum(logp[len(ids) - 1 + k, t] for k, t in enumerate(answer)))


def test_labels_have_different_token_counts(setup):
    _, _, dataset = setup
    lengths = {label: len(dataset.builder.encode_answer(label)) for label in dataset.corpus.label_set.labels}
    assert lengths == {"happy": 6, "sad": 4, "neutral": 8, "angry": 6}  # characters + EOS


def test_every_norm_matches_brute_force(setup):
    _, model, dataset = setup
    labels = dataset.corpus.label_set.labels
    candidates = [dataset.builder.encode_answer(x) for x in labels]
    lengths = torch.tensor([len(c) for c in candidates], dtype=torch.float32)
    empty = dataset.builder.encode("")
    prior = _empty_prompt_prior(model, dataset, candidates)
    expected_prior = torch.tensor([brute_force(model, empty.ids, c) for c in candidates])
    torch.testing.assert_close(prior, expected_prior, atol=1e-3, rtol=1e-4)

    # A text-only prompt (no modality slots) so the brute force needs no embeddings.
    prompt = dataset.builder.encode(dataset.builder.instruction("emotion", "Which emotion?", [], "I am fine"))
    ids = torch.tensor([prompt.ids])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "slots": torch.tensor([prompt.slots])}
    scores = model.score(batch, candidates).float()
    expected = torch.tensor([[brute_force(model, prompt.ids, c) for c in candidates]])
    torch.testing.assert_close(scores, expected, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(normalise(scores, lengths, "none", None), expected)
    torch.testing.assert_close(normalise(scores, lengths, "mean", None), expected / lengths)
    torch.testing.assert_close(normalise(scores, lengths, "calibrated", prior), expected - expected_prior,
                               atol=2e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="score_norm=calibrated needs"):
        normalise(scores, lengths, "calibrated", None)


def test_summed_scores_favour_the_shortest_label_and_normalisation_removes_it(setup):
    """An untrained model pays about log(vocabulary) nats per character: summed, "sad" (3 characters) always
    wins by several nats; per token, or calibrated against the empty prompt, the length advantage is gone."""
    cfg, model, dataset = setup
    picked = {}
    for norm in ("none", "mean", "calibrated"):
        preds = predict(model, dataset, load_config(None, [*OVERRIDES, f"eval.score_norm={norm}"]))
        picked[norm] = Counter(p.pred[0] for p in preds)
    assert picked["none"] == Counter({"sad": N})
    assert picked["mean"]["sad"] < N and picked["calibrated"]["sad"] < N, picked
    labels = dataset.corpus.label_set.labels
    candidates = [dataset.builder.encode_answer(x) for x in labels]
    lengths = torch.tensor([len(c) for c in candidates], dtype=torch.float32)
    prior = _empty_prompt_prior(model, dataset, candidates)
    scores = torch.cat([model.score(b, candidates) for b in [Collator(model.tokenizer.pad_token_id, "prompt")(
        [dataset[i] for i in range(4)])]]).float()
    spread = {norm: float((normalise(scores, lengths, norm, prior).max(1).values
                           - normalise(scores, lengths, norm, prior).min(1).values).min()) for norm in picked}
    assert spread["none"] > 5 and spread["mean"] < 0.5 and spread["calibrated"] < 1, spread


def test_marginals_threshold_and_tuning():
    labels = ("a", "b", "c")

    class Set:  # a stand-in label set: only ``labels`` is read
        pass
    ls = Set()
    ls.labels = labels
    answers = [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c")]
    probs = torch.tensor([[0.1, 0.0, 0.0, 0.9, 0.0, 0.0], [0.0, 0.0, 0.8, 0.0, 0.0, 0.2]])
    marginals = label_marginals(probs, answers, ls)
    torch.testing.assert_close(marginals, torch.tensor([[1.0, 0.9, 0.0], [0.0, 0.2, 1.0]]))
    assert choose(marginals.numpy(), labels, 0.5, 0) == [["a", "b"], ["c"]]
    assert choose(marginals.numpy(), labels, None, 2) == [["a", "b"], ["c", "b"]]
    threshold, f1 = tune_threshold([["a", "b"], ["c"]], marginals.numpy(), labels)
    assert f1 == 1.0 and 0.2 < threshold <= 0.9
    # Ties go to the higher threshold: with gold {c, b} any threshold up to 0.2 is perfect.
    threshold, f1 = tune_threshold([["a", "b"], ["b", "c"]], marginals.numpy(), labels)
    assert (threshold, f1) == (0.2, 1.0)
    assert candidate_sets(ls, "single", 2) == [("a",), ("b",), ("c",)]
    assert candidate_sets(ls, "multi", 2) == answers
    assert len(candidate_sets(ls, "multi", 5)) == 7 and np.isclose(marginals.sum(), 3.1)
