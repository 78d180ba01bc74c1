"""The README is a script that runs.

Every shell command in README.md's code blocks (and every ``python`` block) is either run here, in README
order, in a fresh copy of the repository with tiny step counts (``EMOTION_LLAMA_OVERRIDES``, the documented
variable), or is marked in the README with a trailing ``# needs: <real data or weights>`` (a ``# needs:`` line
of its own marks the rest of its block). A command ending in ``# until Ctrl-C`` is a server: it is started
(on a free ``--port`` unless it names one), its printed URL must answer 200, then it gets Ctrl-C and must exit
cleanly. A command followed by a ``text`` block shows what it prints: every line shown there (numbers aside;
``...`` skips lines) must appear in what the command really prints.
New README commands are picked up automatically; a broken one fails ``test_readme_runs_as_a_script``.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from minigpt4.config import ENV_OVERRIDES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELL = {"", "bash", "sh", "shell", "console"}
QUICK = "run.max_steps=4 run.eval_every=0 eval.max_samples=8 eval.max_new_tokens=4"
"""What the README says makes any of its commands quick (EMOTION_LLAMA_OVERRIDES)."""
SELF = {"make test": "the test suite itself: CI runs it (.ci/run), and this test is part of it"}
PROGRAMS = {"python", "make", "torchrun", "cat", "ls", "head", "tail", "column"}
NOT_COPIED = {".git", ".venv", "runs", ".pytest_cache", "__pycache__"}
_NEEDS = re.compile(r"\s+#\s*needs:\s*(?P<what>\S.*)$")
_UNTIL = re.compile(r"\s+#\s*until Ctrl-C\s*$")
_URL = re.compile(r"http://[\w.-]+:\d+/\S*")
_FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")


@dataclass
class Command:
    line: int
    """Line of README.md where the command starts (1-based)."""
    text: str
    lang: str
    """``shell`` or ``python`` (a whole block)."""
    needs: str | None = None
    """Why it is not run here (real data or weights), from its ``# needs:`` mark."""
    shows: str | None = None
    """The ``text`` block right after the command's block: what it prints."""
    serves: bool = False
    """A server that runs until Ctrl-C (``# until Ctrl-C``)."""


def fenced_blocks(markdown: str) -> list[tuple[int, str, str, int]]:
    """(first content line, language, content, line after the block) of every fenced code block."""
    lines, out, i = markdown.splitlines(), [], 0
    while i < len(lines):
        match = _FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence, lang, start = match["fence"], match["lang"].lower(), i + 1
        i = start
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        out.append((start + 1, lang, "\n".join(lines[start:i]), i + 2))
        i += 1
    return out


def shell_commands(first_line: int, content: str) -> list[Command]:
    """Commands of one shell block: ``\\``-continued lines joined; comment lines skipped; ``# needs:`` marks."""
    out: list[Command] = []
    block_needs, pending, start = None, "", 0
    for offset, raw in enumerate(content.splitlines()):
        line = raw.strip()
        if not pending:
            start = first_line + offset
            if not line:
                continue
            if line.startswith("#"):
                mark = _NEEDS.match(" " + line)
                block_needs = mark["what"] if mark else block_needs
                continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        text, pending = pending + line, ""
        mark = _NEEDS.search(text)
        needs = mark["what"] if mark else block_needs
        serves = bool(_UNTIL.search(text))
        text = _UNTIL.sub("", _NEEDS.sub("", text)).strip()
        out.append(Command(start, text, "shell", needs, serves=serves))
    assert not pending, f"README.md:{start}: a command ends with a backslash"
    return out


def readme_commands(markdown: str) -> list[Command]:
    """Every command of the README, in order, each with the ``text`` block that shows its output."""
    blocks = fenced_blocks(markdown)
    out: list[Command] = []
    for n, (line, lang, content, after) in enumerate(blocks):
        if lang in SHELL:
            found = shell_commands(line, content)
        elif lang == "python":
            mark = _NEEDS.search(content.splitlines()[0]) if content.strip() else None
            found = [Command(line, content, "python", mark["what"] if mark else None)]
        else:
            continue
        follower = blocks[n + 1] if n + 1 < len(blocks) else None
        if found and follower and follower[1] == "text" and _only_blank_between(markdown, after, follower[0]):
            found[-1].shows = follower[2]
        out += found
    return out


def _only_blank_between(markdown: str, after: int, next_start: int) -> bool:
    """True when only blank lines separate a block from the next one (which then shows its output)."""
    between = markdown.splitlines()[after - 1:next_start - 2]
    return all(not line.strip() for line in between)


def mask(line: str) -> str:
    """A printed line with figures, spacing and the repository's path made irrelevant (figures differ under
    tiny step counts, the README writes ``<acc>`` for figures it does not state, the test runs in a copy)."""
    line = re.sub(r"(?<![\w.])\S*?/(runs|train_configs|eval_configs)/", r"\1/", line)
    line = re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "N", line)
    line = re.sub(r"<[\w:]+>", "N", line)  # a figure the README does not state
    line = re.sub(r"N(:N)+|N ± N", "N", line)
    return re.sub(r"\s+", " ", line).strip()


def unshown_lines(shown: str, printed: str) -> list[str]:
    """Lines of a README output block that the command did not print (in order; ``...`` skips any lines).
    The note an entry point adds about this test's own ``EMOTION_LLAMA_OVERRIDES`` is not part of the README."""
    printed = re.sub(rf"; {ENV_OVERRIDES}: [^;\n]*", "", printed)
    printed_lines = [mask(line) for line in printed.splitlines()]
    missing, pos = [], 0
    for line in shown.splitlines():
        want = mask(line)
        if not want or want == "...":
            continue
        try:
            pos = printed_lines.index(want, pos) + 1
        except ValueError:
            missing.append(line)
    return missing


