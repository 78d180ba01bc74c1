"""ECF 2.0 / SemEval-2024 Task 3: a JSON list of conversations with per-utterance emotions.

Conversation ids are unique across files, so sample ids are ``dia{conversation}utt{utterance}`` (the stem of
Subtask 2's ``video_name``); the group is the conversation. Clips are not distributed (cut them from the
episodes with ``video_source``); ``video_name`` is resolved under ``video_dir`` when present.
"""
from __future__ import annotations

import json
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

DEFAULTS: dict[str, Any] = {
    "files": {"train": "Subtask_2_train.json", "test": "Subtask_2_test.json"},
    "video_dir": "videos",
}


def read_file(path: Path, split: str, label_set: LabelSet, video_dir: Path, require_text: bool) -> list[Sample]:
    data = json.loads(require_file(path, f"ECF {split} file").read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise CorpusError(f"{path}: expected a JSON list of conversations, got {type(data).__name__}")
    samples = []
    for i, conv in enumerate(data):
        if not isinstance(conv, dict) or "conversation_ID" not in conv or not isinstance(conv.get("conversation"), list):
            raise CorpusError(f"{path}: conversation #{i} lacks 'conversation_ID' or a 'conversation' list")
        cid = conv["conversation_ID"]
        earlier: list[str] = []
        for utt in conv["conversation"]:
            where = f"{path}: conversation {cid}, utterance {utt.get('utterance_ID') if isinstance(utt, dict) else '?'}"
            if not isinstance(utt, dict) or not {"utterance_ID", "text", "emotion"} <= set(utt):
                raise CorpusError(f"{where}: expected an object with utterance_ID, text and emotion")
            try:
                label = label_set.canonical(str(utt["emotion"]))
            except ValueError as err:
                raise CorpusError(f"{where}: {err}") from None
            text = str(utt["text"] or "").strip()
            if require_text and not text:
                raise CorpusError(f"{where}: empty text; data.transcript=true needs one")
            video = utt.get("video_name")
            samples.append(Sample(
                id=f"dia{cid}utt{utt['utterance_ID']}", labels=(label,), text=text or None, group=f"dia{cid}",
                media=str(video_dir / video) if video else None, context=tuple(earlier), split=split,
                speaker=utt.get("speaker") or None,
                meta={"speaker": utt.get("speaker"), "video_source": utt.get("video_source")}))
            earlier.append(context_line(utt.get("speaker"), text))
    return samples


def read(data_cfg: DataConfig) -> ReadResult:
    root = root_dir(data_cfg, "ecf")
    opts = options(data_cfg, DEFAULTS, "ecf")
    label_set = get_label_set(label_setup(data_cfg, {"default": "ecf", "ecf": "ecf"}, "ecf"))
    require_text = bool(data_cfg.transcript)
    samples: list[Sample] = []
    for split, name in dict(opts["files"]).items():
        if split not in ("train", "dev", "test"):
            raise CorpusError(f"data.options.files for ecf: unknown split {split!r}; expected train/dev/test")
        samples += read_file(resolve(root, name), split, label_set, resolve(root, opts["video_dir"]), require_text)
    check_unique(samples, str(root))
    return ReadResult(samples, label_set, {m: root / "features" / m for m in ("face", "video", "audio")})
