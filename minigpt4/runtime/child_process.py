"""Child processes that never outlive the process that started them.

Why: a fold's trainer that survives a killed ``cross_train.py`` keeps writing into the run folder beside the
rerun's trainer. On Linux every child asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``),
which covers even SIGKILL of the parent; the trainer then finishes its step, checkpoints and exits. On any
exception in the parent while waiting (Ctrl-C, SIGTERM turned into ``SystemExit``) the child is sent SIGTERM
and given time to checkpoint before it is killed.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Any, Callable, Sequence

PR_SET_PDEATHSIG = 1
GRACE_S = 120.0
"""How long a terminated child may take to finish its step and write its checkpoint before it is killed."""


def _die_with(parent: int) -> Callable[[], None]:
    """``preexec_fn`` of a child: SIGTERM when ``parent`` dies (also when it died before this ran)."""
    def setup() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            os._exit(126)  # nothing can be reported from here; the parent sees the status
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
    return setup


def start(cmd: Sequence[str], **popen: Any) -> subprocess.Popen:
    """``subprocess.Popen(cmd, **popen)`` for a child that dies with this process (Linux)."""
    if sys.platform.startswith("linux"):
        popen["preexec_fn"] = _die_with(os.getpid())
    return subprocess.Popen(list(cmd), **popen)


def wait(proc: subprocess.Popen, grace_s: float = GRACE_S) -> int:
    """The child's exit status; if waiting is interrupted, the child is stopped first (SIGTERM, then SIGKILL)."""
    try:
        return proc.wait()
    except BaseException:
        stop(proc, grace_s)
        raise


def stop(proc: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGTERM, wait up to ``grace_s`` for the child to checkpoint and exit, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def exit_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit(143)`` so ``finally`` blocks and :func:`wait` stop owned children."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
