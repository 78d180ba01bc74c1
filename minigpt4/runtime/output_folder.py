"""Output folders a tool may write into: new ones, or ones it made itself (a marker file says which tool).

Why: a mistyped ``--out`` must never wipe a corpus or a run. A tool writes only into a missing or empty folder,
or one holding its own marker; it replaces the contents only when told to (``--overwrite``), and never those
of a folder it did not create.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from minigpt4.runtime.errors import UserError

MARKER = "created_by.json"


class OutputFolderError(UserError, RuntimeError):
    """The folder holds something this tool did not write, or a result it must not replace unasked."""


def fingerprint(identity: Any) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def check(folder: str | Path, tool: str, ignore: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """``tool``'s marker in ``folder`` (None when the folder is missing or empty); refuse anything else.

    ``ignore``: names that do not make a folder non-empty (a lock file). Nothing is changed.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder} is a file, not a folder: choose another output folder")
    if not (folder.is_dir() and any(p.name not in ignore for p in folder.iterdir())):
        return None
    marker = read_marker(folder)
    if marker is None or marker.get("tool") != tool:
        made_by = f"it was made by {marker.get('tool')}" if marker else f"it has no {MARKER}"
        raise OutputFolderError(
            f"{folder} is not empty and is not an output folder of {tool} ({made_by}); refusing to write into "
            f"or replace it (--overwrite replaces only {tool}'s own folders): choose another output folder")
    return marker


def mark(folder: str | Path, tool: str, identity: Any = None) -> None:
    """Record that ``tool`` made ``folder`` (and from what: ``identity``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(json.dumps({"tool": tool, "fingerprint": fingerprint(identity),
                                             "identity": identity}, indent=2, default=str) + "\n")


def claim_folder(folder: str | Path, tool: str, overwrite: bool = False, identity: Any = None,
          ignore: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Make ``folder`` ``tool``'s output folder; return the marker of an earlier run of ``tool`` kept in place.

    A missing or empty folder is created and marked. A folder holding ``tool``'s marker is emptied and marked
    again under ``overwrite``; without it the earlier marker is returned and the caller decides (continue, or
    refuse). Anything else is refused (:func:`check`).
    """
    folder = Path(folder)
    marker = check(folder, tool, ignore)
    if marker is not None:
        if not overwrite:
            return marker
        for path in folder.iterdir():
            if path.name not in ignore:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    mark(folder, tool, identity)
    return None
