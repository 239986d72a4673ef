"""oneDNN on every x86 CPU (`mnist_bench._tfenv`), and the setting in the machine fingerprint."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mnist_bench import _tfenv
from mnist_bench.provenance import fingerprints_match, machine_fingerprint, provenance

ZEN3 = "AMD EPYC | AuthenticAMD/25/1/1 | avx,avx2,fma | 2 cpus | gpu: none | tf 2.21.0"
ZEN4 = (
    "AMD EPYC | AuthenticAMD/25/17/1 | avx,avx2,avx512_bf16,avx512_vnni,avx512f,fma | 2 cpus"
    " | gpu: none | tf 2.21.0"
)


@pytest.fixture(autouse=True)
def _keep_import_state():
    """`configure` records who chose the setting; the session's record must survive."""
    saved = dict(_tfenv._state)
    yield
    _tfenv._state.update(saved)


def test_configure_turns_onednn_on_for_x86_and_quiets_logging():
    env: dict[str, str] = {}
    assert _tfenv.configure(env, tf_imported=False, machine="x86_64") is None
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    assert _tfenv.onednn_source() == "mnist_bench (TF_ENABLE_ONEDNN_OPTS=1 on x86)"


@pytest.mark.parametrize(
    ("env", "machine", "onednn"),
    [
        ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "x86_64", "0"),  # the user's choice wins
        ({"MNIST_BENCH_ONEDNN": "0"}, "x86_64", None),  # opt-out: TensorFlow's default
        ({}, "aarch64", None),  # not x86: left to TensorFlow
    ],
    ids=["user-off", "opt-out", "arm"],
)
def test_configure_respects_the_user_and_other_cpus(env, machine, onednn):
    env = {**env, "TF_CPP_MIN_LOG_LEVEL": "0"}
    assert _tfenv.configure(env, tf_imported=False, machine=machine) is None
    assert env.get("TF_ENABLE_ONEDNN_OPTS") == onednn
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "0"  # never overrides the user's level


def test_configure_says_so_when_tensorflow_came_first():
    env: dict[str, str] = {}
    message = _tfenv.configure(env, tf_imported=True, machine="x86_64")
    assert message is not None and "imported before mnist_bench" in message
    assert env == {}  # too late: nothing set that would pretend otherwise
    assert "imported first" in _tfenv.onednn_source()


def test_this_process_runs_with_onednn_as_configured():
    # conftest imported mnist_bench before TensorFlow, so its setting is the one in force
    expected = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    prov = provenance()["onednn"]
    assert prov["TF_ENABLE_ONEDNN_OPTS"] == expected
    if expected in ("0", "1"):
        assert prov["enabled"] is (expected == "1")
        assert machine_fingerprint().endswith(f"| onednn {'on' if expected == '1' else 'off'}")


def test_the_onednn_setting_changes_the_fingerprint():
    flipped = "0" if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") == "1" else "1"
    code = "import mnist_bench as m; print(m.machine_fingerprint())"
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": flipped}
    other = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    here = machine_fingerprint()
    assert other.endswith(f"| onednn {'on' if flipped == '1' else 'off'}")
    assert other != here and not fingerprints_match(other, here)
    assert other.rsplit(" | ", 1)[0] == here.rsplit(" | ", 1)[0]  # only the oneDNN field


def test_fingerprints_from_before_the_onednn_field_hold_tensorflows_default():
    assert fingerprints_match(ZEN3, ZEN3 + " | onednn off")
    assert not fingerprints_match(ZEN3, ZEN3 + " | onednn on")
    assert fingerprints_match(ZEN4, ZEN4 + " | onednn on")
    assert not fingerprints_match(ZEN4, ZEN4 + " | onednn off")
    assert not fingerprints_match(ZEN3, ZEN4)
