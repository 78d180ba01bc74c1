"""Where a trained MELD text model loses: its own dev figure beside a logistic-regression probe on the text slot
it learned. The probe reads the checkpoint's tuned MiniLM slot (context, pooling and all, as the model saw it),
fits scikit-learn logistic regression on the training split and scores the validation split with the
framework's metrics. A head that matches its probe reads its slot fully; a head far below it loses in the head
(for the LLM head: the tiny LLaMA and label scoring), not in the encoder.

    python bench/slot_probe.py --checkpoint runs/meld_lm/seed_42/final data.root=DIR data.options.splits=[train,dev]

Last line: ``ratio: R``, the head's weighted F1 over the probe's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minigpt4.data.collate import Collator  # noqa: E402
from minigpt4.data.pipeline import prepare_data  # noqa: E402
from minigpt4.data.run_config import load_config  # noqa: E402
from minigpt4.evaluation.evaluate import evaluate_dataset  # noqa: E402
from minigpt4.evaluation.metrics import compute_metrics  # noqa: E402
from minigpt4.models.build import build_model  # noqa: E402


@torch.no_grad()
def slot_features(model, dataset, batch_size: int) -> tuple[np.ndarray, list[str]]:
    """The pooled text-slot vectors (before the projector) of every sample, and their primary labels."""
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=Collator(model.tokenizer.pad_token_id, "prompt"))
    rows = [model.text_encoder(**batch["text_input"]).flatten(1) for batch in tqdm(loader, desc="slot", leave=False)]
    return torch.cat(rows).numpy(), [s.label for s in dataset.samples]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a final/ folder with a trainable text slot")
    parser.add_argument("--batch-size", type=int, default=64)
    args, overrides = parser.parse_known_args(argv)
    cfg = load_config(args.checkpoint / "config.yaml", [f"model.checkpoint={args.checkpoint}", *overrides])
    if not cfg.model.text_encoder.enabled:
        raise SystemExit(f"{args.checkpoint}: model.text_encoder.enabled is false: there is no tuned slot to probe")
    model = build_model(cfg).eval()
    data = prepare_data(cfg, model)
    train, val = data.dataset("train", cfg, model), data.dataset("val", cfg, model)
    own = evaluate_dataset(model, val, cfg, split="val")
    x_train, y_train = slot_features(model, train, args.batch_size)
    x_val, _ = slot_features(model, val, args.batch_size)
    probe = LogisticRegression(max_iter=3000).fit(x_train, y_train)
    probed = compute_metrics([s.labels for s in val.samples], [[p] for p in probe.predict(x_val)],
                             data.corpus.label_set, "single")
    head = "classifier head" if cfg.model.head == "classifier" else "LLM head (label scoring)"
    print(f"{args.checkpoint}: train {len(train)}, validation {len(val)} utterances")
    print("| reads the tuned slot | weighted F1 | macro F1 | accuracy |\n|---|---|---|---|")
    for name, r in ((f"the checkpoint's own {head}", own), ("logistic-regression probe", probed)):
        print(f"| {name} | {r['weighted_f1']:.3f} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} |")
    print(f"ratio: {own['weighted_f1'] / probed['weighted_f1']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
