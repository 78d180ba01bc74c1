"""Evaluation outputs: predictions file, metrics, human-readable reports, confusion heatmaps, fold summaries.

Every report is a pure function of ``predictions.jsonl`` (plus the label set and label mode), so a run can be
rescored later (new parsing, other label order) without the model: see :func:`rescore`.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from minigpt4.data.labels import LABEL_SETS, LabelSet
from minigpt4.evaluation.metrics import NO_LABEL_COLUMNS, compute_metrics

# Scalar metrics shown first (in this order) in Markdown tables, when present.
HEADLINE = (
    "accuracy", "weighted_precision", "weighted_recall", "weighted_f1", "macro_f1", "uar", "micro_f1",
    "samples_f1", "majority_samples_f1", "subset_accuracy", "hamming_loss", "n_samples", "n_unparsed", "n_ambiguous",
)
HEATMAP_DPI = 100


@dataclass
class Prediction:
    """One evaluated sample: gold labels, parsed predicted labels (empty = unparsed) and the raw answer."""

    id: str
    gold: list[str]
    pred: list[str]
    text: str


def write_predictions(path: str | Path, preds: Iterable[Prediction]) -> None:
    """One JSON object per line, so a partial file stays readable and large runs stream."""
    with Path(path).open("w", encoding="utf-8") as f:
        for p in preds:
            f.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")


def _check_prediction(obj: object) -> Prediction:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    missing = {"id", "gold", "pred", "text"} - obj.keys()
    if missing:
        raise ValueError(f"missing field(s) {', '.join(sorted(missing))}")
    for key in ("gold", "pred"):
        if not isinstance(obj[key], list) or not all(isinstance(x, str) for x in obj[key]):
            raise ValueError(f"field {key!r} must be a list of strings, got {obj[key]!r}")
    if not isinstance(obj["text"], str) or not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool):
        raise ValueError("field 'text' must be a string and 'id' a string or integer")
    return Prediction(str(obj["id"]), obj["gold"], obj["pred"], obj["text"])


def read_predictions(path: str | Path) -> list[Prediction]:
    """Read a predictions.jsonl; a malformed line raises ``ValueError`` naming the file and line number."""
    out: list[Prediction] = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(_check_prediction(json.loads(line)))
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                raise ValueError(f"{path}:{lineno}: malformed prediction: {e}") from None
    return out


def mean_std(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of a metric over folds or seeds."""
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "n": int(arr.size)}


def _cell(value: object) -> str:
    if isinstance(value, dict) and {"mean", "std"} <= value.keys():
        return f"{value['mean']:.4f} ± {value['std']:.4f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    # Answers are free text: keep the table one row per sample.
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _scalars(metrics: dict) -> dict[str, float]:
    """The scalar metrics, headline ones first: what tables show and what folds are averaged over."""
    scalar = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: scalar[k] for k in HEADLINE if k in scalar} | {k: v for k, v in scalar.items() if k not in HEADLINE}


