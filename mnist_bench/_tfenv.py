"""TensorFlow's import-time settings: oneDNN on every x86 CPU, and a quiet start-up.

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` and ``TF_CPP_MIN_LOG_LEVEL`` once, when it is first
imported. TensorFlow 2.21 turns its oneDNN kernels on by itself only on x86 CPUs with
AVX-512 VNNI/BF16 or AMX; on an AVX2 CPU (AMD Zen 3, most laptops) it runs its Eigen kernels,
1.5-2.3x slower for these networks (issue 14). `configure` therefore sets
``TF_ENABLE_ONEDNN_OPTS=1`` on every x86 CPU, and ``TF_CPP_MIN_LOG_LEVEL=2`` (warnings and
info off), unless the user set them. It runs when `mnist_bench` is imported, i.e. before any
of its modules imports TensorFlow; the CLI, the tests' conftest and the notebook import
`mnist_bench` first. (``TF_CPP_MIN_LOG_LEVEL`` set in-process does not silence the lines
TensorFlow's C++ runtime writes while it loads, measured with TensorFlow 2.21; only a value
set before Python starts does. `start_tensorflow` filters them: the CLI and the tests' and
notebooks' conftest import TensorFlow through it.)

Opt out with ``MNIST_BENCH_ONEDNN=0`` (TensorFlow's own default then applies) or choose
directly with ``TF_ENABLE_ONEDNN_OPTS=0``/``1``, which is always respected. This module is the
one place outside the CLI that reads environment variables: they must be set before
TensorFlow is imported, which no caller can do later.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
from collections.abc import MutableMapping

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"  # TensorFlow's own switch: "0" off, "1" on
OPT_OUT_ENV = "MNIST_BENCH_ONEDNN"  # "0": leave TF_ENABLE_ONEDNN_OPTS to TensorFlow's default
LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LOG_LEVEL = "2"  # C++ INFO and WARNING off; errors still show
_X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")

# Lines TensorFlow's C++ runtime writes straight to file descriptor 2 while it starts, before
# (and regardless of) TF_CPP_MIN_LOG_LEVEL: CUDA stubs on a CPU-only machine, oneDNN and CPU
# feature notices. Noise to a user, and they break exact comparisons of output.
TF_NOISE = re.compile(
    r"absl::InitializeLog|cudart_stub|cuda_platform|cuda_executor|cuInit|cpu_feature_guard"
    r"|oneDNN custom operations|computation placer|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|TensorFlow binary is optimized|rebuild TensorFlow with the appropriate compiler flags"
)

# What `configure` did, for provenance: who chose TF_ENABLE_ONEDNN_OPTS.
_state: dict[str, str | None] = {"onednn_source": None}


def _is_x86(machine: str | None = None) -> bool:
    return (machine if machine is not None else platform.machine()).lower() in _X86_MACHINES


def configure(
    environ: MutableMapping[str, str] | None = None,
    *,
    tf_imported: bool | None = None,
    machine: str | None = None,
) -> str | None:
    """Set TensorFlow's import-time variables in `environ` (default ``os.environ``).

    Parameters
    ----------
    environ : mapping, optional
        The environment to update; ``os.environ`` when None.
    tf_imported : bool, optional
        Whether TensorFlow is imported already (default: looked up in ``sys.modules``).
    machine : str, optional
        ``platform.machine()`` to assume (tests).

    Returns
    -------
    str or None
        A one-line message when oneDNN should have been turned on but TensorFlow was imported
        first (the caller shows it once); None otherwise.
    """
    env = os.environ if environ is None else environ
    imported = "tensorflow" in sys.modules if tf_imported is None else tf_imported
    if env.get(ONEDNN_ENV, "") != "":
        _state["onednn_source"] = f"user ({ONEDNN_ENV}={env[ONEDNN_ENV]})"
    elif env.get(OPT_OUT_ENV) == "0":
        _state["onednn_source"] = f"TensorFlow's default ({OPT_OUT_ENV}=0)"
    elif not _is_x86(machine):
        _state["onednn_source"] = "TensorFlow's default (not an x86 CPU)"
    elif imported:
        _state["onednn_source"] = "TensorFlow's default (TensorFlow was imported first)"
        return (
            "mnist_bench: TensorFlow was imported before mnist_bench, so oneDNN stays at "
            f"TensorFlow's default; import mnist_bench first or set {ONEDNN_ENV}=1"
        )
    else:
        env[ONEDNN_ENV] = "1"
        _state["onednn_source"] = f"mnist_bench ({ONEDNN_ENV}=1 on x86)"
    if not imported:
        env.setdefault(LOG_LEVEL_ENV, QUIET_LOG_LEVEL)
    return None


def onednn_source() -> str | None:
    """Who chose the oneDNN setting at import, as `configure` found it; None before it ran."""
    return _state["onednn_source"]


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN kernels in this process (imports TensorFlow).
    None when this TensorFlow cannot say."""
    import tensorflow  # noqa: F401 (the query below needs TensorFlow initialised)

    try:
        from tensorflow.python.util import _pywrap_util_port  # no public query exists

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # pragma: no cover - depends on TensorFlow
        return None


# Thread settings TensorFlow (and oneDNN's OpenMP) read at start-up: they change how sums are
# split over threads, hence the float round-off, so the machine fingerprint names them.
THREAD_ENVS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def thread_settings(environ: MutableMapping[str, str] | None = None) -> str | None:
    """The thread variables of `THREAD_ENVS` that are set, e.g.
    ``"TF_NUM_INTRAOP_THREADS=1"``; None when none is (TensorFlow's default: one thread per
    CPU this process may run on)."""
    env = os.environ if environ is None else environ
    set_ = [f"{name}={env[name]}" for name in THREAD_ENVS if env.get(name, "") != ""]
    return ",".join(set_) or None


def start_tensorflow() -> list[str]:
    """Import TensorFlow and initialise its devices with its start-up chatter filtered out.

    File descriptor 2 points at a temporary file meanwhile. Returns the captured lines that
    are not known noise (`TF_NOISE`), for the caller to show: real errors still reach the
    user. Returns [] when TensorFlow was imported already.
    """
    if "tensorflow" in sys.modules:
        return []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device initialisation prints too
            # Keras warns through absl on every HDF5 save, but the seed's .h5 file is intended;
            # TensorFlow's Python logger warns of retracing whenever a new model trains.
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
            tf.get_logger().setLevel("ERROR")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines()
    return [line for line in lines if line.strip() and not TF_NOISE.search(line)]
