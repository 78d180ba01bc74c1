"""A checkpoint to serve in tests: the demo recipe's model, untrained (seeded, so deterministic), reading
features of the zero-download extractors through a feature-store manifest written by the extraction code,
as a checkpoint trained on a store from ``datasets/extract_features.py`` does."""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRAME_SIZE = 64


def untrained_checkpoint(folder: Path, overrides: tuple[str, ...] = ()) -> Path:
    from minigpt4.data.run_config import load_config
    from minigpt4.extract import build_extractors
    from minigpt4.extract.store import MANIFEST, manifest
    from minigpt4.models.build import build_model
    from minigpt4.models.checkpoint import write_checkpoint

    extractors = build_extractors(None)
    store = folder.parent / "store"
    store.mkdir(parents=True, exist_ok=True)
    stored = [m for m in extractors if m != "text"]
    (store / MANIFEST).write_text(json.dumps(manifest(extractors, stored, {"frames": "first",
                                                                           "frame_size": FRAME_SIZE})))
    dims = [f"model.features.{m}.{k}={getattr(e, k)}" for m, e in extractors.items() for k in ("dim", "tokens")]
    cfg = load_config(REPO / "train_configs" / "demo.yaml",
                      [f"run.output_dir={folder.parent / 'run'}", f"data.feature_store={store}", *dims, *overrides])
    return write_checkpoint(folder, build_model(cfg), cfg)


def demo_statistics_predictor():
    """The demo recipe's model with its feature statistics set from the demo corpus's training split, as
    training sets them, served as a checkpoint is: what the out-of-distribution flag reads, with no training."""
    from minigpt4.data.corpora import load_corpus
    from minigpt4.data.run_config import load_config
    from minigpt4.data.splits import select_splits
    from minigpt4.modalities import FEATURE_MODALITIES
    from minigpt4.models.build import build_model
    from minigpt4.models.feature_norms import set_feature_norms
    from minigpt4.serving.predictor import Predictor

    cfg = load_config(REPO / "train_configs" / "demo.yaml")
    modalities = [m for m in cfg.data.modalities if m in FEATURE_MODALITIES]
    corpus = load_corpus(cfg.data, modalities, {m: cfg.model.features[m].dim for m in modalities})
    train = select_splits(corpus.samples, seed=cfg.run.seed, val_fraction=cfg.data.val_fraction)["train"]
    model = build_model(cfg)
    set_feature_norms(model, corpus.features, [s.id for s in train], modalities)
    return Predictor(cfg, model=model)
