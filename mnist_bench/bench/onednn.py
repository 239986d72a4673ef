"""Training with TensorFlow's oneDNN kernels on against off, measured side by side in one run.

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, at import, so each setting needs its own
process. `compare_onednn` starts one worker process per setting (``python -m
mnist_bench.bench.onednn``), has each build and warm up the same training workload (the
package's pipeline, op determinism on: what `train` runs), then asks them for one timed fit
at a time in alternating turns (on off, off on, ...), exactly as `core._timed_together` does
in one process. Both workers stay alive, so TensorFlow is imported twice, not per fit.

Protocol: one JSON object per line. The parent sends ``{"model", "steps", "data_dir"}`` (set
up and warm up), then ``"time"`` per timed fit, then ``"quit"``; the worker answers
``{"images", "flops_per_image", "device", "onednn"}`` after set-up and ``{"seconds"}`` per
fit, or ``{"error"}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import IO, Any

from .._tfenv import LOG_LEVEL_ENV, ONEDNN_ENV, QUIET_LOG_LEVEL
from .core import Workload, entry

SETTINGS = ("1", "0")  # TF_ENABLE_ONEDNN_OPTS of the two workers: on, off
WORKER_TIMEOUT_S = 600  # one answer; a worker that hangs longer is killed


class _Worker:
    """One worker process with `TF_ENABLE_ONEDNN_OPTS=setting`."""

    def __init__(self, setting: str) -> None:
        env = {**os.environ, ONEDNN_ENV: setting, LOG_LEVEL_ENV: QUIET_LOG_LEVEL}
        self.setting = setting
        self.sent_setup: dict[str, Any] | None = None  # a set-up sent, not yet answered
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mnist_bench.bench.onednn"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            text=True,
        )

    def ask(self, message: Any) -> dict[str, Any]:
        self.send(message)
        return self.answer()

    def send(self, message: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        answer = json.loads(line) if line else {"error": "the worker exited"}
        if "error" in answer:
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(
                f"oneDNN worker ({ONEDNN_ENV}={self.setting}): {answer['error']}"
                + ("".join(f"\n  {t}" for t in tail) if tail else "")
            )
        return answer

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write('"quit"\n')
                self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.stderr.close()


def _record(model: str, setting: str, setup: dict, seconds: list[float], peak: float | None):
    on = setting == "1"
    workload = Workload(
        f"train/{model}/onednn-{'on' if on else 'off'}",
        lambda: None,
        setup["images"],
        setup["flops_per_image"],
        setup["device"],
        {
            "model": model,
            "pipeline": "mnist_bench",
            "op_determinism": True,
            ONEDNN_ENV: setting,
            "onednn": setup["onednn"],  # what TensorFlow reported in that process
            "process": "own",
        },
    )
    return entry(workload, seconds, peak_gflops=peak)


def _setup(model: str, steps: int, data_dir: str | None) -> dict[str, Any]:
    return {"model": model, "steps": steps, "data_dir": data_dir}


def start_workers(
    first_model: str | None = None, *, steps: int = 1, data_dir: str | None = None
) -> list[_Worker]:
    """One worker process per setting of `SETTINGS`, importing TensorFlow from now on and,
    given `first_model`, setting it up and warming it up next; hand them to
    `compare_onednn` (which closes them). Started early, their start-up overlaps other
    work: `run_benchmarks` does so in a quick run, whose timings are no results."""
    workers = [_Worker(s) for s in SETTINGS]
    if first_model is not None:
        for worker in workers:
            worker.sent_setup = _setup(first_model, steps, data_dir)
            worker.send(worker.sent_setup)
    return workers


def compare_onednn(
    models: Sequence[str],
    *,
    steps: int,
    repeats: int,
    data_dir: str | None = None,
    peak_gflops: float | None = None,
    workers: list[_Worker] | None = None,
) -> list[dict[str, Any]]:
    """Training images/s of each of `models` with oneDNN on and off, timed in turns.

    Parameters
    ----------
    models : sequence of str
        Model names (``"seed"``, ``"reference"``).
    steps : int
        Batches of 256 per timed fit.
    repeats : int
        Timed fits per setting, after one untimed warm-up fit each; the median counts.
    data_dir : str, optional
        MNIST folder for the training images (`load_mnist`'s search order when None).
    peak_gflops : float, optional
        The machine's peak, for ``peak_fraction``.
    workers : list, optional
        Workers from `start_workers`, started earlier; default: started now. Closed on return.

    Returns
    -------
    list of dict
        `entry` records named ``train/<model>/onednn-on`` and ``.../onednn-off``, with
        ``onednn`` (whether TensorFlow ran oneDNN in that process) and
        ``TF_ENABLE_ONEDNN_OPTS``.
    """
    records = []
    workers = start_workers() if workers is None else workers
    try:
        for model in models:
            for worker in workers:  # set-up and warm-up are untimed: both at once
                if worker.sent_setup != _setup(model, steps, data_dir):
                    worker.send(_setup(model, steps, data_dir))
                worker.sent_setup = None
            setups = [w.answer() for w in workers]
            seconds: list[list[float]] = [[] for _ in workers]
            for round_ in range(repeats):
                order = range(len(workers)) if round_ % 2 == 0 else reversed(range(len(workers)))
                for i in order:
                    seconds[i].append(workers[i].ask("time")["seconds"])
            for worker, setup, secs in zip(workers, setups, seconds, strict=True):
                records.append(_record(model, worker.setting, setup, secs, peak_gflops))
    finally:
        for worker in workers:
            worker.close()
    return records


def _serve(stdin: IO[str], stdout: IO[str]) -> None:
    """The worker's loop (see the module docstring). Imports TensorFlow only here."""
    from .._tfenv import onednn_enabled
    from ..data import load_mnist
    from .core import _timed
    from .workloads import train_workload

    workload = None
    for line in stdin:
        message = json.loads(line)
        try:
            if message == "quit":
                return
            if message == "time":
                if workload is None:
                    raise ValueError("'time' before a set-up")
                answer: dict[str, Any] = {"seconds": _timed(workload.run, 1)[0]}
            else:
                data = load_mnist(message["data_dir"], download=False)
                workload = train_workload(
                    message["model"], steps=message["steps"], pipeline="mnist_bench",
                    images=data.x_train, labels=data.y_train, determinism=True,
                )  # fmt: skip
                workload.run()  # warm-up: tracing, first batches
                answer = {
                    "images": workload.images,
                    "flops_per_image": workload.flops_per_image,
                    "device": workload.device,
                    "onednn": onednn_enabled(),
                }
        except Exception as exc:  # reported to the parent, which raises it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


if __name__ == "__main__":
    _protocol, sys.stdout = sys.stdout, sys.stderr  # a stray print must not break the protocol
    _serve(sys.stdin, _protocol)
