"""A pickle payload for the tests that plant one in files a run reads (a shared run folder is untrusted)."""
from __future__ import annotations

import os
from pathlib import Path


class Payload:
    """Unpickling this runs ``touch marker``: what a malicious ``state.pt`` would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)
