"""Kernel and thread variants of one machine: a cheap stand-in for another machine's rounding.

Another CPU, thread count or kernel library sums the same float32 terms in another order, so
a check that holds only where it was written fails on a user's machine. One machine can
produce several such orders itself: TensorFlow's oneDNN kernels on and off, one thread or
all of them, and the GPU against the CPU where there is one. `run_variant` runs a command
(``mnist-bench reproduce --check``) in a fresh process under one of them, since TensorFlow
reads these settings once, at import.

    for name in available_variants(has_gpu=False):
        result = run_variant(name, ["reproduce", "--check"])
        print(name, result.returncode, result.fingerprint)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._process import cli_argv, run_process

# Printed first by `mnist-bench reproduce --check`; read back from each variant's output.
FINGERPRINT_LINE = re.compile(r"^this machine: (.*)$", re.MULTILINE)
_ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Variant:
    """One setting of the kernels and threads: environment overrides, and whether the
    process runs on one CPU only (Linux: its affinity, which TensorFlow sizes its thread
    pools by) and whether it needs a GPU."""

    description: str
    env: dict[str, str] = field(default_factory=dict)
    one_cpu: bool = False
    needs_gpu: bool = False


VARIANTS: dict[str, Variant] = {
    "default": Variant("the package's default: oneDNN on (x86), every CPU, the GPU if any"),
    "onednn-off": Variant("TensorFlow's Eigen kernels", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "one-thread": Variant("oneDNN on, one CPU and one thread", dict(_ONE_THREAD), one_cpu=True),
    "cpu-only": Variant("the GPU hidden", {"CUDA_VISIBLE_DEVICES": ""}, needs_gpu=True),
}


@dataclass(frozen=True)
class VariantResult:
    """What one variant's run gave: its exit code, the machine fingerprint it printed (None if
    none), its wall seconds and its whole output (stdout then stderr)."""

    name: str
    returncode: int
    fingerprint: str | None
    seconds: float
    output: str


def available_variants(*, has_gpu: bool) -> list[str]:
    """The names of `VARIANTS` this machine can run (``cpu-only`` needs a GPU to hide)."""
    return [name for name, v in VARIANTS.items() if has_gpu or not v.needs_gpu]


def _pin_to_one_cpu() -> Callable[[], None] | None:
    if not hasattr(os, "sched_setaffinity"):
        return None  # not Linux: the thread variables alone
    first = min(os.sched_getaffinity(0))
    return lambda: os.sched_setaffinity(0, {first})


def run_variant(name: str, argv: Sequence[str], *, timeout: float = 600.0) -> VariantResult:
    """Run ``python -m mnist_bench.cli *argv`` in a fresh process under variant `name`.

    Parameters
    ----------
    name : str
        A key of `VARIANTS`.
    argv : sequence of str
        The command's arguments, e.g. ``["reproduce", "--check"]``.
    timeout : float, default=600
        Seconds before the process is killed (then returncode is -9).

    Returns
    -------
    VariantResult
    """
    if name not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {name!r}")
    variant = VARIANTS[name]
    # only sched_setaffinity runs in the forked child: safe before exec
    preexec = _pin_to_one_cpu() if variant.one_cpu else None
    code, output, seconds = run_process(
        cli_argv(*argv), env={**os.environ, **variant.env}, preexec_fn=preexec, timeout=timeout
    )
    match = FINGERPRINT_LINE.search(output)
    return VariantResult(name, code, match.group(1) if match else None, seconds, output)
