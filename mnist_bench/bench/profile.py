"""Where the training time goes: TensorFlow's profiler, op time summed by op type."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from .core import Workload, _timed
from .workloads import train_workload


def _op_seconds(trace_dir: Path) -> dict[str, float]:
    """Seconds per TensorFlow op type in a profiler trace: the op events of TensorFlow's
    compute threads (named ``<op name>:<op type>``), summed over threads, so the total can
    exceed the wall time by up to the thread count. Container events (executor steps,
    ParallelFor shards, ``ExecutorState::Process``) are left out: they hold the ops, and would
    count them twice. An op event is ``name:Type`` with one colon; containers use ``::``."""
    try:  # TensorFlow's own copy of the profiler's protobuf; no extra package needed
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError as exc:  # pragma: no cover - depends on the TensorFlow build
        raise RuntimeError(f"this TensorFlow cannot read profiler traces: {exc}") from exc
    seconds: dict[str, float] = {}
    for path in trace_dir.rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            names = {key: meta.name for key, meta in plane.event_metadata.items()}
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):
                    continue
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    if ":" in name and "::" not in name:
                        op = name.rsplit(":", 1)[1]
                        seconds[op] = seconds.get(op, 0.0) + event.duration_ps / 1e12
    return seconds


def profile_training(
    model_name: str = "reference",
    *,
    steps: int = 8,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    device: str | None = None,
    top: int = 8,
    workload: Workload | None = None,
) -> dict[str, Any]:
    """Where the training time of `model_name` goes, by TensorFlow op type: one epoch slice
    of `steps` batches through the package's pipeline (as `train` runs it) under TensorFlow's
    profiler, after an untraced warm-up. Given `workload` (that training, already run at
    least once, e.g. by the benchmark that just timed it), that one is profiled instead, and
    neither built nor traced again.

    Returns
    -------
    dict
        ``model``, ``images``, ``wall_seconds`` (the traced fit), ``op_seconds`` (all op
        types, summed over compute threads), and ``top``: the `top` op types by time, each
        ``{"op", "seconds", "share"}`` with share = its fraction of all op time, then one
        ``"other"`` entry for the rest.
    """
    if workload is None:
        workload = train_workload(
            model_name, steps=steps, pipeline="mnist_bench", images=images, labels=labels,
            device=device,
        )  # fmt: skip
        workload.run()  # warm-up: tracing is not training time
    with tempfile.TemporaryDirectory(prefix="mnist-bench-trace-") as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        try:
            [wall] = _timed(workload.run, 1)
        finally:
            tf.profiler.experimental.stop()
        op_seconds = _op_seconds(Path(trace_dir))
    total = sum(op_seconds.values()) or 1.0
    ranked = sorted(op_seconds.items(), key=lambda kv: -kv[1])
    rows = [{"op": op, "seconds": sec, "share": sec / total} for op, sec in ranked[:top]]
    rest = sum(sec for _, sec in ranked[top:])
    rows.append({"op": "other", "seconds": rest, "share": rest / total})
    return {
        "model": model_name,
        "images": workload.images,
        "wall_seconds": wall,
        "op_seconds": op_seconds,
        "top": rows,
        "device": workload.device,
    }


def format_profile(profile: dict[str, Any]) -> str:
    """The `profile_training` result as lines: op type, seconds, share of all op time."""
    lines = [
        f"where training time goes, {profile['model']} ({profile['images']} images, "
        f"{profile['wall_seconds']:.2f} s wall; op time summed over compute threads):"
    ]
    lines += [f"  {r['op']:<28} {r['seconds']:>8.3f} s {r['share']:>7.1%}" for r in profile["top"]]
    return "\n".join(lines)