COMMANDS = readme_commands(README.read_text())


def test_parser_reads_blocks_marks_continuations_and_outputs() -> None:
    md = "\n".join(["intro", "```bash", "make demo", "python train.py \\", "  run.max_steps=4   # needs: MELD",
                    "# needs: real LLaMA weights", "python eval_emotion.py x=1", "python app.py  # until Ctrl-C", "```", "", "```text",
                    "final checkpoint: runs/demo/final", "```", "```python", "print(1)", "```", "```yaml", "a: 1",
                    "```"])
    cmds = readme_commands(md)
    assert [(c.line, c.text, c.needs, c.lang) for c in cmds] == [
        (3, "make demo", None, "shell"), (4, "python train.py run.max_steps=4", "MELD", "shell"),
        (7, "python eval_emotion.py x=1", "real LLaMA weights", "shell"),
        (8, "python app.py", "real LLaMA weights", "shell"), (15, "print(1)", None, "python")]
    assert cmds[3].serves and not cmds[2].serves
    assert cmds[3].shows == "final checkpoint: runs/demo/final" and cmds[0].shows is None
    assert unshown_lines("a <acc>\n...\nc", "a 0.51\nb\nc") == []
    assert mask("[cross <mm:ss>] folder ~/x/runs/a") == mask("[cross 01:02] folder /tmp/y/runs/a") == "[cross N] folder runs/a"
    assert unshown_lines("c\na 0.75", "a 0.51\nb\nc") == ["a 0.75"]  # order matters
    assert unshown_lines("x.py: demo (no --cfg-path); run 2", f"x.py: demo (no --cfg-path); {ENV_OVERRIDES}: a=1; run 3") == []


def test_every_command_is_runnable_or_marked() -> None:
    """Unmarked commands use known programs, existing scripts and Makefile targets; marks give a reason."""
    assert COMMANDS, "README.md has no commands"
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for cmd in COMMANDS:
        where = f"README.md:{cmd.line}: {cmd.text[:80]!r}"
        if cmd.lang == "python":
            compile(cmd.text, where, "exec")
            continue
        words = shlex.split(cmd.text)
        while re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # leading VAR=value assignments
            words = words[1:]
        assert words[0] in PROGRAMS or cmd.text in SELF, f"{where}: unknown program; run it here or mark it"
        scripts = [w for w in words if w.endswith(".py") and not w.startswith("-")]
        for script in scripts[:1]:
            assert (ROOT / script).is_file(), f"{where}: no script {script}"
        if words[0] == "make":
            assert set(words[1:]) <= targets, f"{where}: no such Makefile target"


def sandbox(tmp: Path) -> Path:
    """A fresh copy of the repository (no runs/, no .git), as a new user would have after cloning."""
    repo = tmp / "repo"
    shutil.copytree(ROOT, repo, ignore=lambda d, names: [n for n in names if n in NOT_COPIED])
    (repo / ".installed").touch()  # the Makefile's install stamp: the venv of this test is already installed
    return repo


def environment(repo: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "PYTHONPATH": str(repo),
            ENV_OVERRIDES: QUICK, "MAKEFLAGS": f"PY={sys.executable} STAMP=.installed", "OMP_NUM_THREADS": "2",
            "TQDM_DISABLE": "1"}


def run_command(cmd: Command, repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    if cmd.lang == "python":
        script = repo / f"readme_line_{cmd.line}.py"
        script.write_text(cmd.text)
        argv: list[str] | str = [sys.executable, str(script)]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", cmd.text]
    return subprocess.run(argv, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1200)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def run_server(cmd: Command, repo: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """Start a ``# until Ctrl-C`` command, wait until the URL it prints answers 200, then press Ctrl-C
    (SIGINT to its process group, as a terminal does); its exit status is the result's."""
    text = cmd.text if "--port" in cmd.text else f"{cmd.text} --port {_free_port()}"
    proc = subprocess.Popen(["bash", "-c", text], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline, served = time.monotonic() + timeout, False
    while not served and proc.poll() is None and time.monotonic() < deadline:
        urls = [m.group(0) for line in list(lines) for m in _URL.finditer(line)]
        served = bool(urls) and _answers(urls[0])
        time.sleep(1)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=10)
    printed = "".join(lines)
    status = proc.returncode if served else f"never served its URL ({proc.returncode})"
    return subprocess.CompletedProcess(text, status, printed)


@pytest.mark.slow
def test_readme_runs_as_a_script(tmp_path: Path) -> None:
    repo = sandbox(tmp_path)
    env = environment(repo)
    ran = 0
    for cmd in COMMANDS:
        if cmd.needs or cmd.text in SELF:
            continue
        proc = run_server(cmd, repo, env) if cmd.serves else run_command(cmd, repo, env)
        printed = proc.stdout
        where = f"README.md:{cmd.line}: {cmd.text[:100]!r}"
        assert proc.returncode == 0, f"{where} exited {proc.returncode}:\n{printed[-4000:]}"
        if cmd.shows:
            missing = unshown_lines(cmd.shows, printed)
            assert not missing, f"{where}: README shows lines it did not print: {missing}\n--- printed:\n{printed[-4000:]}"
        ran += 1
    assert ran >= 5
