"""Accuracy-regression tests, in two tiers.

Fast (default run):
- the seed model, 1 epoch on the full 60k images, reaches its threshold on the 10k test set;
  on the machine where it was pinned it must also reproduce the pinned digest and accuracy
  exactly (oneDNN's float results are bit-stable per CPU model, not across models);
- the published model in results/ reaches exactly the accuracy results/ states, and >= 99.70%
  (an expected failure, reported as xfailed, while results/metrics.json records it below);
- every published folder's model files (.keras, and .h5 where written) hold its published
  weights;
- the committed results/ pass `mnist-bench reproduce --check` (models, summary, targets,
  ensemble, every file metrics.json names, robustness and calibration).

Slow (`pytest -m slow`, `tox -e reproduce`): the other published folders (results/robust/,
results/fast/, results/resnet20/) pass `reproduce --check` too (CI's `.ci/run` checks them all
before the test command); the reference and fast recipes retrained from their published seeds
reach their spread (>= 99.70% for reference) and, on the pinned machine, the published digest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnist_bench import TrainConfig, load_model, train, weights_digest
from mnist_bench.models import h5_published
from mnist_bench.provenance import fingerprints_match, machine_fingerprint
from mnist_bench.published import PUBLISHED_DIRS, recipe_folder, recipe_folders
from mnist_bench.reproduction import check_results

RESULTS = Path(__file__).resolve().parents[1] / "results"
# The recipes whose folder holds results: reference and robust always (a missing folder fails),
# the deeper networks once their runs are recorded (docs/architectures.md shows them pending).
PUBLISHED = sorted(
    {"reference", "robust", *recipe_folders(RESULTS)}, key=list(PUBLISHED_DIRS).index
)
PUBLISHED_TARGET = 0.9970  # the project's claim: >= 99.70% final-epoch test accuracy

# Seed model, 1 epoch, seed 0, full training set, pinned per machine fingerprint with
# `mnist-bench train --model seed --epochs 1 --seed 0 --out runs/a` (run twice, identical).
# 2026-11-25, AMD EPYC Zen 3 (no AVX-512, oneDNN off by default): 97.80% (220 errors), test
# loss 0.0749; seed 1 gave 97.59%. Zen 4 (AVX-512, oneDNN on): 97.83% (217 errors), test loss
# 0.0748; seed 1 gave 97.58%. The threshold leaves 0.5 points of margin for other CPUs and
# TensorFlow versions, where the bits differ.
SEED_1EP_THRESHOLD = 0.9730
# Both pinned before the fingerprint named oneDNN: each holds TensorFlow's default for its CPU
# (off on Zen 3, on on Zen 4; `fingerprints_match`). With oneDNN turned on by mnist_bench, a
# Zen 3 machine matches its own oneDNN-on pin below instead (other kernels, other bits).
SEED_1EP_PINS = {  # machine fingerprint -> what that machine gives, exactly
    "AMD EPYC | AuthenticAMD/25/1/1 | avx,avx2,fma | 2 cpus | gpu: none | tf 2.21.0": {
        "test_accuracy": 0.978,
        "weights_digest": "4e80c0c13b517b92729573059a6f7a5a9f325f291b81410179f529bc6dda1e3b",
    },
    "AMD EPYC | AuthenticAMD/25/17/1 | avx,avx2,avx512_bf16,avx512_vnni,avx512f,fma | 2 cpus"
    " | gpu: none | tf 2.21.0": {
        "test_accuracy": 0.9783,
        "weights_digest": "52556c065839deb7501db794446a58aa28f6c4f0ce0e4083e56d9dfd1068b558",
    },
    # 2026-12-06, AMD EPYC Zen 3 with oneDNN on (mnist_bench's default since issue 14), run
    # twice: 97.72% (228 errors), test loss 0.0748.
    "AMD EPYC | AuthenticAMD/25/1/1 | avx,avx2,fma | 2 cpus | gpu: none | tf 2.21.0 | onednn on": {
        "test_accuracy": 0.9772,
        "weights_digest": "9e6034ccf5e08f4e8f581bd112785bb8dd44bf1cdef635c0e74345a538dc473a",
    },
    # 2026-12-07, AMD EPYC Zen 1 (family 23 model 1, AVX2, no AVX-512, oneDNN on), run
    # twice: the Zen 3 bits above (both oneDNN's AVX2 kernels).
    "AMD EPYC | AuthenticAMD/23/1/2 | avx,avx2,fma | 2 cpus | gpu: none | tf 2.21.0 | onednn on": {
        "test_accuracy": 0.9772,
        "weights_digest": "9e6034ccf5e08f4e8f581bd112785bb8dd44bf1cdef635c0e74345a538dc473a",
    },
    # 2026-11-30, Intel Xeon (family 6 model 207, AVX-512 VNNI, oneDNN on), run twice: the
    # same bits as the Zen 4 pin above (both oneDNN's AVX-512 kernels).
    "Intel(R) Xeon(R) Processor | GenuineIntel/6/207/2 | avx,avx2,avx512_vnni,avx512f,fma"
    " | 2 cpus | gpu: none | tf 2.21.0 | onednn on": {
        "test_accuracy": 0.9783,
        "weights_digest": "52556c065839deb7501db794446a58aa28f6c4f0ce0e4083e56d9dfd1068b558",
    },
    # 2026-12-07, AMD EPYC Zen 5 (family 26 model 2, AVX-512 with BF16, oneDNN on), run
    # twice: again the Zen 4 / Xeon bits (oneDNN's AVX-512 kernels).
    "AMD EPYC | AuthenticAMD/26/2/1 | avx,avx2,avx512_bf16,avx512_vnni,avx512f,fma | 2 cpus"
    " | gpu: none | tf 2.21.0 | onednn on": {
        "test_accuracy": 0.9783,
        "weights_digest": "52556c065839deb7501db794446a58aa28f6c4f0ce0e4083e56d9dfd1068b558",
    },
}


def _on_pinned_machine(fingerprint: str) -> bool:
    return fingerprints_match(fingerprint)


@pytest.fixture(scope="module")
def seed_one_epoch(mnist):
    from mnist_bench import plots

    with pytest.MonkeyPatch.context() as mp:  # misclassified.png: 20 digits, not ~220
        mp.setattr(plots, "MAX_GRID_IMAGES", 20)
        return train(TrainConfig.recipe("seed", epochs=1, seed=0), mnist)


def test_seed_model_one_epoch_reaches_threshold(seed_one_epoch):
    assert seed_one_epoch.metrics["test_accuracy"] >= SEED_1EP_THRESHOLD


def test_seed_model_one_epoch_matches_pin_on_pinned_machine(seed_one_epoch):
    here = machine_fingerprint()
    pin = next((p for f, p in SEED_1EP_PINS.items() if fingerprints_match(f, here)), None)
    if pin is None:
        pytest.skip(f"pinned only on {sorted(SEED_1EP_PINS)}; this is another machine")
    assert weights_digest(seed_one_epoch.model) == pin["weights_digest"]
    assert seed_one_epoch.metrics["test_accuracy"] == pin["test_accuracy"]


# -- the published result -----------------------------------------------------------------


@pytest.fixture(scope="module")
def published() -> dict:
    path = RESULTS / "metrics.json"
    assert path.is_file(), f"{path} is missing: the published result is part of the checkout"
    return json.loads(path.read_text())


# The published model's accuracy and errors re-measured on the 10k test images equal those
# metrics.json records, exactly: test_committed_results_pass_the_reproduce_check below. So
# the recorded number is the model's, and the target is checked on it.
def test_published_model_reaches_the_target(published, request):
    target = published["targets"]["published"]
    if not target["met"]:
        # results/ honestly records a published model below the target (issue 6: publish
        # what was measured). The gap is reported as xfailed on every run, never as passed;
        # strict, so a model that does reach the target while metrics.json says it does not
        # fails the suite.
        request.applymarker(pytest.mark.xfail(
            strict=True,
            reason=f"results/metrics.json records {target['value']:.2%} < {PUBLISHED_TARGET:.2%}",
        ))  # fmt: skip
    assert published["published"]["test_accuracy"] >= PUBLISHED_TARGET


@pytest.mark.parametrize("recipe", PUBLISHED)
def test_published_h5_and_keras_hold_the_published_weights(recipe):
    folder = recipe_folder(RESULTS, recipe)
    published = json.loads((folder / "metrics.json").read_text())["published"]
    files = ["model.keras"]  # and the .h5 where the package publishes one for this network
    files += ["network_for_mnist.h5"] if h5_published(published["config"]["model_options"]) else []
    for name in files:
        assert weights_digest(load_model(folder / name)) == published["weights_digest"], name


# Every folder re-measured (models on the 10k test images, robustness subset, calibrated
# model): the reference in the fast tier; the others (20-47 s each on a Zen 3) in the slow
# tier and in CI, whose `.ci/run` runs `mnist-bench reproduce --check --variants` (all of
# them, under three kernel and thread settings) before the test command.
@pytest.mark.parametrize(
    "recipe",
    [r if r == "reference" else pytest.param(r, marks=pytest.mark.slow) for r in PUBLISHED],
)
def test_committed_results_pass_the_reproduce_check(recipe, mnist):
    # results/<recipe>/ with its robustness and calibration files: what `mnist-bench
    # reproduce --check` verifies
    assert check_results(recipe_folder(RESULTS, recipe), data=mnist) == []


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["reference", "fast"])
def test_recipe_retrained_from_scratch_reproduces_its_published_run(recipe, mnist, tmp_path):
    # The published seed of the recipe, from scratch: the same bits on the fingerprint that
    # trained it; elsewhere an accuracy within the seeds' spread (their lowest minus two sd),
    # and the 99.70% target where the published run met it (reference; fast does not).
    metrics = json.loads((recipe_folder(RESULTS, recipe) / "metrics.json").read_text())
    entry, summary = metrics["published"], metrics["summary"]
    result = train(TrainConfig.from_dict(entry["config"]), mnist, tmp_path)
    accuracy = result.metrics["test_accuracy"]
    if _on_pinned_machine(entry["machine_fingerprint"]):
        assert result.metrics["weights_digest"] == entry["weights_digest"]
        assert accuracy == entry["test_accuracy"]
    assert accuracy >= summary["min"] - 2 * summary["sd"]
    if metrics["targets"]["published"]["met"]:
        assert accuracy >= PUBLISHED_TARGET
