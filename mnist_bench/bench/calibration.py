"""Calibration: the machine's practical dense float32 peak, from NumPy's and TensorFlow's matmul."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ..provenance import gpu_names
from .core import _check_choice, _on, _on_gpu, _timed, device_name

MATMUL_LIBRARIES = ("numpy", "tf")
GPU_MATMUL_CHAIN = 50  # matmuls queued per sync on a GPU, where one 2048^3 product is ~0.1 ms


def matmul_call(
    n: int = 2048, *, library: str = "numpy", device: str | None = None
) -> tuple[Callable[[], Any], int]:
    """A call computing float32 n x n matmuls, returning once they are done, and its FLOPs.

    ``library="numpy"``: one product, ``a @ b``. ``library="tf"``: `tf.matmul` on `device`
    (default placement when None), synced with the host by ``.numpy()`` of one element, so
    no copy of the product is timed; on a GPU `GPU_MATMUL_CHAIN` products are queued per
    sync, since one launch and sync would outlast the product itself. Each product costs
    2 n^3 FLOPs (n^3 multiply-adds). Inputs are drawn once, from a local generator.
    """
    _check_choice("library", library, MATMUL_LIBRARIES)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    if library == "numpy":
        return (lambda: a @ b), 2 * n**3
    with _on(device):
        ta, tb = tf.constant(a), tf.constant(b)
    products = GPU_MATMUL_CHAIN if "GPU" in ta.device else 1

    def call() -> Any:
        with _on(device):
            corners = [tf.matmul(ta, tb)[0, 0] for _ in range(products)]
            return tf.add_n(corners).numpy()

    return call, products * 2 * n**3


def _best_gflops(fn: Callable[[], Any], flops: int, repeats: int) -> float:
    fn()  # warm-up: thread pools, kernel selection, first allocation
    return flops / min(_timed(fn, repeats)) / 1e9


def matmul_peak(n: int = 2048, *, repeats: int = 5, device: str | None = None) -> dict[str, Any]:
    """The machine's practical dense float32 peak: the best of NumPy and `tf.matmul`.

    Parameters
    ----------
    n : int, default 2048
        Side of the square matrices; 2 n^3 FLOPs per product.
    repeats : int, default 5
        Timed products per library after one warm-up; the fastest counts.
    device : str, optional
        TensorFlow device for `tf.matmul` (default placement when None). NumPy runs on the CPU.

    Returns
    -------
    dict
        ``numpy_gflops``, ``tf_gflops``, ``peak_gflops`` (their max), ``peak_source``, ``n``,
        ``repeats``, ``device`` (name of the TensorFlow device) and ``tf32`` (whether
        TensorFloat-32 may round float32 matmuls on the GPU; None on a CPU).
    """
    numpy_gflops = _best_gflops(*matmul_call(n, library="numpy"), repeats)
    tf_gflops = _best_gflops(*matmul_call(n, library="tf", device=device), repeats)
    return {
        "n": n,
        "repeats": repeats,
        "numpy_gflops": numpy_gflops,
        "tf_gflops": tf_gflops,
        "peak_gflops": max(numpy_gflops, tf_gflops),
        "peak_source": "numpy" if numpy_gflops >= tf_gflops else "tf.matmul",
        "device": device_name(device),
        "tf32": (  # None on a CPU, where TensorFloat-32 does not exist
            bool(tf.config.experimental.tensor_float_32_execution_enabled())
            if _on_gpu(device, gpu_names())
            else None
        ),
    }
