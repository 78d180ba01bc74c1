"""IEMOCAP from the raw release (``IEMOCAP_full_release/Session*``), or from an Emotion-llama-scratch pickle.

Raw release: labels are the consensus codes of the EmoEvaluation block headers; the ``C-E*`` lines (external
evaluators) give per-utterance vote counts, from which multi-label sets are built. Transcripts come from
``dialog/transcriptions``; the image modality reads the dialogue video ``dialog/avi/DivX/<dialog>.avi`` at the
utterance's time segment, cropped to the speaker's half. Groups are sessions (leave-one-session-out).

Label setups: ``4class`` (default; ``exc`` merged into ``hap``), ``6class``, ``all``. Utterances whose
consensus falls outside the setup, and ``xxx`` (no majority) unless ``keep_undecided``, are counted in
``ReadResult.excluded``; a kept ``xxx`` utterance is labelled with its most-voted labels (ties kept, as
Emotion-llama-scratch's ``emo_hard_label`` does).
"""
from __future__ import annotations

import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minigpt4.config import DataConfig
from minigpt4.data.corpora.common import (
    CorpusError,
    ReadResult,
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

_BASE = {"neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry"}
SETUPS: dict[str, tuple[str, dict[str, str]]] = {
    "4class": ("iemocap_4class", {**_BASE, "exc": "happy"}),
    "6class": ("iemocap_6class", {**_BASE, "exc": "excited", "fru": "frustrated"}),
    "all": ("iemocap_all", {**_BASE, "exc": "excited", "fru": "frustrated", "fea": "fearful", "sur": "surprised",
                            "dis": "disgusted", "oth": "other"}),
}
CODES = ("neu", "ang", "hap", "exc", "sad", "fru", "fea", "sur", "dis", "oth", "xxx")
WORDS = {"neutral": "neu", "neutral state": "neu", "anger": "ang", "angry": "ang", "happiness": "hap",
         "happy": "hap", "excited": "exc", "excitement": "exc", "sadness": "sad", "sad": "sad",
         "frustration": "fru", "frustrated": "fru", "fear": "fea", "fearful": "fea", "surprise": "sur",
         "surprised": "sur", "disgust": "dis", "disgusted": "dis", "other": "oth"}
"""Words of the categorical evaluation lines -> label codes."""
SCR_FEATURE_DIRS = folder_defaults("scr")
"""Emotion-llama-scratch's per-sample feature folders, also the default beside the raw release."""
DEFAULTS: dict[str, Any] = {
    "sessions": None,
    "test_sessions": [],
    "pickle": None,
    "frames_dir": "processed_videoframes",
}

_NUM = r"(\d+(?:\.\d+)?)"
HEADER = re.compile(rf"^\[{_NUM}\s*-\s*{_NUM}\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]\s*$")
UTTERANCE = re.compile(rf"^(Ses\d\d[FM]_\S+)\s+\[{_NUM}\s*-\s*{_NUM}\]:\s?(.*)$")
UTTERANCE_LIKE = re.compile(r"^Ses\d\d[FM]_\S*\s*\[")
SESSION = re.compile(r"^Session(\d+)$")


@dataclass
class Evaluation:
    """One EmoEvaluation block."""

    id: str
    start: float
    end: float
    code: str
    vad: tuple[float, ...]
    evaluators: list[frozenset[str]] = field(default_factory=list)
    """Label codes per external evaluator line (``C-E*``); one judge may give several."""
    self_rating: tuple[str, ...] = ()


def _codes(words: str, path: Path, line: int) -> frozenset[str]:
    out = set()
    for word in words.split(";"):
        word = word.split(":")[0].strip().lower()
        if not word:
            continue
        if word not in WORDS:
            raise CorpusError(f"{path}:{line}: unknown evaluation label {word!r}; expected one of "
                              f"{', '.join(sorted(set(WORDS)))}")
        out.add(WORDS[word])
    if not out:
        raise CorpusError(f"{path}:{line}: evaluation line names no label")
    return frozenset(out)


def parse_emo_evaluation(path: Path) -> list[Evaluation]:
    """Blocks of ``[start - end] <id> <code> [V, A, D]`` followed by ``C-*`` and ``A-*`` judgement lines."""
    blocks: list[Evaluation] = []
    for number, raw in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if line.startswith("["):
            match = HEADER.match(line)
            if not match:
                raise CorpusError(f"{path}:{number}: malformed block header {line!r}; expected "
                                  "'[START - END]<TAB>UTTERANCE_ID<TAB>CODE<TAB>[V, A, D]'")
            start, end, utt, code, vad = match.groups()
            if code not in CODES:
                raise CorpusError(f"{path}:{number}: unknown consensus code {code!r} for {utt}; expected one of "
                                  f"{', '.join(CODES)}")
            try:
                values = tuple(float(v) for v in vad.split(","))
            except ValueError:
                raise CorpusError(f"{path}:{number}: malformed [V, A, D] {vad!r} for {utt}") from None
            blocks.append(Evaluation(utt, float(start), float(end), code, values))
        elif line.startswith(("C-", "A-")):
            if not blocks:
                raise CorpusError(f"{path}:{number}: judgement line before any block header: {line!r}")
            who, sep, rest = line.partition(":")
            fields = len(line.split("\t"))
            if fields != 3:
                raise CorpusError(f"{path}:{number}: judgement line of {blocks[-1].id} has {fields} tab-separated "
                                  f"field(s), expected 3 ('C-E1:<TAB>Label;<TAB>(comment)'): {line!r}")
            if not sep:
                raise CorpusError(f"{path}:{number}: malformed judgement line {line!r}; expected 'C-E1:<TAB>Label;'")
            if who.startswith("C-"):
                codes = _codes(rest.split("(")[0], path, number)
                if who.startswith("C-E"):
                    blocks[-1].evaluators.append(codes)
                else:
                    blocks[-1].self_rating = tuple(sorted(codes))
        else:
            raise CorpusError(f"{path}:{number}: unexpected line {line!r}; expected a block header, a C-/A- "
                              "judgement line or a blank line")
    return blocks


def parse_transcription(path: Path) -> list[tuple[str, float, float, str]]:
    """``<id> [start-end]: text`` lines in file order. Lines that do not start like an utterance (speaker
    notes) are not utterances and are passed over; a line that starts like one but is malformed is an error."""
    out = []
    for number, raw in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        line = raw.strip()
        match = UTTERANCE.match(line)
        if match:
            utt, start, end, text = match.groups()
            out.append((utt, float(start), float(end), text.strip()))
        elif UTTERANCE_LIKE.match(line):
            raise CorpusError(f"{path}:{number}: malformed utterance line {line!r}; expected "
                              "'<utterance id> [start-end]: text'")
    return out


def side(utterance_id: str) -> str:
    """Speaker half of the dialogue video: left when the speaker's gender is the session's recorded actor."""
    return "left" if utterance_id[5] == utterance_id[-4] else "right"


def labels_for(ev: Evaluation, mapping: dict[str, str], label_set: LabelSet, multi: bool, min_votes: int,
               keep_undecided: bool) -> tuple[str, ...] | str:
    """Labels of one utterance, or the reason it is excluded from the setup."""
    votes: Counter[str] = Counter()
    for codes in ev.evaluators:
        votes.update({mapping[c] for c in codes if c in mapping})
    if ev.code == "xxx":
        if not keep_undecided:
            return "undecided (xxx)"
        if not votes:
            return "undecided (xxx) with no vote inside the label setup"
        top = max(votes.values())
        tied = tuple(label for label in label_set.labels if votes[label] == top)
        return tied if multi else tied[:1]
    if ev.code not in mapping:
        return f"consensus {ev.code} outside the label setup"
    primary = mapping[ev.code]
    if not multi:
        return (primary,)
    return (primary, *(label for label in label_set.labels if label != primary and votes[label] >= min_votes))


def _release_root(root: Path) -> Path:
    nested = root / "IEMOCAP_full_release"
    return nested if not any(SESSION.match(p.name) for p in root.iterdir()) and nested.is_dir() else root


def read_release(root: Path, data_cfg: DataConfig, opts: dict, setup: str) -> ReadResult:
    label_set = get_label_set(SETUPS[setup][0])
    mapping = SETUPS[setup][1]
    multi = data_cfg.label_mode == "multi"
    min_votes = int(data_cfg.min_votes)
    keep_undecided = bool(data_cfg.keep_undecided)
    require_text = bool(data_cfg.transcript)
    release = _release_root(root)
    sessions = sorted((int(m.group(1)), p) for p in release.iterdir() if (m := SESSION.match(p.name)) and p.is_dir())
    if not sessions:
        raise CorpusError(f"IEMOCAP: no Session<N> folders in {release}")
    wanted = opts["sessions"]
    if wanted is not None:
        found = {n for n, _ in sessions}
        absent = sorted(set(int(s) for s in wanted) - found)
        if absent:
            raise CorpusError(f"data.options.sessions asks for session(s) {absent} not in {release}")
        sessions = [(n, p) for n, p in sessions if n in {int(s) for s in wanted}]
    test_sessions = {int(s) for s in opts["test_sessions"]}

    samples: list[Sample] = []
    excluded: Counter[str] = Counter()
    for number, session_dir in sessions:
        eval_dir = session_dir / "dialog" / "EmoEvaluation"
        files = sorted(p for p in eval_dir.glob("*.txt") if p.is_file()) if eval_dir.is_dir() else []
        if not files:
            raise CorpusError(f"IEMOCAP {session_dir.name}: no EmoEvaluation files in {eval_dir}")
        split = ("test" if number in test_sessions else "train") if test_sessions else None
        for eval_path in files:
            dialog = eval_path.stem
            trans_path = require_file(session_dir / "dialog" / "transcriptions" / f"{dialog}.txt",
                                      f"IEMOCAP transcription of {dialog}")
            turns = parse_transcription(trans_path)
            order = {utt: i for i, (utt, *_rest) in enumerate(turns)}
            lines = [context_line(_speaker(utt), text) for utt, _, _, text in turns]
            texts = {utt: text for utt, _, _, text in turns}
            for ev in parse_emo_evaluation(eval_path):
                labels = labels_for(ev, mapping, label_set, multi, min_votes, keep_undecided)
                if isinstance(labels, str):
                    excluded[labels] += 1
                    continue
                text = texts.get(ev.id)
                if require_text and not text:
                    raise CorpusError(f"{trans_path}: no transcript for utterance {ev.id} (labelled in {eval_path}); "
                                      "data.transcript=true needs one")
                votes = Counter(c for codes in ev.evaluators for c in codes)
                samples.append(Sample(
                    id=ev.id, labels=labels, text=text or None, group=session_dir.name,
                    media=str(session_dir / "dialog" / "avi" / "DivX" / f"{dialog}.avi"),
                    context=tuple(lines[:order[ev.id]]) if ev.id in order else (),
                    following=tuple(lines[order[ev.id] + 1:]) if ev.id in order else (), split=split,
                    speaker=_speaker(ev.id),
                    meta={"consensus": ev.code, "votes": dict(votes), "vad": ev.vad, "self_rating": ev.self_rating,
                          "segment": (ev.start, ev.end), "side": side(ev.id), "dialog": dialog,
                          "wav": str(session_dir / "sentences" / "wav" / dialog / f"{ev.id}.wav")}))
    check_unique(samples, str(release))
    return ReadResult(samples, label_set, {m: root / d for m, d in SCR_FEATURE_DIRS.items()}, dict(excluded))


def _speaker(utterance_id: str) -> str:
    return utterance_id.rsplit("_", 1)[-1][:1]


class _DataOnly(pickle.Unpickler):
    """An unpickler that builds containers, strings, numbers and NumPy arrays, and refuses every other global
    (a function or class a payload would call)."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is not plain data")
        return super().find_class(module, name)


def read_scr_pickle(path: Path, root: Path, data_cfg: DataConfig, opts: dict, setup: str) -> ReadResult:
    """Emotion-llama-scratch ``data_collected*.pickle``: a list of dicts with ``id``, ``emotion`` (3-letter
    code) and ``transcription``. Only plain values and NumPy arrays are unpickled (``_DataOnly``): a pickle that
    names any other class or function is refused, since unpickling it could run code. Its labels
    are not the release's consensus labels (formats.md 2.3), and it carries no verified vote counts, so only
    single-label setups are offered."""
    if data_cfg.label_mode == "multi":
        raise CorpusError(f"{path}: the Emotion-llama-scratch pickle has no verified evaluator votes; multi-label "
                          "needs the raw release (unset data.options.pickle)")
    label_set = get_label_set(SETUPS[setup][0])
    mapping = SETUPS[setup][1]
    with open(require_file(path, "Emotion-llama-scratch pickle"), "rb") as handle:
        try:
            records = _DataOnly(handle).load()
        except pickle.UnpicklingError as err:
            raise CorpusError(f"{path}: {err}; it is not unpickled, as that could run code from the file") from None
    if not isinstance(records, list):
        raise CorpusError(f"{path}: expected a list of dicts, got {type(records).__name__}")
    frames_dir = resolve(root, opts["frames_dir"])
    test_sessions = {int(s) for s in opts["test_sessions"]}
    samples: list[Sample] = []
    excluded: Counter[str] = Counter()
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not {"id", "emotion"} <= set(record):
            raise CorpusError(f"{path}: record {i} is not a dict with 'id' and 'emotion'")
        utt, code = str(record["id"]), str(record["emotion"])[:3]
        if code not in CODES:
            raise CorpusError(f"{path}: record {i} ({utt}): unknown emotion {record['emotion']!r}")
        if code not in mapping:
            excluded[f"emotion {code} outside the label setup"] += 1
            continue
        session = int(utt[3:5])
        split = ("test" if session in test_sessions else "train") if test_sessions else None
        samples.append(Sample(
            id=utt, labels=(mapping[code],), text=(record.get("transcription") or "").strip() or None,
            group=f"Session{session}", media=str(frames_dir / f"{utt}.npy"), split=split,
            meta={"emotion": code, "emo_evo": record.get("emo_evo"), "side": side(utt)}))
    check_unique(samples, str(path))
    return ReadResult(samples, label_set, {m: path.parent / d for m, d in SCR_FEATURE_DIRS.items()}, dict(excluded))


def read(data_cfg: DataConfig, label_set_name: str | None = None) -> ReadResult:
    """``label_set_name`` replaces the setup's label set by an identical one (the demo corpus's ``demo``)."""
    root = root_dir(data_cfg, "iemocap")
    opts = options(data_cfg, DEFAULTS, "iemocap")
    setup = label_setup(data_cfg, {"default": "4class", **{k: k for k in SETUPS}}, "iemocap")
    if opts["pickle"]:
        result = read_scr_pickle(resolve(root, opts["pickle"]), root, data_cfg, opts, setup)
    else:
        result = read_release(root, data_cfg, opts, setup)
    if label_set_name is not None:
        result.label_set = get_label_set(label_set_name)
        if result.label_set.labels != get_label_set(SETUPS[setup][0]).labels:
            raise CorpusError(f"label set {label_set_name!r} does not match IEMOCAP setup {setup!r}")
    return result
