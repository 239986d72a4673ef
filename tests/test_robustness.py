"""`mnist-bench robustness` / `calibrate` and the committed robustness.json and
calibration.json of every published folder: their arithmetic here, in the fast tier; their
re-measurement on a subset by `reproduce --check` (test_accuracy.py: the reference's in the
fast tier, the others' in the slow tier and in CI's `reproduce --check --variants`); in full
in the slow tier."""

import contextlib
import dataclasses
import io
import json
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import pytest

from mnist_bench import TrainConfig, cli, weights_digest
from mnist_bench._io import read_json
from mnist_bench.corruptions import CORRUPTIONS
from mnist_bench.published import PUBLISHED_DIRS, recipe_folder, recipe_folders
from mnist_bench.robustness import (
    _corruption_errors,
    calibrate,
    check_calibration,
    check_robustness,
    holdout_images,
    measure_robustness,
)
from mnist_bench.training import split_data

RESULTS = Path(__file__).resolve().parents[1] / "results"
# The recipes whose folder holds results: reference and robust always (a missing folder fails),
# the deeper networks once their runs are recorded (docs/architectures.md shows them pending).
PUBLISHED = sorted(
    {"reference", "robust", *recipe_folders(RESULTS)}, key=list(PUBLISHED_DIRS).index
)
MARKERS = (
    "<!-- robustness-table -->\nold\n<!-- /robustness-table -->\n"
    "<!-- calibration-table -->\nold\n<!-- /calibration-table -->\n"
)


@pytest.fixture(scope="module")
def published() -> keras.Model:
    return keras.models.load_model(RESULTS / "model.keras")


class Committed(NamedTuple):
    folder: Path  # a published recipe's folder: results/ or results/robust/
    model: keras.Model  # its published model.keras
    record: dict  # its robustness.json


@pytest.fixture(scope="module", params=PUBLISHED)
def committed(request) -> Committed:
    folder = recipe_folder(RESULTS, request.param)
    return Committed(folder, keras.models.load_model(folder / "model.keras"),
                     read_json(folder / "robustness.json"))  # fmt: skip


@pytest.fixture(scope="module")
def small(mnist):
    """300 test digits; the last 1,000 training digits, so a holdout of 500 is real MNIST."""
    return dataclasses.replace(
        mnist,
        x_test=mnist.x_test[:300],
        y_test=mnist.y_test[:300],
        x_train=mnist.x_train[-1000:],
        y_train=mnist.y_train[-1000:],
    )


