"""``model.max_answer_tokens``: training answers are cut to it (EOS kept) and generation never runs past it."""
from __future__ import annotations

import torch

from minigpt4.data.pipeline import prepare_data
from minigpt4.data.run_config import load_config
from minigpt4.evaluation.predict import predict
from minigpt4.models.build import build_model


class RecordingModel(torch.nn.Module):
    """Stands in for EmotionLLaMA in generate mode; records the generation budget it is given."""

    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer, self.budgets = tokenizer, []

    def generate(self, batch, max_new_tokens):
        self.budgets.append(max_new_tokens)
        return ["neutral"] * len(batch["sample_ids"])


def test_answers_are_cut_and_generation_is_capped() -> None:
    cfg = load_config(None, ["model.max_answer_tokens=2", "eval.mode=generate", "eval.max_new_tokens=16",
                             "eval.max_samples=4"])
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    long = data.builder.encode_answer("the speaker sounds angry because the voice rises and the words are sharp")
    assert len(long) == 2 and long[-1] == model.tokenizer.eos_token_id
    dataset = data.dataset("val", cfg, model, train=True)
    assert all(len(dataset[i]["answer"]) <= 2 and dataset[i]["answer"][-1] == model.tokenizer.eos_token_id
               for i in range(8))
    fake = RecordingModel(model.tokenizer)
    predict(fake, dataset, cfg)
    assert fake.budgets and set(fake.budgets) == {2}
