"""Calibration of the out-of-distribution flag (``minigpt4/serving/familiarity.py``): distances of held-out demo
clips against clips unlike the demo corpus, as ``predict.py`` and the page measure them.

    python bench/familiarity.py [--per-label 10]

The model is the demo recipe's (``train_configs/demo.yaml``) with its feature statistics set from the demo's
training split, exactly as training sets them; the flag reads nothing else, so no training is needed. Held-out
clips are test-session utterances cut to ``.mp4`` as the page's examples are (``--per-label`` of each class, with
their transcripts); the unlike clips are ``tests/media_clips.unlike_clips`` (espeak-ng speech, other faces,
noise). Prints one row per clip (its largest distance and the modality), the largest held-out distance, the
smallest unlike one, and last ``ratio: R`` = smallest unlike / largest held-out (above 1: one limit separates
them; the limit sits between the two).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from media_clips import SENTENCES, unlike_clips  # noqa: E402
from serving_helpers import demo_statistics_predictor  # noqa: E402
from minigpt4.serving.familiarity import LIMIT  # noqa: E402
from minigpt4.serving.predictor import example_clips  # noqa: E402


def farthest(record: dict) -> tuple[float, str]:
    """A record's largest distance and its modality."""
    distances = record["out_of_distribution"]["distance"]
    modality = max(distances, key=distances.get)
    return distances[modality], modality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-label", type=int, default=10, help="held-out demo clips per class")
    args = parser.parse_args()
    predictor = demo_statistics_predictor()
    held_out = [(e.name, e.path, e.transcript) for e in example_clips(predictor.cfg, per_label=args.per_label)]
    spoken = dict(zip(("speech-astronaut-0", "speech-astronaut-1", "speech-cameraman"), SENTENCES))
    with tempfile.TemporaryDirectory() as tmp:
        unlike = [(name, path, spoken.get(name)) for name, path in unlike_clips(Path(tmp)).items()]
        rows = {kind: [(name, predictor.predict(path, name, text)) for name, path, text in clips]
                for kind, clips in (("held-out demo", held_out), ("unlike", unlike))}
    print("| clip | kind | distances | largest | flagged |\n|---|---|---|---|---|")
    for kind, records in rows.items():
        for name, record in records:
            d, m = farthest(record)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in record["out_of_distribution"]["distance"].items())
            print(f"| {name} | {kind} | {shown} | {d:.2f} ({m}) | {record['out_of_distribution']['flag']} |")
    worst_in = max(farthest(r)[0] for _, r in rows["held-out demo"])
    best_out = min(farthest(r)[0] for _, r in rows["unlike"])
    flagged_in = sum(r["out_of_distribution"]["flag"] for _, r in rows["held-out demo"])
    flagged_out = sum(r["out_of_distribution"]["flag"] for _, r in rows["unlike"])
    print(f"held-out demo clips: {len(rows['held-out demo'])}, largest distance {worst_in:.2f}, "
          f"flagged {flagged_in}")
    print(f"unlike clips: {len(rows['unlike'])}, smallest largest-distance {best_out:.2f}, flagged {flagged_out}")
    print(f"limit: {LIMIT}")
    print(f"ratio: {best_out / worst_in:.2f}")


if __name__ == "__main__":
    main()