def _run(argv: list[str], data, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(cli._common, "_load_data", lambda explicit: data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


# -- the committed results ----------------------------------------------------------------


# The published subset accuracies re-measured exactly (counts) from the committed model:
# `check_robustness`, which `reproduce --check` runs and test_accuracy.py's
# test_committed_results_pass_the_reproduce_check runs for every published recipe.


def test_the_published_summary_follows_from_the_per_corruption_numbers(committed):
    record = committed.record
    model, base = record["model"], record["baseline"]
    assert sorted(model["accuracy"]) == sorted(CORRUPTIONS)
    assert model["mean_accuracy"] == pytest.approx(np.mean(list(model["accuracy"].values())))
    assert model["min_accuracy"] == min(model["accuracy"].values())
    ce = [(1 - model["accuracy"][n]) / (1 - base["accuracy"][n]) for n in CORRUPTIONS]
    assert record["mce"] == pytest.approx(np.mean(ce))
    assert record["split"] == "test" and record["n_images"] == 10_000


def test_the_published_calibration_is_fitted_off_the_test_set(committed):
    cal = read_json(committed.folder / "calibration.json")
    assert cal["fit"]["split"] == "holdout"
    assert cal["model"]["weights_digest"] == weights_digest(committed.model)
    assert cal["test"]["calibrated"]["ece"] < cal["test"]["uncalibrated"]["ece"]
    assert cal["test"]["calibrated"]["ece"] <= 0.01  # issue #13's target, both recipes


def test_the_robust_recipe_meets_the_corruption_targets():
    # Issue #13: a mean of at least 90% over the 15 corruptions, none below 50%. The
    # reference recipe misses both (brightness and fog at chance), which is why it has a
    # robust sibling; this fails the day the published robust model stops meeting them.
    model = read_json(recipe_folder(RESULTS, "robust") / "robustness.json")["model"]
    assert model["mean_accuracy"] >= 0.90 and model["min_accuracy"] >= 0.50


@pytest.mark.slow
def test_published_robustness_is_re_measured_exactly_in_full(committed, mnist):
    record = committed.record
    again = measure_robustness(
        committed.model, mnist.x_test, mnist.y_test, base_seed=record["base_seed"],
        baseline=record["baseline"],
    )  # fmt: skip
    for key in ("mce", "relative_mce", "subset", "n_images"):
        assert again[key] == record[key], key
    assert again["model"] == {k: v for k, v in record["model"].items() if k != "path"}


@pytest.mark.slow
def test_published_calibration_is_re_measured_exactly(committed, mnist):
    cal = read_json(committed.folder / "calibration.json")
    _, again = calibrate(committed.model, mnist)
    assert again["temperature"] == cal["temperature"]
    assert again["test"] == cal["test"] and again["holdout"] == cal["holdout"]


# -- the pieces ---------------------------------------------------------------------------


def test_corruption_errors_of_a_hand_computed_case():
    model = {"clean_accuracy": 0.99, "accuracy": {"a": 0.9, "b": 0.5}}
    baseline = {"clean_accuracy": 0.98, "accuracy": {"a": 0.8, "b": 0.75}}
    errors = _corruption_errors(model, baseline)
    assert errors["ce"] == pytest.approx({"a": 0.1 / 0.2, "b": 0.5 / 0.25})
    assert errors["mce"] == pytest.approx(1.25)
    rel = {"a": (0.1 - 0.01) / (0.2 - 0.02), "b": (0.5 - 0.01) / (0.25 - 0.02)}
    assert errors["relative_ce"] == pytest.approx(rel)
    perfect = {"clean_accuracy": 1.0, "accuracy": {"a": 1.0, "b": 0.75}}
    assert _corruption_errors(model, perfect)["ce"]["a"] is None  # undefined, not infinite


def test_the_holdout_is_split_datas_holdout(mnist):
    split = split_data(TrainConfig.recipe("reference", validation="holdout"), mnist)
    x, y = holdout_images(mnist)
    assert np.array_equal(x, split.x_val) and np.array_equal(y, split.y_val)
    with pytest.raises(ValueError, match=r"holdout_size must be in 1\.\.59999"):
        holdout_images(mnist, 60_000)


# -- the commands -------------------------------------------------------------------------


def test_robustness_command_writes_json_figure_and_table(small, tmp_path, monkeypatch, published):
    readme = tmp_path / "README.md"
    readme.write_text(MARKERS)
    model = str(RESULTS / "model.keras")
    argv = ["robustness", model, "--images", "20", "--out", str(tmp_path)]
    code, out, err = _run([*argv, "--baseline", model, "--readme", str(readme)], small, monkeypatch)
    assert code == 0, err
    written = read_json(tmp_path / "robustness.json")
    assert written["n_images"] == 20 and written["subset"]["n_images"] == 20
    assert written["mce"] == pytest.approx(1.0)  # the model against itself
    assert (tmp_path / "corruptions.png").stat().st_size > 10_000
    assert "| shot noise |" in readme.read_text() and "old" in readme.read_text()  # calibration's
    assert check_robustness(tmp_path / "robustness.json", published, small) == []
    # again, without --baseline: the baseline numbers already in the file are carried over
    code, out, err = _run(argv, small, monkeypatch)
    assert code == 0, err
    assert "carried over" in out and read_json(tmp_path / "robustness.json")["mce"] == 1.0
    # a tampered subset number is named
    written["subset"]["accuracy"]["fog"] += 0.05
    (tmp_path / "robustness.json").write_text(json.dumps(written))
    (problem,) = check_robustness(tmp_path / "robustness.json", published, small)
    assert "first 20 corrupted test digits" in problem


def test_robustness_on_the_holdout_never_touches_the_test_set(small, tmp_path, monkeypatch):
    no_test = dataclasses.replace(small, x_test=small.x_test[:0], y_test=small.y_test[:0])
    argv = ["robustness", str(RESULTS / "model.keras"), "--split", "holdout"]
    argv += ["--holdout-size", "50", "--out", str(tmp_path)]
    code, _, err = _run(argv, no_test, monkeypatch)
    assert code == 0, err
    written = read_json(tmp_path / "robustness-holdout.json")
    assert (written["split"], written["n_images"]) == ("holdout", 50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["robustness-holdout.json"]


def test_calibrate_command_writes_a_loadable_calibrated_model(
    small, tmp_path, monkeypatch, published
):
    readme = tmp_path / "README.md"
    readme.write_text(MARKERS)
    argv = ["calibrate", str(RESULTS / "model.keras"), "--out", str(tmp_path)]
    argv += ["--holdout-size", "500", "--readme", str(readme)]
    code, _, err = _run(argv, small, monkeypatch)
    assert code == 0, err
    cal = read_json(tmp_path / "calibration.json")
    assert cal["fit"]["images"] == "training images 500..999"
    assert check_calibration(tmp_path / "calibration.json", published, small) == []
    assert "| reference, temperature-scaled, T = " in readme.read_text()
    cal["temperature"] *= 1.01
    (tmp_path / "calibration.json").write_text(json.dumps(cal))
    problems = check_calibration(tmp_path / "calibration.json", published, small)
    assert any("temperature" in p for p in problems)


def test_table_only_needs_a_readme(tmp_path, monkeypatch, small):
    code, _, err = _run(["robustness", "--table-only", "--out", str(tmp_path)], small, monkeypatch)
    assert code == 2 and "give --readme" in err
