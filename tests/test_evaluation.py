"""Evaluation: generate vs score on an overfitted tiny model, unparsed answers, multi-label scoring, the
eval_emotion.py command line end to end (model run, rescoring, ablation and prompt tables) and torchrun."""
from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt4.data.collate import Collator
from minigpt4.data.pipeline import prepare_data
from minigpt4.data.run_config import load_config
from minigpt4.evaluation.evaluate import evaluate_dataset
from minigpt4.evaluation.predict import predict, predict_with_decision
from minigpt4.evaluation.scoring import (
    THRESHOLD_GRID,
    Decision,
    candidate_sets,
    save_decision,
)
from minigpt4.models.build import build_model
from minigpt4.models.checkpoint import write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
N = 8
# No image: the frozen ViT would dominate the overfitting time on two CPU cores; it plays no part here.
OVERRIDES = [f"eval.max_samples={N}", "eval.batch_size=8", "eval.max_new_tokens=8",
             "data.modalities=[face,video,audio,text]"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two intra-op threads on a busy two-core machine slow the tiny model down a hundredfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained():
    """The tiny model overfitted (projectors + LoRA, plain AdamW) on the first N demo test samples."""
    cfg = load_config(None, OVERRIDES)
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    dataset = data.dataset("test", cfg, model)
    batch = Collator(model.tokenizer.pad_token_id, "train")([dataset[i] for i in range(N)])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(80):
        loss = model(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = loss.detach().item()
    assert final < 0.2, f"the tiny model did not overfit (loss {final:.3f})"
    return cfg, model, data, dataset


def with_eval(**values):
    return load_config(None, [*OVERRIDES, *(f"eval.{k}={v}" for k, v in values.items())])


def test_generate_and_score_agree_after_overfitting(trained):
    _, model, _, dataset = trained
    gen = predict(model, dataset, with_eval(mode="generate"))
    score = predict(model, dataset, with_eval(mode="score"))
    assert [p.id for p in gen] == [p.id for p in score] == [s.id for s in dataset.samples[:N]]
    assert [p.pred for p in gen] == [p.pred for p in score] == [p.gold for p in gen]
    assert len({p.gold[0] for p in gen}) >= 3, "the overfitted samples should cover several labels"
    assert model.training, "evaluation must give the model back in train mode"


def test_score_ranks_the_true_answer_first(trained):
    _, model, data, dataset = trained
    labels = dataset.corpus.label_set.labels
    batch = Collator(model.tokenizer.pad_token_id, "prompt")([dataset[i] for i in range(N)])
    scores = model.score(batch, [data.builder.encode_answer(x) for x in labels])
    assert scores.shape == (N, len(labels))
    assert [labels[j] for j in scores.argmax(dim=1).tolist()] == [g[0] for g in batch["gold"]]


def test_generate_one_string_per_sample_stops_at_eos_and_batching_is_invisible(trained):
    _, model, _, dataset = trained
    batched = predict(model, dataset, with_eval(max_new_tokens=12, batch_size=8))
    single = predict(model, dataset, with_eval(max_new_tokens=12, batch_size=1))
    assert len(batched) == N
    # Left padding must not change a greedy answer.
    assert [p.text for p in batched] == [p.text for p in single]
    for p in batched:
        assert p.text == p.gold[0]
        assert len(model.tokenizer(p.text, add_special_tokens=False)["input_ids"]) < 12


class ScriptedModel(torch.nn.Module):
    """Stands in for EmotionLLaMA: answers scripted per sample id, checks it is called in eval mode."""

    def __init__(self, tokenizer, texts=None, logits=None, candidates=None):
        super().__init__()
        self.tokenizer, self.texts, self.logits, self.candidates = tokenizer, texts, logits, candidates
        self.calls: list[bool] = []

    def generate(self, batch, max_new_tokens):
        self.calls.append(self.training)
        return [self.texts[i] for i in batch["sample_ids"]]

    def score(self, batch, candidates):
        self.calls.append(self.training)
        assert candidates == self.candidates
        return torch.tensor([self.logits[i] for i in batch["sample_ids"]])


def test_unparsed_answers_are_counted_and_never_coerced(trained, tmp_path):
    _, model, _, dataset = trained
    ids = [s.id for s in dataset.samples[:4]]
    texts = dict(zip(ids, ["The emotion is: Sad.", "I cannot tell from this clip.", "ANGRY, maybe happy",
                           "non-neutral and dis-pleased"]))  # the third is ambiguous: never its first label
    fake = ScriptedModel(model.tokenizer, texts=texts)
    cfg4 = with_eval(max_samples=4, batch_size=3)
    metrics = evaluate_dataset(fake, dataset, cfg4, tmp_path)
    assert fake.calls == [False, False] and fake.training
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [p["pred"] for p in preds] == [["sad"], [], ["angry", "happy"], []]
    assert [p["text"] for p in preds] == list(texts.values())
    assert metrics["n_unparsed"] == 2 and metrics["n_ambiguous"] == 1
    assert metrics["confusion_columns"][-2:] == ["ambiguous", "unparsed"]
    assert sum(row[-1] for row in metrics["confusion_matrix"]) == 2
    assert sum(row[-2] for row in metrics["confusion_matrix"]) == 1
    report = (tmp_path / "report.md").read_text()
    assert "## Unparsed answers (2)" in report and "I cannot tell from this clip." in report
    assert "## Ambiguous answers (1)" in report and "ANGRY, maybe happy" in report


def scripted_sets(model, data, dataset, probs_by_sample: list[dict], mode: str = "multi"):
    """A scripted model whose answer distribution over the candidate label sets is given per sample."""
    label_set = dataset.corpus.label_set
    answers = candidate_sets(label_set, mode, 2)
    ids = [s.id for s in dataset.samples[:len(probs_by_sample)]]
    logits = {i: [math.log(probs.get(a, 1e-9)) for a in answers] for i, probs in zip(ids, probs_by_sample)}
    return ScriptedModel(model.tokenizer, logits=logits, candidates=[
        data.builder.encode_answer(label_set.format_answer(a)) for a in answers])


SET_PROBS = [{("happy", "neutral"): 0.6, ("happy",): 0.4},  # marginals: happy 1.0, neutral 0.6
             {("sad",): 0.7, ("sad", "angry"): 0.3},  # sad 1.0, angry 0.3
             {("angry",): 0.55, ("neutral",): 0.45}]  # angry 0.55, neutral 0.45


def test_multi_label_scoring_ranks_label_sets_and_thresholds_label_marginals(trained, tmp_path):
    _, model, data, dataset = trained
    fake = scripted_sets(model, data, dataset, SET_PROBS)
    multi = [*OVERRIDES, "data.label_mode=multi", "eval.mode=score", "eval.max_samples=3"]
    half = predict(fake, dataset, load_config(None, [*multi, "eval.threshold=0.5"]))
    assert [p.pred for p in half] == [["happy", "neutral"], ["sad"], ["angry"]]
    assert [p.text for p in half] == ["happy, neutral", "sad", "angry"]
    low = predict(fake, dataset, load_config(None, [*multi, "eval.threshold=0.25"]))
    assert [p.pred for p in low] == [["happy", "neutral"], ["sad", "angry"], ["angry", "neutral"]]
    top1 = predict(fake, dataset, load_config(None, [*multi, "eval.top_k=1"]))
    assert [p.pred for p in top1] == [["happy"], ["sad"], ["angry"]]
    high = predict(fake, dataset, load_config(None, [*multi, "eval.threshold=0.99"]))
    assert [p.pred for p in high] == [["happy"], ["sad"], ["angry"]]  # the most probable label always

    # No threshold by hand: on the validation split it is chosen there; elsewhere it must come from the checkpoint.
    _, tuned = predict_with_decision(fake, dataset, load_config(None, [*multi, "eval.split=val"]))
    assert tuned.source == "validation" and tuned.n_val == 3 and tuned.threshold in THRESHOLD_GRID
    with pytest.raises(ValueError, match="needs a threshold chosen on the validation split"):
        predict(fake, dataset, load_config(None, multi))
    save_decision(tmp_path, Decision(0.25, 0, 2, "none", "validation", 0.9, 10))
    saved, used = predict_with_decision(fake, dataset, load_config(None, [*multi, f"model.checkpoint={tmp_path}"]))
    assert used.threshold == 0.25 and [p.pred for p in saved] == [p.pred for p in low]
    metrics = evaluate_dataset(fake, dataset, load_config(None, [*multi, f"model.checkpoint={tmp_path}"]),
                               tmp_path / "eval")
    stored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert stored["decision"]["threshold"] == 0.25 and stored["decision"]["source"] == "validation"
    assert metrics["decision"] == stored["decision"]
    with pytest.raises(ValueError, match="chosen with eval.max_labels=2 eval.score_norm=none"):
        predict(fake, dataset, load_config(None, [*multi, f"model.checkpoint={tmp_path}", "eval.score_norm=mean"]))


def test_single_label_scoring_takes_the_most_likely_label(trained):
    _, model, data, dataset = trained
    fake = scripted_sets(model, data, dataset, [{("neutral",): 0.5, ("sad",): 0.3}, {("angry",): 0.9}], "single")
    single = predict(fake, dataset, load_config(None, [*OVERRIDES, "eval.mode=score", "eval.max_samples=2"]))
    assert [p.pred for p in single] == [["neutral"], ["angry"]] and all(len(p.gold) == 1 for p in single)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def run_cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "eval_emotion.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def cli_run(trained, tmp_path_factory):
    """eval_emotion.py on the demo config with the overfitted checkpoint, an ablation and two prompts."""
    cfg, model, _, _ = trained
    tmp = tmp_path_factory.mktemp("cli")
    checkpoint = write_checkpoint(tmp / "run" / "final", model, cfg)
    out = tmp / "eval"
    run_cli("--cfg-path", "eval_configs/demo.yaml", f"model.checkpoint={checkpoint}", f"run.output_dir={out}",
            *OVERRIDES, "eval.ablations=[[audio,text],[face,video,audio]]", "eval.prompts=2")
    return out


def test_cli_writes_every_report_file(cli_run, trained):
    labels = list(trained[3].corpus.label_set.labels)
    for name in ("metrics.json", "predictions.jsonl", "report.md", "report.txt", "config.yaml",
                 "confusion_matrix.png", "confusion_matrix_normalized.png"):
        assert (cli_run / name).is_file(), name
    # plot_confusion sizes the figure by label count at 100 dpi: (2.5 + 0.75 * 4) x (2.0 + 0.6 * 4) inches.
    assert png_size(cli_run / "confusion_matrix.png") == (550, 440)
    assert png_size(cli_run / "confusion_matrix_normalized.png") == (550, 440)
    metrics = json.loads((cli_run / "metrics.json").read_text())
    preds = [json.loads(line) for line in (cli_run / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == metrics["n_samples"] == N
    # The checkpoint was loaded: the overfitted answers come back.
    assert metrics["accuracy"] == 1.0 and metrics["n_unparsed"] == 0
    assert metrics["labels"] == labels
    gold_counts = [sum(p["gold"] == [x] for p in preds) for x in labels]
    assert metrics["confusion_matrix"] == [[gold_counts[i] if j == i else 0 for j in range(len(labels))]
                                           for i in range(len(labels))]
    assert "Accuracy: 1.0" in (cli_run / "report.txt").read_text()


def test_cli_rescoring_reproduces_metrics_exactly(cli_run, tmp_path):
    run_cli("--from-predictions", str(cli_run / "predictions.jsonl"), "--labels", "happy,sad,neutral,angry",
            "--output-dir", str(tmp_path))
    assert (tmp_path / "metrics.json").read_text() == (cli_run / "metrics.json").read_text()
    assert (tmp_path / "confusion_matrix.png").is_file()


def test_ablation_and_prompt_tables(cli_run):
    ablation = json.loads((cli_run / "ablation.json").read_text())
    assert [r["modalities"] for r in ablation["rows"]] == ["audio+text", "face+video+audio"]
    assert all(r["n_samples"] == N for r in ablation["rows"])
    assert (cli_run / "ablation" / "audio+text" / "metrics.json").is_file()
    md = (cli_run / "ablation.md").read_text().splitlines()
    assert len(md) == 2 + 2 and md[2].startswith("| audio+text |")
    prompts = json.loads((cli_run / "prompts.json").read_text())
    assert [r["instruction"] for r in prompts["rows"]] == [0, 1, "mean ± std"]
    accs = [r["accuracy"] for r in prompts["rows"][:2]]
    assert prompts["rows"][2]["accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
    assert prompts["rows"][0]["accuracy"] == 1.0  # instruction 0 is the one the model was overfitted on
    assert "±" in (cli_run / "prompts.md").read_text()


@pytest.mark.slow
def test_torchrun_shards_gather_every_sample_once(cli_run, tmp_path):
    """Two gloo ranks, an odd sample count and small batches: the gathered predictions equal the single run's."""
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(ROOT / "eval_emotion.py"),
         "--cfg-path", str(cli_run / "config.yaml"), f"run.output_dir={tmp_path}", "eval.max_samples=7", "eval.batch_size=2",
         "eval.ablations=[]", "eval.prompts=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    dist_preds = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert dist_preds == (cli_run / "predictions.jsonl").read_text().splitlines()[:7]


def test_every_eval_config_loads():
    required = ["model.llm.path=/m", "model.vision.checkpoint=/v", "model.checkpoint=/c", "data.root=/d"]
    for path in sorted((ROOT / "eval_configs").glob("*.yaml")):
        cfg = load_config(path, required if path.name != "demo.yaml" else [])
        assert cfg.eval.split == "test", path
