"""Reference points for MELD text on the validation split the shipped configs score: the majority class, and a
frozen-MiniLM linear probe (the same cached sentence embeddings the framework's ``text`` slot reads, scikit-learn
logistic regression, no context), each with weighted F1, macro F1 and accuracy.

    python bench/meld_baselines.py data.root=DIR [data.options.splits=[train,dev]] [key=value ...]

Train and validation come from ``select_splits`` of ``train_configs/meld_text_classifier.yaml`` with the given
overrides, so the probe sees exactly the split a trained model is scored on (dev, when the folder has it).
Last line: ``ratio: R``, the probe's weighted F1 over the majority class's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minigpt4.data.run_config import load_config  # noqa: E402
from minigpt4.data.corpora import load_corpus  # noqa: E402
from minigpt4.evaluation.metrics import compute_metrics  # noqa: E402
from minigpt4.data.splits import select_splits  # noqa: E402


def main(overrides: list[str]) -> int:
    cfg = load_config(REPO / "train_configs" / "meld_text_classifier.yaml",
                      ["model.text_encoder.enabled=false", "run.group_by_length=false", *overrides])
    corpus = load_corpus(cfg.data, ["text"], {"text": cfg.model.features.text.dim}, cached_text=True)
    splits = select_splits(corpus.samples, seed=cfg.run.seed, val_fraction=cfg.data.val_fraction)
    train, val = splits["train"], splits["val"]

    def matrix(samples):
        return np.stack([corpus.features.get("text", s.id).reshape(-1) for s in samples])

    y_train, gold = [s.label for s in train], [s.labels for s in val]
    majority = max(set(y_train), key=y_train.count)
    probe = LogisticRegression(max_iter=2000, C=1.0).fit(matrix(train), y_train)
    predictions = {"majority class": [majority] * len(val),
                   "frozen MiniLM + logistic regression": list(probe.predict(matrix(val)))}
    # The framework's own metrics, so these rows compare directly with eval_emotion.py's metrics.json.
    rows = {name: compute_metrics(gold, [[p] for p in pred], corpus.label_set, "single")
            for name, pred in predictions.items()}
    print(f"train {len(train)}, validation {len(val)} utterances")
    print("| baseline | weighted F1 | macro F1 | accuracy |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['weighted_f1']:.3f} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} |")
    ratio = rows["frozen MiniLM + logistic regression"]["weighted_f1"] / rows["majority class"]["weighted_f1"]
    print(f"ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
