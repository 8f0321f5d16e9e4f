"""Scoring a code reply by running it: the reply's Python, then the item's asserts, in a child
process with a wall-clock timeout, CPU, memory, file-size and open-file limits, an empty temporary
working directory, no environment, `-I` isolated mode, and sockets disabled.

The child is a plain interpreter, not a jail: the limits stop accidents (a loop that never ends, a
list that eats the memory), not a determined attacker. Run only replies of models you would run.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from alignkit.helpfulness.items import HelpfulnessItem

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)

_PRELUDE = """\
import socket as _socket


def _no_network(*args, **kwargs):
    raise OSError("network is disabled while scoring")


_socket.socket = _no_network
_socket.create_connection = _no_network
_socket.getaddrinfo = _no_network
del _socket, _no_network
"""


@dataclass
class CodeRun:
    passed: bool
    reason: str
    """`passed`, `no code`, `timeout`, or the last line of the error the asserts raised."""


def extract_code(reply: str, entry: str) -> str | None:
    """The reply's Python that defines `entry`: the first fenced block that does, else the reply from
    its `def entry(` line on, cut back line by line until it parses. None when there is none."""
    defines = re.compile(rf"^\s*def\s+{re.escape(entry)}\s*\(", re.MULTILINE)
    for block in _FENCE.findall(reply):
        if defines.search(block):
            return str(block)
    m = defines.search(reply)
    if m is None:
        return None
    lines = reply[m.start() :].splitlines()
    indent = len(lines[0]) - len(lines[0].lstrip())
    lines = [ln[indent:] if ln[:indent].strip() == "" else ln for ln in lines]
    while lines:
        source = "\n".join(lines)
        try:
            ast.parse(source)
            return source
        except SyntaxError:
            lines.pop()
    return None


def _limits(cpu_seconds: int, memory_bytes: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_code(source: str, tests: tuple[str, ...] | list[str], *, timeout: float = 5.0, memory_mb: int = 512) -> CodeRun:
    """Run `source` then `tests` in a limited child process; passed when it exits 0 in time."""
    program = _PRELUDE + "\n" + source + "\n\n" + "\n".join(tests) + "\n"
    with tempfile.TemporaryDirectory(prefix="alignkit-code-") as tmp:
        path = Path(tmp) / "answer.py"
        path.write_text(program)
        cpu = max(1, int(timeout) + 1)
        preexec = None if sys.platform == "win32" else (lambda: _limits(cpu, memory_mb << 20))
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(path)],
            cwd=tmp,
            env={},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=preexec,
            start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return CodeRun(False, "timeout")
    if proc.returncode == 0:
        return CodeRun(True, "passed")
    lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
    return CodeRun(False, lines[-1][:200] if lines else f"exit status {proc.returncode}")


def score_code(item: HelpfulnessItem, reply: str, *, timeout: float = 5.0) -> CodeRun:
    assert item.entry is not None
    source = extract_code(reply, item.entry)
    if source is None:
        return CodeRun(False, "no code")
    return run_code(source, item.tests, timeout=timeout)
