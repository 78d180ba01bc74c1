"""The project's own error kind: input a user can fix (a file, a config value, a clip, a folder).

Entry points print such an error as one line naming the file and the cause and exit non-zero
(``minigpt4.entry.run_main``); anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; the message names the file (or key, or clip) and what was expected."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or resume state that cannot be loaded as it is (wrong keys, shapes, dtypes, unsafe pickle)."""