def write_table(out_dir: str | Path, name: str, rows: list[dict], columns: Sequence[str]) -> None:
    """``<name>.md`` and ``<name>.json`` for ablation / prompt-sensitivity tables.

    A cell may be a ``{"mean", "std"}`` dict (see :func:`mean_std`), shown as ``mean ± std``; floats show
    four decimals. The JSON keeps the full values of the listed columns.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept = [{c: row.get(c) for c in columns} for row in rows]
    (out / f"{name}.json").write_text(json.dumps({"columns": list(columns), "rows": kept}, indent=2) + "\n")
    (out / f"{name}.md").write_text(_md_table(columns, ([r[c] for c in columns] for r in kept)))


def plot_confusion(
    matrix: Sequence[Sequence[float]], rows: Sequence[str], columns: Sequence[str], path: str | Path,
    title: str, normalize: bool = False,
) -> None:
    """Seaborn heatmap, true labels down and predicted across in the given (corpus) order.

    The figure grows with the label count so cells and annotations stay readable; ``normalize`` divides each
    row by its support (an empty row stays zero).
    """
    data = np.asarray(matrix, dtype=float).reshape(len(rows), len(columns))
    if normalize:
        totals = data.sum(axis=1, keepdims=True)
        data = np.divide(data, totals, out=np.zeros_like(data), where=totals > 0)
    fig = Figure(figsize=(2.5 + 0.75 * len(columns), 2.0 + 0.6 * len(rows)), dpi=HEATMAP_DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    sns.heatmap(
        data, ax=ax, annot=True, fmt=".2f" if normalize else ".0f", cmap="Blues", square=False,
        xticklabels=list(columns), yticklabels=list(rows), vmin=0, vmax=1 if normalize else None,
        annot_kws={"fontsize": 10 if len(columns) <= 10 else 8}, cbar=True,
    )
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title(title)
    ax.tick_params(axis="y", labelrotation=0)
    for tick in ax.get_xticklabels():
        tick.set_rotation(45)
        tick.set_horizontalalignment("right")
    fig.tight_layout()
    fig.savefig(path, dpi=HEATMAP_DPI)


def _report_md(title: str, metrics: dict, label_set: LabelSet, preds: Sequence[Prediction], extra: dict | None) -> str:
    parts = [
        f"# {title}\n",
        f"Label set `{label_set.name}` ({', '.join(label_set.labels)}), {metrics['label_mode']}-label; "
        f"{metrics['n_samples']} samples, {metrics['n_unparsed']} unparsed, {metrics.get('n_ambiguous', 0)} "
        f"ambiguous.\n",
        "## Metrics\n",
        *(["`accuracy`, `uar` and the confusion matrix score the primary (first) labels; the other metrics "
           "score the binarised label sets.\n"] if metrics["label_mode"] == "multi" else []),
        _md_table(["metric", "value"], _scalars(metrics).items()),
        "## Per class\n",
        _md_table(["label", "precision", "recall", "f1", "support"],
                  ([k, v["precision"], v["recall"], v["f1"], v["support"]] for k, v in metrics["per_class"].items())),
        "## Confusion matrix\n",
        "Rows: true label; columns: predicted label"
        + (" (primary labels)" if metrics["label_mode"] == "multi" else "") + ".\n",
        _md_table(["true \\ predicted", *metrics["confusion_columns"]],
                  ([label, *row] for label, row in zip(metrics["labels"], metrics["confusion_matrix"]))),
        f"## Unparsed answers ({metrics['n_unparsed']})\n",
    ]
    unparsed = [p for p in preds if not p.pred]
    parts.append(_md_table(["id", "gold", "answer"], ([p.id, ", ".join(p.gold), p.text] for p in unparsed))
                 if unparsed else "None.\n")
    if metrics["label_mode"] == "single":
        ambiguous = [p for p in preds if len(set(p.pred)) > 1]
        parts += [f"## Ambiguous answers ({len(ambiguous)}): several labels named, scored as wrong\n",
                  _md_table(["id", "gold", "parsed", "answer"],
                            ([p.id, ", ".join(p.gold), ", ".join(p.pred), p.text] for p in ambiguous))
                  if ambiguous else "None.\n"]
    if extra:
        parts += ["## Run\n", _md_table(["key", "value"], extra.items())]
    return "\n".join(parts)


def write_report(
    out_dir: str | Path, preds: Sequence[Prediction], label_set: LabelSet, label_mode: str, title: str,
    extra: dict | None = None, decision: dict | None = None,
) -> dict:
    """Score ``preds`` and write every evaluation output into ``out_dir``; return the metrics.

    ``metrics.json`` holds what :func:`compute_metrics` returns, so :func:`rescore` reproduces it from
    ``predictions.jsonl``, plus, for multi-label score mode, the ``decision`` that turned label probabilities into
    sets (threshold or top-k and where it was chosen); run details in ``extra`` (checkpoint, prompt, ...) go to ``run.json`` and
    ``report.md``. ``report.txt`` keeps upstream Emotion-LLaMA's lines (weighted precision / recall / F1).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics([p.gold for p in preds], [p.pred for p in preds], label_set, label_mode)
    if decision is not None:
        metrics["decision"] = decision
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_predictions(out / "predictions.jsonl", preds)
    if extra:
        (out / "run.json").write_text(json.dumps({"title": title, **extra}, indent=2, default=str) + "\n")
    (out / "report.md").write_text(_report_md(title, metrics, label_set, preds, extra), encoding="utf-8")
    (out / "report.txt").write_text(
        f"Accuracy: {metrics['accuracy']}\n"
        f"Precision: {metrics['weighted_precision']}\n"
        f"Recall: {metrics['weighted_recall']}\n"
        f"Macro F1 Score: {metrics['macro_f1']}\n"
        f"F1 Score: {metrics['weighted_f1']}\n"
    )
    for name, normalize in (("confusion_matrix", False), ("confusion_matrix_normalized", True)):
        plot_confusion(metrics["confusion_matrix"], metrics["labels"], metrics["confusion_columns"],
                       out / f"{name}.png", title + (" (row-normalised)" if normalize else ""), normalize)
    return metrics


