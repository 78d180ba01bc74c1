"""Miniature corpora written in each corpus's own on-disk format (the layouts of formats.md), large enough for a
few training steps, a validation split, folds and a test split: MERR, MER2023, IEMOCAP (raw release) and MELD.

Every sample gets its per-sample feature files (folders from the modality registry), a short video (DIVX
``.avi``, read as the ``.mp4``'s twin where the corpus names ``.mp4``) and a transcript.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from minigpt4.data.labels import get_label_set
from minigpt4.modalities import folder_defaults

DIM = 1024


def _video(path: Path, seconds: float, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"DIVX"), 10, (32, 32))
    for _ in range(max(2, int(seconds * 10) + 1)):
        writer.write(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    writer.release()


def _features(root: Path, layout: str, ids: list[str], rng: np.random.Generator) -> None:
    for folder in folder_defaults(layout).values():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for sid in ids:
            np.save(root / folder / f"{sid}.npy", rng.standard_normal(DIM).astype(np.float32))


def write_merr(root: Path, corpus: str = "merr", n: int = 24) -> Path:
    """MERR: ``MERR_coarse_grained.txt`` (+ reasons JSON); MER2023: ``relative_{train,test3}_NCEV.txt``."""
    rng = np.random.default_rng(0)
    labels = get_label_set(corpus).labels
    ids = [f"sample_{i:08d}" for i in range(n)]
    rows = [f"{sid} {10 + i} {labels[i % len(labels)]}" for i, sid in enumerate(ids)]
    root.mkdir(parents=True, exist_ok=True)
    if corpus == "merr":
        (root / "MERR_coarse_grained.txt").write_text("\n".join(rows) + "\n")
        (root / "MERR_coarse_grained.json").write_text(json.dumps(
            {sid: {"caption": f"The person frowns and speaks quickly, so the emotion is {row.split()[-1]}."}
             for sid, row in zip(ids, rows)}))
    else:
        test = n // 4
        (root / "relative_train_NCEV.txt").write_text("\n".join(f"{r} -10" for r in rows[test:]) + "\n")
        (root / "relative_test3_NCEV.txt").write_text("\n".join(f"{r} -10" for r in rows[:test]) + "\n")
    (root / "transcription_en_all.csv").write_text(
        "name,chinese,sentence\n" + "".join(f"{sid},x,I said line {i}.\n" for i, sid in enumerate(ids)))
    _features(root, "merr", ids, rng)
    for sid in ids:
        _video(root / "video" / f"{sid}.avi", 0.5, rng)
    return root


def write_mer2023(root: Path) -> Path:
    return write_merr(root, "mer2023")


_IEMOCAP_CODES = ("neu", "hap", "sad", "ang", "exc", "neu")
_IEMOCAP_WORDS = {"neu": "Neutral", "hap": "Happiness", "sad": "Sadness", "ang": "Anger", "exc": "Excited"}


def write_iemocap(root: Path, sessions: int = 5) -> Path:
    """The raw release: ``Session<k>/dialog/{EmoEvaluation,transcriptions,avi/DivX}`` plus feature folders."""
    rng = np.random.default_rng(1)
    ids = []
    for k in range(1, sessions + 1):
        dialog = f"Ses{k:02d}F_impro01"
        base = root / f"Session{k}" / "dialog"
        evaluation, transcript = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""], []
        for u, code in enumerate(_IEMOCAP_CODES):
            sid = f"{dialog}_{'FM'[u % 2]}{u // 2:03d}"
            start, end = 0.2 + u, 0.9 + u
            evaluation += [f"[{start:.4f} - {end:.4f}]\t{sid}\t{code}\t[2.5000, 2.5000, 2.5000]",
                           *(f"C-E{e}:\t{_IEMOCAP_WORDS[code]};\t()" for e in (1, 2, 3)), ""]
            transcript.append(f"{sid} [{start:08.4f}-{end:08.4f}]: Line {u} of session {k}.")
            ids.append(sid)
        for sub, lines in (("EmoEvaluation", evaluation), ("transcriptions", transcript)):
            (base / sub).mkdir(parents=True, exist_ok=True)
            (base / sub / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        _video(base / "avi" / "DivX" / f"{dialog}.avi", len(_IEMOCAP_CODES) + 0.5, rng)
    _features(root, "scr", ids, rng)
    return root


_MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
_MELD_FOLDERS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}


def write_meld(root: Path) -> Path:
    """``{train,dev,test}_sent_emo.csv``, one clip per utterance in the split's folder, feature folders."""
    rng = np.random.default_rng(2)
    labels = get_label_set("meld").labels
    ids = []
    for split, dialogues in (("train", 8), ("dev", 3), ("test", 3)):
        rows = []
        for d in range(dialogues):
            for u in range(3):
                emotion = labels[(d * 3 + u) % len(labels)]
                rows.append(f'{len(rows) + 1},Line {u} of dialogue {d}.,Ross,{emotion},neutral,{d},{u},1,1,'
                            f'"00:00:0{u},000","00:00:0{u},900"\n')
                _video(root / _MELD_FOLDERS[split] / f"dia{d}_utt{u}.avi", 0.5, rng)
                ids.append(f"{split}_dia{d}_utt{u}")
        (root / f"{split}_sent_emo.csv").write_text(_MELD_HEADER + "".join(rows), encoding="utf-8")
    _features(root, "meld", ids, rng)
    return root


WRITERS = {"merr": write_merr, "mer2023": write_mer2023, "iemocap": write_iemocap, "meld": write_meld}
"""``data.corpus`` -> the writer of its miniature corpus."""
