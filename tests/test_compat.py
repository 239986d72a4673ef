"""The version matrix (`mnist_bench.compat`, `mnist-bench compat`, tox envs tf-min/mid/latest)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import tomllib

from mnist_bench.cli import main
from mnist_bench.compat import COMPAT_DIR, ONE_EPOCH_THRESHOLD, STEPS, compat_table, versions

ROOT = Path(__file__).resolve().parents[1]


def _record(tf: str, numpy: str, passed: bool = True, seconds: float = 60.4) -> dict:
    step = {"passed": passed, "seconds": seconds, "detail": "", "command": ""}
    steps = {name: dict(step) for name in STEPS}
    return {
        "versions": {"python": "3.11.7", "tensorflow": tf, "keras": "3.15.1", "numpy": numpy},
        "steps": steps,
        "passed": passed,
        "provenance": {"cpu": {"model_name": "AMD EPYC"}},
    }


def test_versions_names_the_installed_stack():
    v = versions()
    assert v["python"].count(".") == 2 and v["tensorflow"] and v["keras"] and v["numpy"]


def test_table_has_a_row_per_environment_and_marks_failures(tmp_path):
    from mnist_bench._io import write_json

    write_json(tmp_path / COMPAT_DIR / "tf-min.json", _record("2.16.2", "1.26.4", passed=False))
    write_json(tmp_path / COMPAT_DIR / "tf-latest.json", _record("2.21.0", "2.4.6", seconds=75.0))
    table = compat_table(tmp_path).splitlines()
    assert table[0].startswith("| environment | TensorFlow | Keras | numpy | Python |")
    assert "**failed**" in table[2]  # the oldest TensorFlow first
    passed = " | ".join(["passed"] * len(STEPS))
    assert table[3] == f"| `tf-latest` | 2.21.0 | 3.15.1 | 2.4.6 | 3.11.7 | {passed} |"
    assert "on AMD EPYC (family ? model ?)" in table[-1]
    assert f">= {ONE_EPOCH_THRESHOLD:.1%}" in table[-1]
    assert "`reproduce --check` (60-75 s there)" in table[-1]  # the quick start's time
    with pytest.raises(ValueError, match="no environment recorded yet"):
        compat_table(tmp_path / "empty")


def test_cli_readme_needs_report(capsys):
    assert main(["compat", "--readme", "README.md"]) == 2
    assert "give --report" in capsys.readouterr().err


def test_the_oldest_environment_is_pyprojects_lower_bound():
    """tox's tf-min pins the oldest TensorFlow that pyproject.toml admits, and the other lower
    bound of every other dependency with it: each bound is one the matrix checked."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (bound,) = [re.search(r">=([\d.]+)", d).group(1) for d in deps if d.startswith("tensorflow")]
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    lines = tox["testenv:tf-{min,mid,latest}"]["deps"].strip().splitlines()
    pins = dict(line.strip().split(": tensorflow==") for line in lines if ": tensorflow==" in line)
    # tf-min pins every other lower bound too (scikit-learn's minimum-dependencies build)
    lowest = {re.split(r"[<>=!~; ]", d)[0]: re.search(r">=([\d.]+)", d) for d in deps}
    pinned = set()
    for line in lines:
        if line.strip().startswith("min:") and "tensorflow" not in line:
            name, version = line.split(":", 1)[1].strip().split("==")
            assert version.startswith(lowest[name].group(1)), (name, version)
            pinned.add(name)
    # Every one of them: left to pip, tf-min got the newest Keras, and a Keras too old to read
    # the published models went unnoticed (TensorFlow 2.16 admits Keras 3.0); Optuna's and
    # SQLAlchemy's floors were never installed anywhere.
    assert pinned == set(lowest) - {"tensorflow"}, set(lowest) - {"tensorflow"} - pinned
    assert pins["min"].startswith(bound + ".") or pins["min"] == bound, (bound, pins)
    assert sorted(pins, key=lambda k: [int(x) for x in pins[k].split(".")]) == [
        "min",
        "mid",
        "latest",
    ]


def test_every_committed_environment_passed_every_step():
    folder = ROOT / "results" / COMPAT_DIR
    records = sorted(folder.glob("*.json"))
    assert {p.stem for p in records} >= {"tf-min", "tf-mid", "tf-latest"}, (
        f"{folder}: run `tox -e tf-min,tf-mid,tf-latest`"
    )
    from mnist_bench._io import read_json

    for path in records:
        record = read_json(path)
        failed = [name for name, step in record["steps"].items() if not step["passed"]]
        assert not failed, f"{path}: {failed}"


def test_the_committed_oldest_environment_ran_with_toxs_pins():
    """results/compat/tf-min.json is the matrix's record of the pins tox.ini holds now: a pin
    moved (a lower bound raised) without running `tox -e tf-min` again fails here."""
    from mnist_bench._io import read_json

    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    pins = {}
    for line in tox["testenv:tf-{min,mid,latest}"]["deps"].strip().splitlines():
        if line.strip().startswith("min:"):
            name, version = line.split(":", 1)[1].strip().split("==")
            pins[name] = version
    recorded = read_json(ROOT / "results" / COMPAT_DIR / "tf-min.json")["versions"]
    assert {name: recorded.get(name) for name in pins} == pins, "run `tox -e tf-min`"


def test_the_oldest_python_pyproject_admits_is_the_one_the_matrix_ran():
    """requires-python's lower bound is a checked one: the version matrix's oldest environment
    ran that Python (3.10 was admitted while nothing here ran it)."""
    from mnist_bench._io import read_json

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bound = re.fullmatch(r">=\s*(\d+\.\d+)", project["requires-python"]).group(1)
    ran = read_json(ROOT / "results" / COMPAT_DIR / "tf-min.json")["versions"]["python"]
    assert ran.rsplit(".", 1)[0] == bound, (ran, project["requires-python"])
