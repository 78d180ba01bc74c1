"""MELD: ``{train,dev,test}_sent_emo.csv`` plus clips ``dia{D}_utt{U}.mp4`` in one folder per split.

Ids carry the split (``train_dia0_utt0``) because dialogue and utterance numbers restart in every split;
the group is split + dialogue, so folds never cut a conversation.
"""
from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from minigpt4.config import DataConfig
from minigpt4.data.corpora.common import (
    CorpusError,
    ReadResult,
    check_fields,
    check_unique,
    context_line,
    label_setup,
    options,
    require_file,
    resolve,
    root_dir,
)
from minigpt4.data.labels import LabelSet, get_label_set
from minigpt4.data.samples import Sample
from minigpt4.modalities import folder_defaults

SPLITS = ("train", "dev", "test")
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
DEFAULTS: dict[str, Any] = {
    "splits": list(SPLITS),
    "video_dirs": {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"},
}
KNOWN_BAD_CLIPS: dict[str, str] = {
    "dev_dia110_utt7": "missing from the MELD release (MELD issues #22, #27)",
    "train_dia125_utt3": "corrupted in the MELD release (MELD issue #39)",
}
"""Clips known to be unusable; with the image modality they are reported like missing media."""

_C1 = re.compile("[\x80-\x9f]")
_MOJIBAKE = re.compile("(â€|Ã.|Â)")


def repair_text(text: str) -> str:
    """Undo the two encoding accidents seen in MELD copies: cp1252 bytes read as latin-1 (``\\x92`` for ``’``)
    and UTF-8 bytes read as cp1252 (``â€™`` for ``’``). Text that is already right is returned unchanged."""
    if _C1.search(text):
        try:
            text = text.encode("latin-1").decode("cp1252")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    if _MOJIBAKE.search(text):
        try:
            text = text.encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return text


def _decode(path: Path) -> str:
    """UTF-8 as published; copies re-saved on Windows are cp1252 (latin-1 as the last resort, then repaired)."""
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _int(value: str, column: str, path: Path, line: int) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise CorpusError(f"{path}:{line}: column {column} is {value!r}, expected an integer") from None


def read_split(path: Path, split: str, video_dir: Path, require_text: bool, label_set: LabelSet) -> list[Sample]:
    """One ``*_sent_emo.csv``; rows keep file order for ids, context is built in Utterance_ID order."""
    reader = csv.DictReader(io.StringIO(_decode(path), newline=""))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CorpusError(f"{path}: missing column(s) {', '.join(missing)}; header is {reader.fieldnames}")
    rows = []
    for row in reader:
        line = reader.line_num
        check_fields(row, reader.fieldnames, path, line)
        text = repair_text(row["Utterance"]).strip()
        if require_text and not text:
            raise CorpusError(f"{path}:{line}: empty Utterance; data.transcript=true needs one")
        try:
            label = label_set.canonical(row["Emotion"])
        except ValueError as err:
            raise CorpusError(f"{path}:{line}: {err}") from None
        dia = _int(row["Dialogue_ID"], "Dialogue_ID", path, line)
        utt = _int(row["Utterance_ID"], "Utterance_ID", path, line)
        rows.append((dia, utt, label, text or None, repair_text(row["Speaker"]).strip(), row, line))

    by_dialogue: dict[int, list[tuple]] = defaultdict(list)
    for r in rows:
        by_dialogue[r[0]].append(r)
    context: dict[tuple[int, int], tuple[str, ...]] = {}
    following: dict[tuple[int, int], tuple[str, ...]] = {}
    for dia, turns in by_dialogue.items():
        turns.sort(key=lambda r: r[1])
        lines = [context_line(t[4], t[3] or "") for t in turns]
        for i, (_, utt, *_rest) in enumerate(turns):
            context[dia, utt], following[dia, utt] = tuple(lines[:i]), tuple(lines[i + 1:])

    samples, seen = [], {}
    for dia, utt, label, text, speaker, row, line in rows:
        sid = f"{split}_dia{dia}_utt{utt}"
        if sid in seen:
            raise CorpusError(f"{path}:{line}: duplicate utterance Dialogue_ID={dia} Utterance_ID={utt} "
                              f"(first at line {seen[sid]})")
        seen[sid] = line
        samples.append(Sample(
            id=sid, labels=(label,), text=text, group=f"{split}_dia{dia}",
            media=str(video_dir / f"dia{dia}_utt{utt}.mp4"), context=context[dia, utt],
            following=following[dia, utt], split=split,
            speaker=speaker or None,
            meta={"speaker": speaker, "sentiment": row.get("Sentiment"), "season": row.get("Season"),
                  "episode": row.get("Episode"), "start": row.get("StartTime"), "end": row.get("EndTime"),
                  "known_bad": KNOWN_BAD_CLIPS.get(sid)}))
    return samples


def read(data_cfg: DataConfig) -> ReadResult:
    root = root_dir(data_cfg, "meld")
    opts = options(data_cfg, DEFAULTS, "meld")
    label_set = get_label_set(label_setup(data_cfg, {"default": "meld", "meld": "meld"}, "meld"))
    require_text = bool(data_cfg.transcript)
    samples: list[Sample] = []
    for split in opts["splits"]:
        if split not in SPLITS:
            raise CorpusError(f"data.options.splits for meld: unknown split {split!r}; expected {', '.join(SPLITS)}")
        path = root / f"{split}_sent_emo.csv"
        require_file(path, f"MELD {split} annotations (set data.options.splits to the splits you have)")
        video_dir = resolve(root, opts["video_dirs"][split])
        samples += read_split(path, split, video_dir, require_text, label_set)
    check_unique(samples, str(root))
    feature_dirs = {m: root / d for m, d in folder_defaults("meld").items()}
    return ReadResult(samples, label_set, feature_dirs)
