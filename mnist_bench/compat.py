"""Which TensorFlow, Keras and numpy versions the result has been checked on: a version matrix.

As scikit-learn's CI does for its minimum dependencies, each supported version set runs in an
environment of its own (tox envs ``tf-min``, ``tf-mid``, ``tf-latest``: the oldest TensorFlow
pyproject.toml allows with every other lower bound, Keras' and numpy's included; one between;
the newest; the last two with the Keras and numpy pip brings for them). In each, `run_compat`
runs the user's first steps as separate processes of that environment's Python and records
the outcome:

1. ``mnist-bench reproduce --check``: the committed results, re-measured;
2. a 1-epoch training of the notebook's model (seed 0), which must reach `ONE_EPOCH_THRESHOLD`;
3. the notebook under nbval (``pytest --nbval notebooks``);
4. ``mnist-bench export`` of the published model to LiteRT, then ``mnist-bench predict`` of a
   test digit with the exported file;
5. ``mnist-bench search``: one tiny trial of an Optuna study in an SQLite file (Optuna and
   SQLAlchemy at the versions installed), then ``--report`` (its summary and figure).

    tox -e tf-min,tf-mid,tf-latest                      # each writes results/compat/<env>.json
    mnist-bench compat --report --readme README.md      # the "checked on" table from those files
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ._io import read_json, write_json
from ._process import cli_argv, run_process

COMPAT_DIR = "compat"  # under the results folder: one <env>.json per environment
# The notebook's model after 1 epoch on all 60k images: 97.80-97.83% on the pinned machines
# (tests/test_accuracy.py); 0.5 points of margin for other kernels and versions.
ONE_EPOCH_THRESHOLD = 0.973
PACKAGES = ("tensorflow", "keras", "numpy", "scipy", "scikit-learn", "scikit-image", "matplotlib",
            "pillow", "absl-py", "h5py", "optuna", "sqlalchemy", "ai-edge-litert")  # fmt: skip
README_MARKERS = ("<!-- versions-table -->", "<!-- /versions-table -->")
STEPS = ("reproduce --check", "1-epoch training", "notebook (nbval)", "export + predict",
         "search (Optuna)")  # fmt: skip
# The cheapest candidate of the search space, one epoch on 1,000 images: the step checks that
# Optuna and SQLAlchemy work with the package, not what the search finds.
TINY_SEARCH = ("--fix", "epochs=1", "--fix", "convs_per_stage=1,1,1", "--fix", "widths=16,32,64",
               "--fix", "augment_scale=0", "--fix", "augment_on=host",
               "--fix", "weight_averaging=null", "--fix", "recalibrate_batch_norm=false",
               "--train-subset", "1000", "--holdout-size", "500")  # fmt: skip
_TAIL = 2_000  # characters of a failed step's output kept in the record


def versions() -> dict[str, str | None]:
    """Installed versions of Python and of `PACKAGES` (None where not installed)."""

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"python": sys.version.split()[0], **{name: version(name) for name in PACKAGES}}


def _one_epoch_accuracy(run_dir: Path) -> float:
    return float(read_json(run_dir / "metrics.json")["test_accuracy"])


def _write_digit(path: Path, data_dir: str | None) -> int:
    """Write the first test digit as a PNG (dark on light, as a user's photo); its label."""
    import numpy as np
    from PIL import Image

    from .data import load_mnist

    data = load_mnist(data_dir, download=False) if data_dir else load_mnist(download=False)
    Image.fromarray(255 - np.kron(data.x_test[0], np.ones((4, 4), np.uint8))).save(path)
    return int(data.y_test[0])


def run_compat(
    repo: str | Path,
    *,
    data_dir: str | None = None,
    timeout: float = 900.0,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the five steps (module docstring) with this Python, in the checkout `repo`.

    Parameters
    ----------
    repo : str or Path
        The project checkout (holding results/ and notebooks/).
    data_dir : str, optional
        MNIST's folder (``--data``); default: as the package finds it.
    timeout : float, default=900
        Seconds each step may take.
    progress : callable, optional
        ``progress(step_name, step_record)`` after each step.

    Returns
    -------
    dict
        ``versions`` (`versions`), ``steps`` (name -> ``passed``, ``seconds``, ``command``,
        ``detail``, and ``output`` tail when failed), ``passed`` (all steps), ``provenance``.
    """
    from .provenance import provenance

    repo = Path(repo)
    data = ["--data", data_dir] if data_dir else []
    steps: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mnist-bench-compat-") as tmp:
        tmp_dir = Path(tmp)
        run, tflite, digit = tmp_dir / "one-epoch", tmp_dir / "model.tflite", tmp_dir / "d.png"
        search = ("--study", "compat", "--out", str(tmp_dir / "search"), *data)
        label = _write_digit(digit, data_dir)
        plan: list[tuple[str, list[str], Callable[[str], tuple[bool, str]]]] = [
            ("reproduce --check", cli_argv("reproduce", "--check", *data),
             lambda out: (True, out.strip().splitlines()[-1])),
            ("1-epoch training", cli_argv("train", "--model", "notebook", "--epochs", "1",
                                      "--seed", "0", "--out", str(run), *data),
             lambda out: _threshold(run)),
            ("notebook (nbval)", [sys.executable, "-m", "pytest", "--nbval", "notebooks", "-q",
                                  "-p", "no:cacheprovider", "-p", "no:xdist"],
             lambda out: (True, _pytest_summary(out))),
            ("export + predict", cli_argv("export", "results/model.keras", "--format", "litert",
                                      "--out", str(tflite), "--results", str(tmp_dir / "e.json"),
                                      *data),
             lambda out: _predicts(tflite, digit, label, repo, timeout)),
            ("search (Optuna)", cli_argv("search", *search, "--trials", "1", *TINY_SEARCH,
                                         "--runs", str(tmp_dir / "search-runs")),
             lambda out: _search_report(search, tmp_dir / "search", repo, timeout)),
        ]  # fmt: skip
        for name, argv, judge in plan:
            code, output, seconds = run_process(argv, cwd=repo, timeout=timeout)
            passed, detail = judge(output) if code == 0 else (False, f"exit {code}")
            record = {"passed": passed, "seconds": round(seconds, 1), "detail": detail,
                      "command": " ".join(["python", *argv[1:]])}  # fmt: skip
            if not passed:
                record["output"] = output[-_TAIL:]
            steps[name] = record
            if progress is not None:
                progress(name, record)
    passed = all(step["passed"] for step in steps.values())
    return {"versions": versions(), "steps": steps, "passed": passed, "provenance": provenance()}


def _pytest_summary(output: str) -> str:
    """pytest's closing line (``13 passed in 35.16s``), wherever warnings put it."""
    lines = [line for line in output.splitlines() if re.search(r"\d+ passed", line)]
    return lines[-1].strip(" =") if lines else output.strip().splitlines()[-1]


def _threshold(run_dir: Path) -> tuple[bool, str]:
    accuracy = _one_epoch_accuracy(run_dir)
    ok = accuracy >= ONE_EPOCH_THRESHOLD
    return ok, f"test accuracy {accuracy:.2%} ({'>=' if ok else '<'} {ONE_EPOCH_THRESHOLD:.1%})"


def _predicts(
    tflite: Path, digit: Path, label: int, repo: Path, timeout: float
) -> tuple[bool, str]:
    argv = cli_argv("predict", str(tflite), str(digit))
    code, output, _ = run_process(argv, cwd=repo, timeout=timeout)
    rows = [line.split() for line in output.splitlines() if line.startswith(str(digit))]
    got = rows[0][1] if code == 0 and rows else None
    return got == str(label), f"LiteRT file predicts {got} for a {label}"


def _search_report(
    search: tuple[str, ...], out_dir: Path, repo: Path, timeout: float
) -> tuple[bool, str]:
    code, output, _ = run_process(cli_argv("search", *search, "--report"), cwd=repo,
                                  timeout=timeout)  # fmt: skip
    summary = out_dir / "search" / "compat.json"
    if code != 0 or not summary.is_file():
        return False, f"search --report: exit {code}: {output.strip()[-300:]}"
    trials = read_json(summary)["trials"]
    return len(trials) == 1, f"{len(trials)} trial recorded and reported"


def write_compat(record: Mapping[str, Any], path: str | Path) -> Path:
    """Write one environment's record (atomically); returns the path."""
    write_json(Path(path), dict(record))
    return Path(path)


def _tf_version(record: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(int(x) for x in record["versions"]["tensorflow"].split(".")[:3] if x.isdigit())


def compat_table(results_dir: str | Path = "results") -> str:
    """A Markdown table of every ``<results_dir>/compat/*.json``, oldest TensorFlow first: one
    row per environment (TensorFlow, Keras, numpy, Python; each step passed or not), then the
    other versions of the oldest environment and the CPU the matrix ran on."""
    from .provenance import cpu_label

    paths = sorted(Path(results_dir, COMPAT_DIR).glob("*.json"))
    records = dict(sorted(((p.stem, read_json(p)) for p in paths),
                          key=lambda item: _tf_version(item[1])))  # fmt: skip
    if not records:
        raise ValueError(f"{Path(results_dir, COMPAT_DIR)}: no environment recorded yet; run "
                         "`tox -e tf-min,tf-mid,tf-latest`")  # fmt: skip
    steps = [s for s in STEPS if s in next(iter(records.values()))["steps"]]
    lines = ["| environment | TensorFlow | Keras | numpy | Python | " + " | ".join(steps) + " |",
             "| --- " * (5 + len(steps)) + "|"]  # fmt: skip
    for env, record in records.items():
        v = record["versions"]
        cells = [f"`{env}`", v["tensorflow"], v["keras"], v["numpy"], v["python"]]
        cells += ["passed" if record["steps"][s]["passed"] else "**failed**" for s in steps]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    oldest_env, oldest = next(iter(records.items()))
    others = ", ".join(f"{name} {oldest['versions'][name]}" for name in PACKAGES[3:-1]
                       if oldest["versions"].get(name))  # fmt: skip
    cpus = sorted({cpu_label(r["provenance"]["cpu"]) for r in records.values()})
    held = f"`{oldest_env}` also holds {others}. " if others else ""
    # The quick start's one command, timed as a user meets it (a new process: TensorFlow's
    # import included), on the CPUs named: the README's "how long" comes from here.
    check = sorted(r["steps"][STEPS[0]]["seconds"] for r in records.values())
    took = f"{check[0]:.0f}" + (f"-{check[-1]:.0f}" if round(check[-1]) != round(check[0]) else "")
    lines += ["", f"{held}Run by `tox -e {','.join(records)}` on "
              f"{', '.join(cpus)}: `reproduce --check` ({took} s there), a 1-epoch training of "
              f"the notebook's model (>= {ONE_EPOCH_THRESHOLD:.1%}), the notebook under nbval, "
              "a LiteRT export and `predict` with it, one trial of an Optuna study and its "
              "report."]  # fmt: skip
    return "\n".join(lines)
