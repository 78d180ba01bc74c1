"""export_hf.py: the merged backbone loads with plain transformers, and the export rebuilds the full model with
the checkpoint's label scores."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt4.data.prompts import PromptBuilder
from minigpt4.data.run_config import load_config
from minigpt4.models import checkpoint as ckpt
from minigpt4.models.build import build_model
from minigpt4.models.hf_folder import MANIFEST, PARTS
from minigpt4.runtime.output_folder import OutputFolderError
from minigpt4.serving.hf_export import ExportError, export, label_scores, probe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import export_hf  # noqa: E402  (the entry point, as a user runs it)

PLAIN_LOAD = """
import json, sys
sys.modules["minigpt4"] = None  # any import of the project fails: the folder must load without it
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, ids = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
with torch.no_grad():
    logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
chat = tokenizer.apply_chat_template([{"role": "user", "content": "hello there"}], tokenize=False)
print(json.dumps({"logits": logits.tolist(), "chat": tokenizer(chat, add_special_tokens=False)["input_ids"],
                  "class": type(model).__name__}))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo checkpoint whose LoRA adapters and feature statistics are far from their initial values."""
    cfg = load_config(None)
    model = build_model(cfg)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
        for name, buffer in model.named_buffers():
            if name.startswith("feature_norm."):
                buffer.uniform_(0.5, 1.5)
    return ckpt.write_checkpoint(tmp_path_factory.mktemp("run") / "final", model, cfg)


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "hf"
    assert export_hf.main([f"model.checkpoint={trained}", "--output", str(out)]) == 0
    return out


def test_export_gives_the_checkpoints_label_scores_from_its_folder_alone(trained: Path, exported: Path,
                                                                         tmp_path: Path):
    lora = build_model(load_config(None, [f"model.checkpoint={trained}"])).eval()
    inputs = probe(lora, load_config(None), 4)
    reference = label_scores(lora, inputs)
    moved = tmp_path / "moved"  # nothing may point back at the checkpoint or the export's first place
    shutil.copytree(exported, moved)
    loaded = build_model(load_config(None, [f"model.checkpoint={moved}"])).eval()
    assert type(loaded.llm).__name__ == "LlamaForCausalLM"  # adapters merged, no peft wrapper
    assert reference.shape == (4, 4)
    assert torch.allclose(label_scores(loaded, inputs), reference, atol=1e-4, rtol=0)
    plain = build_model(load_config(None)).eval()  # the same backbone without the checkpoint's adapters
    assert (label_scores(plain, inputs) - reference).abs().max() > 1e-2


@pytest.mark.slow
def test_backbone_loads_with_plain_transformers(trained: Path, exported: Path):
    cfg = load_config(None, [f"model.checkpoint={trained}"])
    lora = build_model(cfg).eval()
    words = lora.tokenizer("happy sad angry neutral", add_special_tokens=False)["input_ids"]
    ids = [lora.tokenizer.bos_token_id, *words]
    proc = subprocess.run([sys.executable, "-I", "-c", PLAIN_LOAD, str(exported), json.dumps(ids)],
                          capture_output=True, text=True, cwd=exported.parent, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        expected = lora.llm(input_ids=torch.tensor([ids])).logits[0, -1]
    assert out["class"] == "LlamaForCausalLM"
    assert torch.allclose(torch.tensor(out["logits"]), expected, atol=1e-4, rtol=0)
    builder = PromptBuilder(lora.tokenizer, lora.slot_tokens, cfg.model.llm.prompt_template)
    assert out["chat"] == builder.encode("hello there").ids  # the chat template wraps as training did


def test_folder_holds_the_parts_and_says_which_slot_each_modality_fills(exported: Path):
    files = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", PARTS, MANIFEST,
            "config.yaml"} <= files
    manifest = json.loads((exported / MANIFEST).read_text())
    assert manifest["labels"] == ["happy", "sad", "neutral", "angry"]
    assert manifest["backbone"]["lora_merged"]["target_modules"] == ["q_proj", "v_proj"]
    slots = {s["modality"]: s for s in manifest["slots"]}
    assert [s["slot_id"] for s in manifest["slots"]] == sorted(s["slot_id"] for s in manifest["slots"])
    assert slots["face"]["placeholder"] == "<FaceHere>" and slots["face"]["feature_norm"] == "feature_norm.face"
    assert slots["image"]["tokens"] == 4 and slots["cls"]["source"] == "frame-cls"


def test_export_refuses_to_replace_or_to_export_a_classifier(trained: Path, exported: Path, tmp_path: Path,
                                                             capsys):
    cfg = load_config(trained / "config.yaml", [f"model.checkpoint={trained}"])
    with pytest.raises(ExportError, match="holds an earlier export: rerun with --overwrite"):
        export(cfg, exported, samples=0)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not an export")
    with pytest.raises(OutputFolderError, match="refusing to write into"):
        export(cfg, foreign, samples=0)
    classifier_cfg = load_config(None, ["model.head=classifier"])
    classifier = ckpt.write_checkpoint(tmp_path / "classifier", build_model(classifier_cfg), classifier_cfg)
    assert export_hf.main([f"model.checkpoint={classifier}", "--output", str(tmp_path / "out"),
                           "--check-samples", "0"]) == 1
    assert "model.head=classifier has no LLM to export" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
