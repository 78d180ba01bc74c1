"""Print what a corpus reader makes of a folder, as one JSON object (counts per label, group and split).

    python datasets/inspect_corpus.py --corpus meld --root ../shared/data/meld options.splits=[train,dev]
    python datasets/inspect_corpus.py --corpus iemocap --root IEMOCAP_full_release labels=6class label_mode=multi

Trailing ``key=value`` arguments are ``data.*`` config keys (the ``data.`` prefix is optional).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from omegaconf import OmegaConf

from minigpt4.config import DataConfig
from minigpt4.data.corpora import load_corpus
from minigpt4.modalities import MODALITIES


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    overrides = [a.removeprefix("data.") for a in argv if "=" in a and not a.startswith("-")]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, choices=["merr", "mer2023", "iemocap", "meld", "ecf", "demo"])
    parser.add_argument("--root", default=None, help="corpus folder (optional for demo)")
    parser.add_argument("--modalities", default="", help=f"comma list to check files for: {','.join(MODALITIES)}")
    args = parser.parse_args([a for a in argv if a.removeprefix("data.") not in overrides])
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.from_dotlist(overrides))
    cfg.corpus, cfg.root = args.corpus, args.root
    modalities = [m for m in args.modalities.split(",") if m]
    corpus = load_corpus(cfg, modalities)
    samples = corpus.samples
    report = {
        "corpus": corpus.name,
        "label_set": corpus.label_set.name,
        "n_samples": len(samples),
        "label_counts": {label: sum(s.label == label for s in samples) for label in corpus.label_set.labels},
        "multi_label_samples": sum(len(s.labels) > 1 for s in samples),
        "n_groups": len({s.group for s in samples}),
        "group_counts": dict(sorted(Counter(str(s.group) for s in samples).items())),
        "split_counts": dict(Counter(str(s.split) for s in samples)),
        "with_text": sum(bool(s.text) for s in samples),
        "with_reason": sum(bool(s.reason) for s in samples),
        "excluded": corpus.excluded,
        "skipped": [list(x) for x in corpus.skipped],
    }
    if report["n_groups"] > 50:  # dialogue-level groups: a summary says more than thousands of entries
        sizes = list(report["group_counts"].values())
        report["group_counts"] = {"n": len(sizes), "min": min(sizes), "max": max(sizes),
                                  "mean": round(sum(sizes) / len(sizes), 2)}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    from minigpt4 import entry

    sys.exit(entry.run_main("inspect_corpus.py", main))
