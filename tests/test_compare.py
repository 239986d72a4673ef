"""The one comparison rule (`mnist_bench.compare`) and the checks that use it: a rounding-sized
difference passes on another machine fingerprint, a real change fails on every fingerprint."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mnist_bench import load_model, machine_fingerprint
from mnist_bench.compare import (
    EXACT,
    FLOAT32_UNIT_ROUNDOFF,
    Mismatch,
    compare,
    float32_rule,
    gamma,
)
from mnist_bench.evaluation import calibration_metrics, calibration_rules, predict
from mnist_bench.reproduction import verify_results
from mnist_bench.robustness import check_calibration

RESULTS = Path(__file__).resolve().parents[1] / "results"
OTHER_MACHINE = "Some CPU | Vendor/1/2/3 | avx | 2 cpus | gpu: none | tf 2.21.0 | onednn on"


def test_gamma_is_the_float32_sum_bound():
    u = FLOAT32_UNIT_ROUNDOFF
    assert u == 2.0**-24
    assert gamma(0) == 0.0
    assert gamma(10_000) == pytest.approx(10_000 * u / (1 - 10_000 * u), rel=1e-15)
    with pytest.raises(ValueError, match="2\\*\\*24"):
        gamma(2**24)


def test_exact_rule_compares_counts_and_strings_exactly():
    assert compare("f.json", "errors", 29, 29) == []
    (m,) = compare("f.json", "errors", 29, 30)
    assert str(m) == (
        "f.json: errors: recorded 29, re-measured 30, difference +1; "
        "rule: exact (counts, digests and hashes are exact on every machine)"
    )
    assert compare("f.json", "digest", "ab", "ac")[0].field == "digest"
    assert compare("f.json", "x", 0.1, 0.1) == []
    assert compare("f.json", "x", 0.1, float(np.nextafter(0.1, 1))) != []  # one bit off
    assert compare("f.json", "x", 0.1, 0.1000000001) != []
    assert compare("f.json", "flag", True, 1) != []  # a boolean is not a count


def test_float32_rule_is_exact_on_the_recording_fingerprint():
    same = float32_rule(n_terms=10_000, magnitude=0.005, same_fingerprint=True)
    assert same.name == "exact" and not same.holds(0.0015, 0.0015 * (1 + 1e-12))
    other = float32_rule(n_terms=10_000, magnitude=0.005, same_fingerprint=False)
    assert other.tolerance == pytest.approx(2 * gamma(10_000) * 0.005)
    assert other.holds(0.0015, 0.0015 + 0.9 * other.tolerance)
    assert not other.holds(0.0015, 0.0015 + 1.1 * other.tolerance)
    assert other.holds(3, 3) and not other.holds(3, 4)  # counts stay exact under any rule
    with pytest.raises(ValueError, match="magnitude"):
        float32_rule(n_terms=10, magnitude=-1.0, same_fingerprint=False)


def test_compare_walks_dicts_and_lists_with_a_rule_per_key():
    rules = {"ece": float32_rule(n_terms=100, magnitude=1.0, same_fingerprint=False)}
    recorded = {"ece": 0.5, "accuracy": 0.9, "bins": [1, 2]}
    measured = {"ece": 0.5 + 1e-7, "accuracy": 0.9, "bins": [1, 3], "extra": 1}
    found = {m.field: m for m in compare("c.json", "test", recorded, measured, rules)}
    assert set(found) == {"test.bins[1]", "test.extra"}
    assert isinstance(found["test.extra"], Mismatch) and found["test.extra"].recorded is None
    assert compare("c.json", "l", [1, 2], [1])[0].field == "l (length)"


def test_calibration_rules_bound_the_ece_bin_edge_jumps():
    # Two images on an ECE bin edge (5/15 and 10/15): each may move into the next bin on
    # another machine, which can change the ECE by 2 |confidence - correct| / N.
    p = np.full((4, 10), 0.0, np.float32)
    p[:, 0] = [5 / 15, 10 / 15, 0.95, 0.42]
    p[:, 1] = 1 - p[:, 0]
    labels = np.array([0, 1, 0, 0])
    rules = calibration_rules(p, labels, same_fingerprint=False)
    confidence = p.max(axis=1).astype(np.float64)
    off = np.abs(confidence - (p.argmax(axis=1) == labels))
    edge_jumps = 2 * (off[0] + off[1]) / 4
    assert rules["ece"].tolerance == pytest.approx(2 * gamma(4) * off.mean() + edge_jumps)
    assert rules["accuracy"] is EXACT
    assert calibration_rules(p, labels, same_fingerprint=True)["ece"].name == "exact"


# -- the committed results: rounding passes elsewhere, a real change fails everywhere --------


def _copy_results(tmp_path: Path) -> Path:
    skip = shutil.ignore_patterns("export", "holdout", "benchmarks", "robust", "*.png")
    return Path(shutil.copytree(RESULTS, tmp_path / "results", ignore=skip))


def _edit_json(path: Path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_a_rounding_sized_difference_passes_only_off_the_recording_fingerprint(
    tmp_path, mnist, published_model
):
    """On 1,000 test digits: the calibration record re-measured here, then one ECE nudged by a
    tenth of the float32 bound: it passes when another machine recorded it, fails (exact)
    when this one did."""
    out = _copy_results(tmp_path)
    path = out / "calibration.json"
    small = dataclasses.replace(mnist, x_test=mnist.x_test[:1000], y_test=mnist.y_test[:1000])
    _, probs = predict(load_model(out / "model_calibrated.keras"), small.x_test)
    measured = calibration_metrics(probs, small.y_test)
    ece_rule = calibration_rules(probs, small.y_test, same_fingerprint=False)["ece"]

    def record_as(fingerprint: str):
        def edit(record: dict) -> None:
            record["provenance"]["machine_fingerprint"] = fingerprint
            record["test"]["calibrated"] = {
                **measured,
                "ece": measured["ece"] + ece_rule.tolerance / 10,
            }

        return edit

    _edit_json(path, record_as(OTHER_MACHINE))
    assert check_calibration(path, published_model, small) == []
    _edit_json(path, record_as(machine_fingerprint()))  # as if recorded here: exact
    (problem,) = check_calibration(path, published_model, small)
    assert "test.calibrated.ece" in problem
    assert "rule: exact (re-measured on the machine fingerprint that recorded it)" in problem


def test_a_real_change_fails_the_check_on_every_fingerprint(tmp_path, mnist):
    """One label, one probability, one weight, one ECE digit: each is named, although every
    recorded fingerprint says another machine (floats compared within float32 rounding)."""
    out = _copy_results(tmp_path)
    for name in ("calibration.json", "robustness.json"):
        _edit_json(out / name, lambda r: r["provenance"].update(machine_fingerprint=OTHER_MACHINE))
    _edit_json(out / "calibration.json", lambda r: r["test"]["calibrated"].update(ece=0.0030))
    # one weight, 1e-6 off: the published model file no longer holds the published weights
    model = load_model(out / "model.keras")
    kernel = model.layers[-1].kernel
    kernel.assign(kernel.numpy() + np.eye(*kernel.shape, dtype=np.float32) * 1e-6)
    model.save(out / "model.keras")
    # one probability of image 0 moved to a wrong class in every seed's stored softmax
    label = int(mnist.y_test[0])
    for npy in (out / "probabilities").glob("reference-seed*.npy"):
        probs = np.load(npy)
        probs[0] = np.eye(10, dtype=np.float32)[(label + 1) % 10]
        np.save(npy, probs)
    # one test label changed
    y = mnist.y_test.copy()
    y[1] = (y[1] + 1) % 10
    verification = verify_results(out, data=dataclasses.replace(mnist, y_test=y))
    text = "\n".join(verification.problems)
    assert "model.keras (re-measured) against metrics.json: published.weights_digest" in text
    assert "published.test_errors: recorded 29, re-measured 30" in text  # the h5: one label
    assert "ensemble.test_accuracy" in text  # one probability
    assert "test.calibrated.ece: recorded 0.003," in text  # a real ECE change
    assert any("float32 rounding" in rule for rule in verification.rules)
