"""Uploaded clips: recognise the container from its first bytes, keep it in a private temp folder, delete it.

The client's file name is only ever used as a display id (sanitised); the path on disk is chosen here
(``<fresh temp folder>/clip<suffix of the sniffed container>``), so no upload can name or overwrite a file.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from minigpt4.runtime.errors import UserError

CHUNK = 1 << 20
SNIFF_BYTES = 16
CONTAINERS = "MP4/MOV, AVI, Matroska/WebM, WAV, FLAC"
"""What :func:`sniff_suffix` recognises: the containers ``minigpt4.extract.decode_clip`` reads."""


class UnsupportedMedia(UserError, ValueError):
    """The upload is not a container we can decode (HTTP 415)."""


class UploadTooLarge(ValueError):
    """The upload exceeds the size cap (HTTP 413)."""


def sniff_suffix(head: bytes) -> str | None:
    """File suffix of the media container whose signature starts ``head`` (16 bytes suffice), else None."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return ".mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return ".avi"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".mkv"
    if head[:4] == b"fLaC":
        return ".flac"
    return None


def display_id(filename: str | None, default: str = "upload") -> str:
    """A safe display id from a client file name: the stem, only ``[A-Za-z0-9._-]``, at most 80 characters."""
    stem = Path((filename or "").replace("\\", "/")).stem
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80]
    return clean or default


@contextmanager
def stored_upload(source: BinaryIO, filename: str | None, max_bytes: int,
                  root: str | Path | None = None) -> Iterator[Path]:
    """Copy ``source`` into a fresh private folder under ``root`` (system temp when None); yield its path.

    Raises :class:`UnsupportedMedia` when the first bytes match no known container and
    :class:`UploadTooLarge` past ``max_bytes``. The folder and everything in it are removed on exit, whatever
    happens inside the ``with`` block.
    """
    name = filename or "upload"
    head = source.read(SNIFF_BYTES)
    suffix = sniff_suffix(head)
    if suffix is None:
        raise UnsupportedMedia(f"{name!r} is not a video or audio file: its first bytes match none of the "
                               f"supported containers ({CONTAINERS})")
    if root is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=root))
    try:
        path = folder / f"clip{suffix}"
        size = len(head)
        with path.open("wb") as out:
            out.write(head)
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(f"{name!r} is larger than the {max_bytes:,}-byte upload limit")
                out.write(chunk)
        if size > max_bytes:
            raise UploadTooLarge(f"{name!r} is larger than the {max_bytes:,}-byte upload limit")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
