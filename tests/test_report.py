"""Report files: predictions round trip, report text, heatmaps, rescoring, tables and fold summaries."""
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from minigpt4.data.labels import LabelSet, get_label_set
from minigpt4.evaluation.report import (
    Prediction,
    mean_std,
    read_predictions,
    rescore,
    summarize_folds,
    write_predictions,
    write_report,
    write_table,
)

IEMO4 = get_label_set("iemocap_4class")
REPORT_FILES = {"metrics.json", "predictions.jsonl", "report.md", "report.txt", "confusion_matrix.png",
                "confusion_matrix_normalized.png"}


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def _preds(label_set: LabelSet, answers: list[tuple[str, str]]) -> list[Prediction]:
    return [Prediction(f"s{i}", [g], list(label_set.parse(t)), t) for i, (g, t) in enumerate(answers)]


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Prediction], dict]:
    out = tmp_path_factory.mktemp("single")
    preds = _preds(IEMO4, [("happy", "Happy."), ("happy", "The emotion is: sad"), ("sad", "sad"),
                           ("neutral", "No idea | really\nsorry"), ("angry", "angry")])
    metrics = write_report(out, preds, IEMO4, "single", "IEMOCAP test", extra={"checkpoint": "ckpt.pth"})
    return out, preds, metrics


def test_report_files(single_run: tuple[Path, list[Prediction], dict]) -> None:
    out, preds, metrics = single_run
    assert REPORT_FILES | {"run.json"} == {p.name for p in out.iterdir()}
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert read_predictions(out / "predictions.jsonl") == preds
    assert json.loads((out / "run.json").read_text()) == {"title": "IEMOCAP test", "checkpoint": "ckpt.pth"}


def test_report_txt_keeps_upstream_lines(single_run: tuple[Path, list[Prediction], dict]) -> None:
    out, _, m = single_run
    lines = (out / "report.txt").read_text().splitlines()
    assert lines == [f"Accuracy: {m['accuracy']}", f"Precision: {m['weighted_precision']}",
                     f"Recall: {m['weighted_recall']}", f"Macro F1 Score: {m['macro_f1']}",
                     f"F1 Score: {m['weighted_f1']}"]
    assert lines[0] == "Accuracy: 0.6"


def test_report_md(single_run: tuple[Path, list[Prediction], dict]) -> None:
    md = (single_run[0] / "report.md").read_text()
    assert md.startswith("# IEMOCAP test\n")
    assert "| accuracy | 0.6000 |" in md and "| n_unparsed | 1 |" in md
    assert "| true \\ predicted | happy | sad | neutral | angry | unparsed |" in md
    assert "| happy | 1 | 1 | 0 | 0 | 0 |" in md and "| neutral | 0 | 0 | 0 | 0 | 1 |" in md
    assert "## Unparsed answers (1)" in md
    assert "| s3 | neutral | No idea \\| really sorry |" in md  # the answer stays one table row
    assert "| checkpoint | ckpt.pth |" in md
    per_class = md.split("## Per class")[1].split("##")[0]
    assert [line.split(" | ")[0] for line in per_class.splitlines() if line.startswith("| ")][1:] == [
        "| happy", "| sad", "| neutral", "| angry"]


def test_confusion_matrix_in_label_set_order(single_run: tuple[Path, list[Prediction], dict]) -> None:
    m = json.loads((single_run[0] / "metrics.json").read_text())
    assert m["labels"] == list(IEMO4.labels)
    assert m["confusion_columns"] == [*IEMO4.labels, "unparsed"]
    assert m["confusion_matrix"] == [[1, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0]]


def test_heatmaps_grow_with_label_count(single_run: tuple[Path, list[Prediction], dict], tmp_path: Path) -> None:
    small = _png_size(single_run[0] / "confusion_matrix.png")
    assert _png_size(single_run[0] / "confusion_matrix_normalized.png") == small
    big_set = get_label_set("iemocap_all")
    write_report(tmp_path, _preds(big_set, [(x, x) for x in big_set.labels]), big_set, "single", "all")
    big = _png_size(tmp_path / "confusion_matrix.png")
    assert small[0] >= 400 and small[1] >= 300
    assert big[0] > small[0] + 300 and big[1] > small[1] + 300


@pytest.mark.parametrize("labels", [IEMO4, "iemocap_4class", "happy,sad,neutral,angry", ["happy", "sad", "neutral",
                                                                                          "angry"]])
def test_rescore_reproduces_metrics(single_run: tuple[Path, list[Prediction], dict], tmp_path: Path,
                                    labels: object) -> None:
    metrics = rescore(single_run[0] / "predictions.jsonl", labels, None, tmp_path)
    assert REPORT_FILES == {p.name for p in tmp_path.iterdir()}
    assert metrics["label_mode"] == "single"
    for name in ("metrics.json", "predictions.jsonl", "report.txt"):
        assert (tmp_path / name).read_bytes() == (single_run[0] / name).read_bytes(), name


