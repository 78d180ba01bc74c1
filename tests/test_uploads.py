"""Upload handling: container sniffing, safe display ids, private temp folders that always go away."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from minigpt4.data.corpora import CorpusError, label_set_of, load_corpus
from minigpt4.data.run_config import load_config
from minigpt4.serving.uploads import (
    UnsupportedMedia,
    UploadTooLarge,
    display_id,
    sniff_suffix,
    stored_upload,
)

REPO = Path(__file__).resolve().parents[1]
MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00"


def test_containers_are_recognised_by_their_first_bytes():
    assert sniff_suffix(MP4_HEAD) == ".mp4"
    assert sniff_suffix(b"RIFF\x24\x00\x00\x00WAVEfmt ") == ".wav"
    assert sniff_suffix(b"RIFF\x24\x00\x00\x00AVI LIST") == ".avi"
    assert sniff_suffix(b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x1f") == ".mkv"
    assert sniff_suffix(b"fLaC\x00\x00\x00\x22" + bytes(8)) == ".flac"
    assert sniff_suffix(b"ID3\x04" + bytes(12)) is None  # MP3: decode_clip does not read it
    assert sniff_suffix(b"hello, world!!!!") is None
    assert sniff_suffix(b"") is None


def test_client_names_are_only_display_ids():
    assert display_id("../../etc/passwd") == "passwd"
    assert display_id("C:\\x\\my clip (1).mp4") == "my_clip_1"
    assert display_id("....mp4") == "upload" and display_id(None) == "upload"
    assert len(display_id("a" * 500 + ".mp4")) == 80


def test_stored_upload_names_the_file_itself_and_always_cleans_up(tmp_path):
    body = MP4_HEAD + b"x" * 5000
    with stored_upload(io.BytesIO(body), "../../evil.avi", 10_000, tmp_path) as path:
        assert path.name == "clip.mp4" and path.parent.parent == tmp_path  # sniffed, not the client's name
        assert path.read_bytes() == body
    assert not any(tmp_path.iterdir())
    with pytest.raises(RuntimeError):
        with stored_upload(io.BytesIO(body), "a.mp4", 10_000, tmp_path):
            raise RuntimeError("prediction failed")
    assert not any(tmp_path.iterdir())


def test_refusals_name_the_upload_and_leave_nothing(tmp_path):
    with pytest.raises(UploadTooLarge, match="big.mp4.*4,096-byte"):
        with stored_upload(io.BytesIO(MP4_HEAD + bytes(5000)), "big.mp4", 4096, tmp_path):
            pass
    with pytest.raises(UnsupportedMedia, match="notes.mp4.*MP4/MOV"):
        with stored_upload(io.BytesIO(b"plain text, not media" * 10), "notes.mp4", 4096, tmp_path):
            pass
    assert not any(tmp_path.iterdir())


def test_label_set_of_agrees_with_the_corpus_reader():
    cfg = load_config(REPO / "train_configs/demo.yaml")
    assert label_set_of(cfg.data) == load_corpus(cfg.data, []).label_set
    for path, expected in (("train_configs/meld.yaml", "meld"), ("train_configs/iemocap_4class.yaml", "iemocap_4class"),
                           ("train_configs/mer2023_finetune.yaml", "mer2023")):
        assert label_set_of(load_config(REPO / path, allow_missing=True).data).name == expected
    six = load_config(None, ["data.corpus=iemocap", "data.labels=6class"], allow_missing=True)
    assert label_set_of(six.data).name == "iemocap_6class"
    with pytest.raises(CorpusError, match="7class"):
        label_set_of(load_config(None, ["data.corpus=iemocap", "data.labels=7class"]).data)
