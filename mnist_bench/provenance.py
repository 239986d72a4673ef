"""Where and with what a result was produced: versions, commit, CPU, GPU, threads, oneDNN.

Every file in `results/` and every run's `metrics.json` carries this record. The
`machine_fingerprint` names what makes float results bit-reproducible: whether TensorFlow's
oneDNN kernels run at all, and which ones they pick by CPU model, instruction set and thread
count; so weights digests are compared only between runs whose fingerprints match
(`fingerprints_match`).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__, _tfenv

# Fingerprints recorded before the oneDNN field existed ran with TensorFlow 2.21's default:
# oneDNN on exactly on x86 CPUs with one of these (AVX-512 VNNI/BF16, AMX).
_ONEDNN_DEFAULT_ISA = ("avx512_vnni", "avx512_bf16", "amx_tile")
_ONEDNN_FIELD = "onednn "
_THREADS_FIELD = "threads "
# Instruction-set extensions that change which oneDNN kernels run, hence the float round-off.
_ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "asimd")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def cpu_description() -> dict[str, Any]:
    """CPU model, vendor/family/model/stepping, relevant ISA flags and logical CPU count."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {
        "model_name": info.get("model name") or platform.processor() or platform.machine(),
        "vendor_family_model_stepping": "/".join(
            info.get(k, "?") for k in ("vendor_id", "cpu family", "model", "stepping")
        ),
        "isa": sorted(flags.intersection(_ISA_FLAGS)),
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def cpu_text(cpu: dict[str, Any]) -> str:
    """E.g. "Intel(R) Xeon(R) Processor (AVX-512, 2 CPUs)"."""
    isa = "AVX-512, " if "avx512f" in cpu.get("isa", []) else ""
    return f"{cpu['model_name']} ({isa}{cpu['affinity_cpus']} CPUs)"


def cpu_label(cpu: Mapping[str, Any], more: str = "") -> str:
    """E.g. ``"AMD EPYC (family 25 model 17)"``: the model name alone does not tell an AMD
    Zen 3 from a Zen 4, whose kernels (and times) differ. `more` goes inside the brackets,
    after the model: ``more=", 2 CPUs"`` gives ``"AMD EPYC (family 25 model 17, 2 CPUs)"``."""
    parts = (cpu.get("vendor_family_model_stepping") or "?/?/?/?").split("/")
    family, model = [*parts, "?", "?"][1:3]
    return f"{cpu['model_name']} (family {family} model {model}{more})"


def device_text(provenance: Mapping[str, Any]) -> str:
    """Where a run trained, from its provenance: its GPUs, else "CPU model (family F model M,
    N CPUs)" (`cpu_label`; the model name alone does not tell an AMD Zen 3 from a Zen 4)."""
    cpu = provenance["cpu"]
    return ", ".join(provenance.get("gpus") or []) or cpu_label(
        cpu, more=f", {cpu.get('affinity_cpus') or cpu.get('logical_cpus')} CPUs"
    )


def machine_fingerprint() -> str:
    """A one-line identity of the floating-point environment: CPU, ISA, threads, GPUs, TF
    version and whether oneDNN is on, e.g. ``"... | tf 2.21.0 | onednn on"``; a last field
    ``threads ...`` names TensorFlow's or OpenMP's thread variables when any is set
    (`_tfenv.thread_settings`).

    Two runs with matching fingerprints and equal configs produce bit-identical weights.
    """
    import tensorflow as tf

    cpu = cpu_description()
    gpus = gpu_names()
    fields = [
        cpu["model_name"],
        cpu["vendor_family_model_stepping"],
        ",".join(cpu["isa"]) or "no-simd-flags",
        f"{cpu['affinity_cpus'] or cpu['logical_cpus']} cpus",
        f"gpu: {', '.join(gpus) or 'none'}",
        f"tf {tf.__version__}",
        _ONEDNN_FIELD + {True: "on", False: "off", None: "unknown"}[_tfenv.onednn_enabled()],
    ]
    threads = _tfenv.thread_settings()
    return " | ".join(fields + ([f"{_THREADS_FIELD}{threads}"] if threads else []))


def _with_onednn(fingerprint: str) -> str:
    """`fingerprint` with its oneDNN field; one recorded before the field existed gets the
    setting TensorFlow 2.21 chose by default from the ISA list in it."""
    fields = fingerprint.split(" | ")
    if any(field.startswith(_ONEDNN_FIELD) for field in fields):
        return fingerprint
    isa = fields[2].split(",") if len(fields) > 2 else []
    on = any(flag in isa for flag in _ONEDNN_DEFAULT_ISA)
    return f"{fingerprint} | {_ONEDNN_FIELD}{'on' if on else 'off'}"


def fingerprints_match(recorded: str, current: str | None = None) -> bool:
    """Whether a recorded `machine_fingerprint` names the same floating-point environment as
    `current` (default: this process's). Fingerprints recorded before the oneDNN field
    existed count with TensorFlow's default setting for their CPU."""
    return _with_onednn(recorded) == _with_onednn(current or machine_fingerprint())


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow sees, e.g. ["NVIDIA H100 80GB HBM3"]; [] on CPU."""
    import tensorflow as tf

    names = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        names.append(str(details.get("device_name", device.name)))
    return names


def git_commit(path: str | Path | None = None) -> dict[str, Any] | None:
    """The commit of the checkout holding `path` (default: this package), and whether the tree
    has uncommitted changes outside ``results/``; None when it is not a git checkout (an
    installed wheel)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            # results/ is what the package writes, not what produced it: a run recorded
            # there must not mark the next run's code as modified.
            [
                "git",
                "-C",
                str(where),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":(top,exclude)results",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status)}


def provenance() -> dict[str, Any]:
    """Everything needed to say where a result came from (JSON-serialisable)."""
    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "mnist_bench": __version__,
        "git": git_commit(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_description(),
        "gpus": gpu_names(),
        "tf_threads": {
            # 0 means "TensorFlow's default": one thread per logical CPU.
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "onednn": {
            "enabled": _tfenv.onednn_enabled(),  # what TensorFlow runs, asked of TensorFlow
            _tfenv.ONEDNN_ENV: os.environ.get(_tfenv.ONEDNN_ENV),
            "set_by": _tfenv.onednn_source(),
        },
        "machine_fingerprint": machine_fingerprint(),
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
