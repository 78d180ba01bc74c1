"""MERR and MER2023 as Emotion-LLaMA lays them out.

Annotation text files hold ``name frames label [valence]`` per line (valence ``-10`` means unknown); transcripts
are a CSV with ``name`` and a sentence column; feature folders ``mae_340_UTT`` (face), ``maeV_399_UTT`` (video)
and ``HL-UTT`` (audio) sit beside the annotation file; clips are ``<video_dir>/<name>.mp4`` (``.avi`` tried when
absent). The reason JSONs are read only when the ``reason`` task is configured. MERR has no groups, so each
sample is its own group and folds become stratified.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from minigpt4.config import DataConfig
from minigpt4.data.corpora.common import (
    CorpusError,
    ReadResult,
    check_fields,
    check_unique,
    label_setup,
    options,
    require_file,
    resolve,
    root_dir,
)
from minigpt4.data.labels import LabelSet, get_label_set
from minigpt4.data.samples import Sample
from minigpt4.modalities import folder_defaults

FEATURE_DIRS = folder_defaults("merr")
REASON_FIELDS = {"coarse": ("coarse_json", "caption"), "fine": ("fine_json", "smp_reason_caption")}
_COMMON: dict[str, Any] = {
    "transcripts": "transcription_en_all.csv",
    "transcript_column": "sentence",
    "video_dir": "video",
    "reason_source": "coarse",
    "coarse_json": "MERR_coarse_grained.json",
    "fine_json": "MERR_fine_grained.json",
}
DEFAULTS = {
    "merr": {**_COMMON, "annotation": "MERR_coarse_grained.txt"},
    "mer2023": {**_COMMON, "annotation": {"train": "relative_train_NCEV.txt", "test": "relative_test3_NCEV.txt"}},
}
UNKNOWN_VALENCE = -10.0


def parse_annotation(path: Path, label_set: LabelSet) -> list[tuple[str, int, str, float | None, int]]:
    """(name, frames, label, valence or None, line number) per non-blank line of a 3- or 4-column file."""
    rows = []
    for number, raw in enumerate(require_file(path, "annotation file").read_text(encoding="utf-8").splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) not in (3, 4):
            raise CorpusError(f"{path}:{number}: {len(parts)} column(s) in {raw!r}; expected "
                              "'name frames label' or 'name frames label valence'")
        name, frames, word = parts[:3]
        try:
            count = int(frames)
        except ValueError:
            raise CorpusError(f"{path}:{number}: frame count {frames!r} of {name} is not an integer") from None
        try:
            label = label_set.canonical(word)
        except ValueError as err:
            raise CorpusError(f"{path}:{number}: sample {name}: {err}") from None
        valence = None
        if len(parts) == 4:
            try:
                valence = float(parts[3])
            except ValueError:
                raise CorpusError(f"{path}:{number}: valence {parts[3]!r} of {name} is not a number") from None
            valence = None if valence == UNKNOWN_VALENCE else valence
        rows.append((name, count, label, valence, number))
    return rows


def read_transcripts(path: Path, column: str) -> dict[str, str]:
    """``name`` -> sentence from the transcript CSV; a duplicate name is an error (the lookup would be ambiguous)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("name", column) if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(f"{path}: missing column(s) {', '.join(missing)} (header: {reader.fieldnames}); "
                              "set data.options.transcript_column for another sentence column")
        out: dict[str, str] = {}
        for row in reader:
            check_fields(row, reader.fieldnames, path, reader.line_num)
            name = (row["name"] or "").strip()
            if name in out:
                raise CorpusError(f"{path}:{reader.line_num}: duplicate transcript for {name!r}")
            out[name] = (row[column] or "").strip()
    return out


def read_reasons(path: Path, key: str) -> dict[str, str]:
    data = json.loads(require_file(path, "reason JSON").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: expected a JSON object keyed by sample name")
    return {name: entry.get(key) if isinstance(entry, dict) else None for name, entry in data.items()}


def _read(data_cfg: DataConfig, corpus: str) -> ReadResult:
    root = root_dir(data_cfg, corpus)
    opts = options(data_cfg, DEFAULTS[corpus], corpus)
    label_set = get_label_set(label_setup(data_cfg, {"default": corpus, corpus: corpus}, corpus))
    annotation = opts["annotation"]
    files = {None: annotation} if isinstance(annotation, str) else dict(annotation)
    for split in files:
        if split not in (None, "train", "dev", "test"):
            raise CorpusError(f"data.options.annotation for {corpus}: unknown split {split!r}; expected train/dev/test")

    transcript_path = resolve(root, opts["transcripts"])
    require_text = bool(data_cfg.transcript)
    texts: dict[str, str] = {}
    if require_text or transcript_path.is_file():
        texts = read_transcripts(require_file(transcript_path, f"{corpus} transcripts"), opts["transcript_column"])

    reasons: dict[str, str | None] | None = None
    reason_path = None
    if "reason" in list(data_cfg.tasks or []):
        if opts["reason_source"] not in REASON_FIELDS:
            raise CorpusError(f"data.options.reason_source={opts['reason_source']!r}; expected coarse or fine")
        file_key, field_name = REASON_FIELDS[opts["reason_source"]]
        reason_path = resolve(root, opts[file_key])
        reasons = read_reasons(reason_path, field_name)

    video_dir = resolve(root, opts["video_dir"])
    samples: list[Sample] = []
    for split, name in files.items():
        path = resolve(root, name)
        for sid, frames, label, valence, number in parse_annotation(path, label_set):
            text = texts.get(sid)
            if require_text and not text:
                raise CorpusError(f"{transcript_path}: no transcript (column {opts['transcript_column']!r}) for "
                                  f"sample {sid} ({path}:{number}); data.transcript=true needs one")
            reason = None
            if reasons is not None:
                reason = reasons.get(sid)
                if not reason:
                    raise CorpusError(f"{reason_path}: no reason text for sample {sid} ({path}:{number}); "
                                      "the reason task needs one")
            samples.append(Sample(id=sid, labels=(label,), text=text or None, reason=reason, group=sid,
                                  media=str(video_dir / f"{sid}.mp4"), split=split,
                                  meta={"frames": frames, "valence": valence, "annotation": f"{path}:{number}"}))
    check_unique(samples, ", ".join(str(resolve(root, f)) for f in files.values()))
    feature_root = resolve(root, next(iter(files.values()))).parent
    return ReadResult(samples, label_set, {m: feature_root / d for m, d in FEATURE_DIRS.items()})


def read_merr(data_cfg: DataConfig) -> ReadResult:
    return _read(data_cfg, "merr")


def read_mer2023(data_cfg: DataConfig) -> ReadResult:
    return _read(data_cfg, "mer2023")
