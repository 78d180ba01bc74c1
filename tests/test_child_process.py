"""Owned child processes: a fold's trainer never outlives a killed cross_train.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SLEEPER = ("import os, signal, sys, time\n"
           "def checkpoint(*_):\n"
           "    open(sys.argv[1] + '.checkpoint', 'w').close()\n"
           "    sys.exit(143)\n"
           "signal.signal(signal.SIGTERM, checkpoint)\n"
           "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
           "time.sleep(600)")
"""A stand-in trainer: on SIGTERM it writes ``<pid file>.checkpoint`` and exits, as train.py does."""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_for(predicate, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def start_parent(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """A process that launches a fold the way cross_validation does (``fold_launch.run_all``); returns it and
    its child's pid."""
    pid_file = tmp_path / "child.pid"
    # SIGINT is restored to Python's default: a shell that backgrounds a job (CI runners may) makes it ignored.
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from pathlib import Path; from minigpt4.cross_validation.fold_command import FoldCommand; "
            "from minigpt4.cross_validation.launch import LocalFold, run_all; "
            "fold = FoldCommand([sys.executable, '-c', sys.argv[1], sys.argv[2]], Path(sys.argv[3])); "
            "run_all(['fold 1'], [{}], lambda unit, env: LocalFold(fold), lambda unit, status: None)")
    parent = subprocess.Popen([sys.executable, "-c", code, SLEEPER, str(pid_file), str(tmp_path / "train.out")],
                              env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert wait_for(lambda: pid_file.is_file() and pid_file.read_text()), "the child never started"
    return parent, int(pid_file.read_text())


def test_sigkilled_parent_takes_its_child_along(tmp_path: Path) -> None:
    parent, child = start_parent(tmp_path)
    parent.kill()
    parent.wait()
    assert wait_for(lambda: not alive(child), 30), f"child {child} survived its SIGKILLed parent"


def test_sigkilled_parent_lets_its_child_checkpoint(tmp_path: Path) -> None:
    parent, child = start_parent(tmp_path)
    parent.kill()
    assert wait_for(lambda: (tmp_path / "child.pid.checkpoint").is_file(), 30)


def test_interrupted_parent_stops_its_child_gracefully(tmp_path: Path) -> None:
    parent, child = start_parent(tmp_path)
    parent.send_signal(signal.SIGINT)  # Ctrl-C in the parent only: the wait is interrupted, the child stopped
    assert parent.wait(timeout=60) != 0
    assert not alive(child)
    assert (tmp_path / "child.pid.checkpoint").is_file()  # SIGTERM first: the trainer could write its checkpoint