def test_rescore_follows_given_label_order_and_infers_multi(tmp_path: Path) -> None:
    preds = [Prediction("a", ["happy", "excited"], ["excited"], "excited"),
             Prediction("b", ["sad"], ["sad"], "sad")]
    write_predictions(tmp_path / "p.jsonl", preds)
    m = rescore(tmp_path / "p.jsonl", ["sad", "excited", "happy"], out_dir=tmp_path / "r")
    assert m["label_mode"] == "multi" and m["labels"] == ["sad", "excited", "happy"]
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert m["subset_accuracy"] == 0.5
    assert "score the primary (first) labels" in (tmp_path / "r" / "report.md").read_text()
    assert rescore(tmp_path / "p.jsonl", "sad,excited,happy", "single", tmp_path / "s")["label_mode"] == "single"


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"id": "x", "gold": ["sad"], "pred": [], "text": ""', "Expecting"),
        ('{"id": "x", "gold": ["sad"], "text": ""}', "missing field.*pred"),
        ('{"id": "x", "gold": "sad", "pred": [], "text": ""}', "'gold' must be a list"),
        ('["x"]', "JSON object"),
    ],
)
def test_malformed_prediction_line_names_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": 1, "gold": ["sad"], "pred": ["sad"], "text": "Sad."}\n\n' + line + "\n")
    with pytest.raises(ValueError, match=rf"predictions\.jsonl:3: malformed prediction: .*{match}"):
        read_predictions(path)


def test_predictions_round_trip(tmp_path: Path) -> None:
    preds = [Prediction("v/1", ["sad", "angry"], [], "Ünïcode — “quoted”\nline")]
    write_predictions(tmp_path / "p.jsonl", preds)
    assert read_predictions(tmp_path / "p.jsonl") == preds


def test_write_table(tmp_path: Path) -> None:
    rows = [{"prompt": "p0", "accuracy": mean_std([0.5, 0.7]), "n": 3, "unused": 1},
            {"prompt": "p|1", "accuracy": 0.25, "n": 4}]
    write_table(tmp_path, "prompts", rows, ["prompt", "accuracy", "n"])
    md = (tmp_path / "prompts.md").read_text().splitlines()
    assert md == ["| prompt | accuracy | n |", "|---|---|---|", "| p0 | 0.6000 ± 0.1414 | 3 |",
                  "| p\\|1 | 0.2500 | 4 |"]
    data = json.loads((tmp_path / "prompts.json").read_text())
    assert data["columns"] == ["prompt", "accuracy", "n"] and "unused" not in data["rows"][0]
    assert data["rows"][0]["accuracy"] == pytest.approx({"mean": 0.6, "std": np.std([0.5, 0.7], ddof=1), "n": 2})


def test_summarize_folds(tmp_path: Path) -> None:
    from minigpt4.evaluation.metrics import compute_metrics

    folds = {
        "fold1": compute_metrics([["happy"], ["sad"]], [["happy"], []], IEMO4, "single"),
        "fold2": compute_metrics([["angry"], ["sad"], ["sad"]], [["angry"], ["sad"], ["happy"]], IEMO4, "single"),
    }
    test = compute_metrics([["neutral"]], [["neutral"]], IEMO4, "single")
    s = summarize_folds(tmp_path, folds, test, IEMO4)
    assert {p.name for p in tmp_path.iterdir()} == {"summary.json", "summary.md", "confusion_matrix_folds.png"}
    assert json.loads((tmp_path / "summary.json").read_text()) == s
    acc = [folds["fold1"]["accuracy"], folds["fold2"]["accuracy"]]
    assert s["aggregate"]["accuracy"] == pytest.approx({"mean": np.mean(acc), "std": np.std(acc, ddof=1), "n": 2})
    assert s["folds"]["fold2"] == folds["fold2"] and s["test"] == test
    assert s["confusion_columns"] == [*IEMO4.labels, "unparsed"]
    assert s["confusion_matrix_sum"] == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 1, 0]]
    md = (tmp_path / "summary.md").read_text()
    assert "| mean ± std | 0.5833 ± 0.1179 |" in md and "| test | 1.0000 |" in md
    assert _png_size(tmp_path / "confusion_matrix_folds.png")[0] > 400
    with pytest.raises(ValueError, match="fold 'x' was scored with labels"):
        summarize_folds(tmp_path, {"x": compute_metrics([["sad"]], [["sad"]], get_label_set("mer2023"), "single")},
                        None, IEMO4)