def _resolve_labels(labels: str | Sequence[str] | LabelSet) -> LabelSet:
    if isinstance(labels, LabelSet):
        return labels
    if isinstance(labels, str):
        if labels in LABEL_SETS:
            return LABEL_SETS[labels]
        labels = [x for x in labels.split(",") if x.strip()]
    return LabelSet.from_labels(list(labels))


def rescore(
    predictions_path: str | Path, labels: str | Sequence[str] | LabelSet, label_mode: str | None = None,
    out_dir: str | Path | None = None, title: str | None = None,
) -> dict:
    """Recompute every report file from a saved predictions.jsonl (``eval_emotion.py --from-predictions``).

    ``labels`` is a label set, a label-set name, a comma-separated string or a list (in report order);
    ``label_mode`` defaults to ``multi`` when any sample has more than one gold label; ``out_dir`` defaults
    to the predictions file's folder.
    """
    path = Path(predictions_path)
    preds = read_predictions(path)
    label_set = _resolve_labels(labels)
    for p in preds:
        unknown = [g for g in p.gold if g not in label_set.labels]
        if unknown:
            raise ValueError(f"{path}: sample {p.id}: gold label(s) {', '.join(map(repr, unknown))} not among the "
                             f"labels {', '.join(label_set.labels)}; rescore with the label set the predictions "
                             f"were made with")
    if label_mode is None:
        label_mode = "multi" if any(len(p.gold) > 1 for p in preds) else "single"
    return write_report(out_dir if out_dir is not None else path.parent, preds, label_set,
                        label_mode, title or f"Rescored {path}")


def summarize_folds(
    out_dir: str | Path, fold_metrics: dict[str, dict], test_metrics: dict | None, label_set: LabelSet
) -> dict:
    """Cross-validation summary: per-fold metrics, mean ± std of every scalar metric, test metrics.

    Writes ``summary.json``, ``summary.md`` and ``confusion_matrix_folds.png`` (fold confusion matrices
    summed, with ``ambiguous`` / ``unparsed`` columns when any fold has them).
    """
    if not fold_metrics:
        raise ValueError("no fold metrics to summarise")
    labels = list(label_set.labels)
    for fold, m in fold_metrics.items():
        if m["labels"] != labels:
            raise ValueError(f"fold {fold!r} was scored with labels {m['labels']}, expected {labels}")
    per_fold = {fold: _scalars(m) for fold, m in fold_metrics.items()}
    keys = [k for k in next(iter(per_fold.values())) if all(k in s for s in per_fold.values())]
    aggregate = {k: mean_std([s[k] for s in per_fold.values()]) for k in keys}

    extra = {c for m in fold_metrics.values() for c in m["confusion_columns"][len(labels):]}
    columns = labels + [c for c in NO_LABEL_COLUMNS if c in extra]
    total = np.zeros((len(labels), len(columns)), dtype=int)
    for m in fold_metrics.values():
        cm = np.asarray(m["confusion_matrix"], dtype=int)
        total[:, [columns.index(c) for c in m["confusion_columns"]]] += cm

    summary = {
        "labels": labels,
        "folds": fold_metrics,
        "aggregate": aggregate,
        "confusion_matrix_sum": total.tolist(),
        "confusion_columns": columns,
        "test": test_metrics,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = [[fold, *(s[k] for k in keys)] for fold, s in per_fold.items()]
    rows.append(["mean ± std", *(aggregate[k] for k in keys)])
    if test_metrics is not None:
        test = _scalars(test_metrics)
        rows.append(["test", *(test.get(k, "") for k in keys)])
    (out / "summary.md").write_text(
        f"# Cross-validation summary ({len(fold_metrics)} folds, label set `{label_set.name}`)\n\n"
        "Standard deviation is the sample one (ddof=1) over folds.\n\n"
        + _md_table(["fold", *keys], rows)
        + "\n## Confusion matrix summed over folds\n\n"
        + _md_table(["true \\ predicted", *columns], ([lab, *row] for lab, row in zip(labels, total.tolist()))),
        encoding="utf-8",
    )
    plot_confusion(total, labels, columns, out / "confusion_matrix_folds.png",
                   f"Confusion matrix summed over {len(fold_metrics)} folds")
    return summary
