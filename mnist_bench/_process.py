"""Run a command of this package in a fresh Python process, its output captured.

TensorFlow reads its kernel and thread settings once, at import: a check under other
settings (`variants`) or a smoke test against other installed versions (`compat`) needs a
process of its own. One runner for both, so a timeout reads the same everywhere.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

KILLED = -9  # the return code reported for a process killed at its timeout


def cli_argv(*args: str) -> list[str]:
    """``python -m mnist_bench.cli *args`` with this interpreter: the argv of one command."""
    return [sys.executable, "-m", "mnist_bench.cli", *args]


def run_process(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> tuple[int, str, float]:
    """Run `argv` with no stdin, stdout and stderr captured together.

    Returns (return code, output, seconds); a process still running after `timeout` seconds
    is killed, and reported as (`KILLED`, "killed after N s", seconds).
    """
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            preexec_fn=preexec_fn,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        code, output = KILLED, f"killed after {timeout:.0f} s"
    return code, output, time.perf_counter() - start
