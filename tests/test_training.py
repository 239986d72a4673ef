"""Training: determinism (same seed -> same bits), resume, data split, schedule, augmentation.

Runs are tiny (a few hundred images, 1-2 epochs) so this file stays fast; the full-size
checks live in test_accuracy.py.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_bench import MnistData, TrainConfig, load_model, train, weights_digest
from mnist_bench.training import (
    CHECKPOINT_FILE,
    WeightAverage,
    _affine_transforms,
    bilinear_sample,
    elastic_displacement,
    epoch_dataset,
    learning_rate,
    random_affine,
    random_distortion,
    random_erasing,
    random_photometric,
    split_data,
)

# The reference recipe exercises everything stateful: batch norm, dropout, augmentation,
# the warm-up + cosine schedule. Validation on a small holdout keeps each epoch cheap.
TINY = dict(epochs=2, train_subset=384, batch_size=128, validation="holdout", holdout_size=256)


def tiny_config(**changes) -> TrainConfig:
    return TrainConfig.recipe("reference", **{**TINY, **changes})


@pytest.fixture(scope="module", autouse=True)
def _small_plot_grids():
    """A tiny run misclassifies thousands of test digits, and misclassified.png draws one axes
    per digit up to plots.MAX_GRID_IMAGES (1,000): most of each train() call's time. Every
    figure is still drawn by the real code, with a smaller grid."""
    from mnist_bench import plots

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "MAX_GRID_IMAGES", 20)  # as conftest's tiny_run
        yield


# Every train() scores its model on the test set; on all 10,000 digits that was a third of a
# tiny run's time. What this file checks (bits, resume, refusals, files) holds on any test
# set, so its runs score on the first 1,000 digits (test_accuracy.py scores full runs).
TEST_DIGITS = 1_000


@pytest.fixture(scope="module")
def mnist(mnist: MnistData) -> MnistData:
    """The real MNIST, its test set cut to the first `TEST_DIGITS` digits."""
    return MnistData(mnist.x_train, mnist.y_train, mnist.x_test[:TEST_DIGITS],
                     mnist.y_test[:TEST_DIGITS])  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(mnist, _small_plot_grids):
    """One uninterrupted tiny reference run, the yardstick for the determinism tests."""
    return train(tiny_config(seed=0), mnist)


PLAIN = dict(seed=0, recalibrate_batch_norm=False)  # the recipe's final step off


@pytest.fixture(scope="module")
def uncalibrated_run(mnist, tmp_path_factory):
    """`tiny_run` without its batch-norm recalibration: the same training, other end. Its
    folder is read-only: tests that train into it work on a copy (`copy_of`)."""
    return train(tiny_config(**PLAIN), mnist, tmp_path_factory.mktemp("uncalibrated"))


@pytest.fixture(scope="module")
def one_epoch_folder(mnist, tmp_path_factory) -> Path:
    """A finished 1-epoch run without recalibration. Read-only: use `copy_of`."""
    folder = tmp_path_factory.mktemp("one_epoch")
    train(tiny_config(epochs=1, **PLAIN), mnist, folder)
    return folder


def copy_of(folder: Path) -> Path:
    """A fresh copy of a run folder, for a test to train into, break or resume."""
    target = folder.with_name(f"{folder.name}-copy")
    n = 0
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}-copy{n}")
    return Path(shutil.copytree(folder, target))


# -- determinism --------------------------------------------------------------------------


def test_same_seed_gives_identical_weights(tiny_run, mnist):
    again = train(tiny_config(seed=0), mnist)
    assert weights_digest(again.model) == weights_digest(tiny_run.model)
    for w1, w2 in zip(again.model.weights, tiny_run.model.weights, strict=True):
        np.testing.assert_array_equal(w1.numpy(), w2.numpy())
    assert again.metrics["test_accuracy"] == tiny_run.metrics["test_accuracy"]
    assert again.metrics["test_loss"] == tiny_run.metrics["test_loss"]


def test_another_seed_gives_other_weights(tiny_run, mnist):
    other = train(tiny_config(seed=1), mnist)
    assert weights_digest(other.model) != weights_digest(tiny_run.model)


def test_digest_sees_every_weight(tiny_run):
    model = tiny_run.model
    before = weights_digest(model)
    moving_var = next(w for w in model.weights if "moving_variance" in w.path)
    original = moving_var.numpy()
    try:
        bumped = original.copy()
        bumped.flat[0] = np.nextafter(bumped.flat[0], np.float32(np.inf))  # one ulp
        moving_var.assign(bumped)
        assert weights_digest(model) != before
    finally:
        moving_var.assign(original)
    assert weights_digest(model) == before


class _Interrupt(Exception):
    """Stands for a kill after the first epoch's checkpoint was written."""


def stop_after_first_epoch(row: dict) -> None:
    """A `progress` callback that interrupts a run once its first epoch is checkpointed."""
    if row["epoch"] == 1:
        raise _Interrupt


def test_resumed_run_equals_uninterrupted_run(tiny_run, mnist, tmp_path):
    config = tiny_config(seed=0)

    with pytest.raises(_Interrupt):
        train(config, mnist, tmp_path, progress=stop_after_first_epoch)
    assert (tmp_path / CHECKPOINT_FILE).exists()
    assert not (tmp_path / "metrics.json").exists()  # the run did not finish

    epochs_run = []
    resumed = train(config, mnist, tmp_path, progress=lambda row: epochs_run.append(row["epoch"]))
    assert epochs_run == [2]  # only the missing epoch was trained
    assert weights_digest(resumed.model) == weights_digest(tiny_run.model)
    assert resumed.metrics["weights_digest"] == tiny_run.metrics["weights_digest"]
    for row_resumed, row_straight in zip(resumed.history, tiny_run.history, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
            assert row_resumed[key] == row_straight[key], key


def test_finished_run_is_not_retrained(mnist, one_epoch_folder):
    folder = copy_of(one_epoch_folder)
    first = json.loads((folder / "metrics.json").read_text())
    epochs_run = []
    second = train(tiny_config(epochs=1, **PLAIN), mnist, folder, progress=epochs_run.append)
    assert epochs_run == []
    assert second.metrics["weights_digest"] == first["weights_digest"]
    assert weights_digest(second.model) == first["weights_digest"]


def test_folder_of_another_config_is_refused(mnist, one_epoch_folder):
    folder = copy_of(one_epoch_folder)
    with pytest.raises(ValueError, match=r"config\.json: this folder holds a run with a different"):
        train(tiny_config(epochs=1, seed=5), mnist, folder)


def test_corrupt_checkpoint_is_reported(mnist, tmp_path):
    config = tiny_config(epochs=1)
    config.to_json(tmp_path / "config.json")
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint\.npz: unreadable or incompatible"):
        train(config, mnist, tmp_path)


# -- weight averaging ---------------------------------------------------------------------

AVERAGED = dict(PLAIN, weight_averaging=0.9)


@pytest.fixture(scope="module")
def averaged_run(mnist):
    """`uncalibrated_run` with weight averaging: the same trajectory, other saved weights."""
    return train(tiny_config(**AVERAGED), mnist)


# Weight averaging is an option no published recipe uses: its trainings run in the slow tier.
@pytest.mark.slow
def test_averaging_leaves_the_training_trajectory_alone(uncalibrated_run, averaged_run):
    # The average only reads the weights, so training is bit-identical, and the last
    # weights score exactly what the plain run's weights scored: a paired comparison.
    for plain, averaged in zip(uncalibrated_run.history, averaged_run.history, strict=True):
        assert averaged["loss"] == plain["loss"]
        assert averaged["accuracy"] == plain["accuracy"]
        assert averaged["last_val_accuracy"] == plain["val_accuracy"]
        assert averaged["last_val_loss"] == plain["val_loss"]
        assert "last_val_accuracy" not in plain
    # ...while what is validated and saved is the average.
    assert averaged_run.history[-1]["val_loss"] != uncalibrated_run.history[-1]["val_loss"]
    assert averaged_run.metrics["weights_digest"] != uncalibrated_run.metrics["weights_digest"]


# Weight averaging is an option no published recipe uses: its trainings run in the slow tier.
@pytest.mark.slow
def test_averaged_run_is_deterministic_and_resumable(averaged_run, mnist, tmp_path):
    config = tiny_config(**AVERAGED)

    with pytest.raises(_Interrupt):
        train(config, mnist, tmp_path, progress=stop_after_first_epoch)
    resumed = train(config, mnist, tmp_path)
    assert resumed.metrics["weights_digest"] == averaged_run.metrics["weights_digest"]
    assert resumed.history == [
        {**row, "seconds": mine["seconds"], "images_per_s": mine["images_per_s"]}
        for row, mine in zip(averaged_run.history, resumed.history, strict=True)
    ]
    # The saved model holds the averaged weights.
    assert weights_digest(load_model(tmp_path)) == averaged_run.metrics["weights_digest"]


# Weight averaging is an option no published recipe uses: its trainings run in the slow tier.
@pytest.mark.slow
def test_plain_checkpoint_does_not_load_into_an_averaged_run(mnist, tmp_path):
    train(tiny_config(epochs=1), mnist, tmp_path)
    (tmp_path / "metrics.json").unlink()
    tiny_config(epochs=1, weight_averaging=0.5).to_json(tmp_path / "config.json")
    with pytest.raises(ValueError, match=r"checkpoint\.npz: unreadable or incompatible"):
        train(tiny_config(epochs=1, weight_averaging=0.5), mnist, tmp_path)


def _toy_model():
    import keras

    inputs = keras.Input((3,))
    x = keras.layers.Dense(2)(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dropout(0.5, seed=1)(x))


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.999])
def test_average_follows_the_documented_update(momentum):
    model = _toy_model()
    average = WeightAverage(model, momentum)
    # every float variable (kernel, bias, gamma, beta, moving mean and variance), not the
    # integer seed state of Dropout
    assert len(average.sources) == 6
    assert all("float" in str(v.dtype) for v in average.sources)
    expected = [v.numpy().astype(np.float64) for v in average.sources]
    for step in range(4):
        for v in average.sources:
            v.assign(v.numpy() + (step + 1.0))
        average._update(tf.constant(step, tf.int64))
        m = min(momentum, (1.0 + step) / (10.0 + step))
        now = [v.numpy() for v in average.sources]
        expected = [m * e + (1 - m) * v for e, v in zip(expected, now, strict=True)]
    for e, a in zip(expected, average.averages, strict=True):
        np.testing.assert_allclose(a.numpy(), e, rtol=1e-6)

    last = [v.numpy() for v in average.sources]
    with average.swapped_in():
        for v, a in zip(average.sources, average.averages, strict=True):
            np.testing.assert_array_equal(v.numpy(), a.numpy())
    for v, before in zip(average.sources, last, strict=True):
        np.testing.assert_array_equal(v.numpy(), before)  # the last weights are back


# -- batch-norm recalibration -------------------------------------------------------------


def test_recalibration_changes_only_what_happens_after_the_last_epoch(uncalibrated_run, tiny_run):
    assert tiny_run.config.recalibrate_batch_norm  # the reference recipe recalibrates
    for plain, recalibrated in zip(uncalibrated_run.history, tiny_run.history, strict=True):
        assert recalibrated["loss"] == plain["loss"]  # the same training, bit for bit
    last, plain_last = tiny_run.history[-1], uncalibrated_run.history[-1]
    assert last["uncalibrated_val_accuracy"] == plain_last["val_accuracy"]
    assert last["uncalibrated_val_loss"] == plain_last["val_loss"]
    assert last["val_loss"] != plain_last["val_loss"]  # what is saved: the recalibrated model
    assert "uncalibrated_val_loss" not in tiny_run.history[0]  # only the final row
    assert tiny_run.metrics["weights_digest"] != uncalibrated_run.metrics["weights_digest"]


def test_a_run_differing_only_after_its_last_epoch_is_finished_from_its_checkpoint(
    tiny_run, mnist, uncalibrated_run
):
    folder = copy_of(uncalibrated_run.out_dir)  # a finished run with recalibration off
    epochs_run = []
    finished = train(tiny_config(seed=0), mnist, folder, progress=epochs_run.append)
    assert epochs_run == []  # nothing retrained: the checkpoint is that training's end
    assert finished.metrics["weights_digest"] == tiny_run.metrics["weights_digest"]
    assert TrainConfig.from_json(folder / "config.json") == tiny_config(seed=0)
    assert weights_digest(load_model(folder)) == tiny_run.metrics["weights_digest"]
    with pytest.raises(ValueError, match="holds a run with a different config"):
        train(tiny_config(seed=0, label_smoothing=0.0), mnist, folder)  # a training field


def test_finishing_from_a_bad_checkpoint_changes_nothing_in_the_folder(mnist, one_epoch_folder):
    folder = copy_of(one_epoch_folder)  # recalibration off: finishing would recalibrate
    (folder / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError, match=r"checkpoint\.npz: unreadable or incompatible"):
        train(tiny_config(epochs=1, seed=0), mnist, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# -- outputs ------------------------------------------------------------------------------


def test_run_folder_holds_everything(mnist, one_epoch_folder):
    tmp_path = copy_of(one_epoch_folder)
    result = train(tiny_config(epochs=1, **PLAIN), mnist, tmp_path)  # read back, not retrained
    expected = {
        "network_for_mnist.h5", "model.keras", "config.json", "history.json", "metrics.json",
        "loss_curves.png", "confusion_matrix.png", "predictions.png", "misclassified.png",
        CHECKPOINT_FILE,
    }  # fmt: skip
    assert expected <= {p.name for p in tmp_path.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    assert TrainConfig.from_json(tmp_path / "config.json") == result.config
    metrics = result.metrics
    assert metrics["final_epoch"] == 1
    assert metrics["test_accuracy"] == result.report.accuracy
    assert np.array_equal(np.array(metrics["test"]["confusion"]), result.report.confusion)
    prov = metrics["provenance"]
    for key in ("tensorflow", "keras", "numpy", "cpu", "machine_fingerprint", "git", "gpus"):
        assert key in prov
    assert len(metrics["epoch_seconds"]) == 1
    for name in ("model.keras", "network_for_mnist.h5"):
        assert weights_digest(load_model(tmp_path / name)) == metrics["weights_digest"]


# -- data split ---------------------------------------------------------------------------


def test_test_validation_uses_the_test_set(mnist):
    split = split_data(TrainConfig(validation="test"), mnist)
    assert split.x_train is mnist.x_train and split.x_val is mnist.x_test


def test_holdout_is_the_last_training_images_and_disjoint(mnist):
    split = split_data(TrainConfig(validation="holdout", holdout_size=10_000), mnist)
    assert len(split.x_train) == 50_000 and len(split.x_val) == 10_000
    np.testing.assert_array_equal(split.x_val, mnist.x_train[-10_000:])
    np.testing.assert_array_equal(split.y_train, mnist.y_train[:50_000])


def test_subset_larger_than_what_is_left_is_refused():
    with pytest.raises(ValueError, match=r"train_subset must be in \[1, 40000\], got 50000"):
        TrainConfig(validation="holdout", holdout_size=20_000, train_subset=50_000)


# -- schedule -----------------------------------------------------------------------------


def _lr_at(schedule, step: int) -> float:
    return float(schedule(step)) if callable(schedule) else float(schedule)


def test_constant_schedule_is_a_plain_float():
    assert learning_rate(TrainConfig(lr_schedule="constant", learning_rate=1e-3), 100) == 1e-3


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_warmup_then_schedule(schedule):
    config = TrainConfig(learning_rate=2e-3, lr_schedule=schedule, warmup_epochs=1.0, epochs=4)
    lr = learning_rate(config, steps_per_epoch=100)
    assert _lr_at(lr, 0) == 0.0
    assert _lr_at(lr, 50) == pytest.approx(1e-3)
    assert _lr_at(lr, 100) == pytest.approx(2e-3)
    end = _lr_at(lr, 400)
    assert end == pytest.approx(2e-3 if schedule == "constant" else 0.0, abs=1e-9)


def test_cosine_halfway_is_half_the_peak():
    lr = learning_rate(TrainConfig(learning_rate=1e-3, lr_schedule="cosine", epochs=2), 100)
    assert _lr_at(lr, 100) == pytest.approx(0.5e-3)


# -- data order and augmentation ----------------------------------------------------------


def _batches(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds]


@pytest.fixture(scope="module")
def small_xy(mnist):
    from mnist_bench import one_hot, preprocess_images

    return preprocess_images(mnist.x_train[:300]), one_hot(mnist.y_train[:300])


@pytest.mark.parametrize("augment, elastic_alpha", [(False, 0.0), (True, 0.0), (True, 34.0)])
def test_epoch_dataset_is_a_pure_function_of_seed_and_epoch(small_xy, augment, elastic_alpha):
    x, y = small_xy
    config = TrainConfig(batch_size=64, augment=augment, seed=7, elastic_alpha=elastic_alpha)
    first, again = (
        _batches(epoch_dataset(x, y, config, 3)),
        _batches(epoch_dataset(x, y, config, 3)),
    )
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other_epoch = _batches(epoch_dataset(x, y, config, 4))
    assert not np.array_equal(first[0][1], other_epoch[0][1])  # reshuffled each epoch


def test_epoch_dataset_visits_every_image_once(small_xy):
    x, y = small_xy
    batches = _batches(epoch_dataset(x, y, TrainConfig(batch_size=64), 0))
    assert [len(b[0]) for b in batches] == [64, 64, 64, 64, 44]
    seen = np.concatenate([b[0] for b in batches]).reshape(300, -1)
    assert sorted(map(bytes, seen)) == sorted(map(bytes, x.reshape(300, -1)))


def test_zero_strength_augmentation_is_the_identity(small_xy):
    x, _ = small_xy
    config = TrainConfig(augment=True, rotation_deg=0.0, shift_px=0.0, zoom=0.0)
    out = random_affine(tf.constant(x[:16]), tf.constant([1, 2], tf.int64), config).numpy()
    np.testing.assert_array_equal(out, x[:16])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_pure_shift_moves_the_centre_of_mass_by_the_drawn_offset(seed):
    # A small square well inside the frame: shifting it loses no ink, so its centre of mass
    # moves by exactly the offset drawn from the same stateless stream.
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 11:17, 12:16, 0] = 1.0
    config = TrainConfig(augment=True, rotation_deg=0.0, zoom=0.0, shift_px=3.0)
    key = tf.constant([seed, 0], tf.int64)
    out = random_affine(tf.constant(image), key, config).numpy()[0, :, :, 0]
    u = tf.random.stateless_uniform((1, 4), key, minval=-1.0, maxval=1.0).numpy()[0]
    rows, cols = np.indices(out.shape)
    assert out.sum() == pytest.approx(image.sum(), rel=1e-5)
    assert (out * cols).sum() / out.sum() - 13.5 == pytest.approx(3.0 * u[2], abs=1e-4)
    assert (out * rows).sum() / out.sum() - 13.5 == pytest.approx(3.0 * u[3], abs=1e-4)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_augmented_images_stay_images(small_xy, seed):
    x, _ = small_xy
    config = TrainConfig(augment=True)
    out = random_affine(tf.constant(x[:32]), tf.constant([seed, 1], tf.int64), config).numpy()
    assert out.shape == (32, 28, 28, 1) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    # rotation <= 10 deg, zoom <= 10%, shift <= 2 px keep most of the ink inside the frame
    ratio = out.sum(axis=(1, 2, 3)) / x[:32].sum(axis=(1, 2, 3))
    assert np.all((ratio > 0.75) & (ratio < 1.3)), ratio
    assert math.isfinite(float(out.sum()))


PHOTOMETRIC = TrainConfig(augment=True, contrast=0.7, brightness=0.5, noise_std=0.3)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_photometric_distortion_is_seeded_stays_in_range_and_draws_within_its_bounds(
    small_xy, seed
):
    x = tf.constant(small_xy[0][:32])
    key = tf.constant([seed, 5], tf.int64)
    out = random_photometric(x, key, PHOTOMETRIC).numpy()
    np.testing.assert_array_equal(out, random_photometric(x, key, PHOTOMETRIC).numpy())
    assert out.shape == (32, 28, 28, 1) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.array_equal(out, x.numpy())
    # Without noise the map is affine per image, x * factor + offset, clipped: the black
    # background becomes the offset, the brightest stroke at most factor + offset.
    no_noise = PHOTOMETRIC.replace(noise_std=0.0)
    clean = random_photometric(x, key, no_noise).numpy()
    background = clean[:, 0, 0, 0]
    assert np.all((background >= 0.0) & (background <= 0.5))
    assert np.all(clean.max(axis=(1, 2, 3)) >= 0.3 - 1e-6)


def test_photometric_distortion_runs_in_the_epoch_and_only_when_asked(small_xy):
    x, y = small_xy
    geometric = TrainConfig(batch_size=64, augment=True, seed=3)
    both = geometric.replace(brightness=0.5)
    first, second = (_batches(epoch_dataset(x, y, c, 0)) for c in (geometric, both))
    # The same geometric draw, then a non-negative offset: never darker, and here brighter.
    assert np.all(second[0][0] >= first[0][0] - 1e-6)
    assert second[0][0].mean() > first[0][0].mean()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_erasing_fills_one_seeded_rectangle_with_one_grey(small_xy, seed):
    x = tf.constant(small_xy[0][:32])
    key = tf.constant([seed, 9], tf.int64)
    always = TrainConfig(augment=True, erasing=1.0)
    out = random_erasing(x, key, always).numpy()
    np.testing.assert_array_equal(out, random_erasing(x, key, always).numpy())
    np.testing.assert_array_equal(random_erasing(x, key, always.replace(erasing=0.0)), x)
    for image, erased in zip(x.numpy()[..., 0], out[..., 0], strict=True):
        rows, cols = np.nonzero(erased != image)
        if rows.size == 0:
            continue  # the grey drawn equals every pixel it covers (e.g. black on background)
        box = erased[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert np.all(box == box[0, 0])  # one rectangle, one grey level
        # At most 40% of the area, plus the pixels a box edge can catch: (h + 1)(w + 1) with
        # h, w <= 28 and h * w <= 0.4 * 784 stays under 46%.
        assert box.size <= 0.46 * 784


def test_random_erasing_runs_in_the_epoch_only_when_asked(small_xy):
    x, y = small_xy
    geometric = TrainConfig(batch_size=64, augment=True, seed=3)
    first, erased = (
        _batches(epoch_dataset(x, y, c, 0)) for c in (geometric, geometric.replace(erasing=1.0))
    )
    changed = [np.any(a != b) for a, b in zip(first[0][0], erased[0][0], strict=True)]
    assert sum(changed) > len(changed) // 2


ELASTIC = TrainConfig(augment=True, elastic_alpha=34.0, elastic_sigma=4.0)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_bilinear_sampler_matches_tensorflows_projective_transform(small_xy, seed):
    # The elastic path resamples with bilinear_sample; on the affine coordinates alone it must
    # read what ImageProjectiveTransformV3 reads (pixel centres, zero outside).
    x = tf.constant(small_xy[0][:16])
    key = tf.constant([seed, 3], tf.int64)
    config = TrainConfig(augment=True, rotation_deg=30.0, zoom=0.3, shift_px=6.0)
    a0, a1, a2, b0, b1, b2 = np.split(_affine_transforms(16, key, config).numpy()[:, :6], 6, 1)
    rows, cols = np.indices((28, 28), dtype=np.float32)
    x_in = a0[:, :, None] * cols + a1[:, :, None] * rows + a2[:, :, None]
    y_in = b0[:, :, None] * cols + b1[:, :, None] * rows + b2[:, :, None]
    ours = bilinear_sample(x, tf.constant(x_in), tf.constant(y_in)).numpy()
    np.testing.assert_allclose(ours, random_affine(x, key, config).numpy(), atol=1e-5)


def test_without_elastic_the_distortion_is_the_affine_one_bit_for_bit(small_xy):
    # The published recipes have elastic_alpha 0: their augmentation must not change.
    x, key = tf.constant(small_xy[0][:16]), tf.constant([5, 6], tf.int64)
    config = TrainConfig(augment=True)
    np.testing.assert_array_equal(
        random_distortion(x, key, config).numpy(), random_affine(x, key, config).numpy()
    )


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_elastic_field_is_smooth_seeded_and_scales_with_alpha(seed):
    key = tf.constant([seed, 9], tf.int64)
    dx, dy = (f.numpy() for f in elastic_displacement(8, key, 34.0, 4.0))
    again = elastic_displacement(8, key, 34.0, 4.0)[0].numpy()
    np.testing.assert_array_equal(dx, again)
    assert not np.array_equal(dx, dy)  # two independent fields
    double = elastic_displacement(8, key, 68.0, 4.0)[0].numpy()
    np.testing.assert_allclose(double, 2.0 * dx, rtol=1e-5, atol=1e-6)
    # A Gaussian of sigma 4 px: neighbouring displacements nearly equal, a pixel or so in size.
    neighbour_corr = np.corrcoef(dx[:, :, :-1].ravel(), dx[:, :, 1:].ravel())[0, 1]
    assert neighbour_corr > 0.9
    assert 0.3 < dx.std() < 3.0 and np.abs(dx).max() < 14.0


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_elastic_images_stay_images_and_differ_from_affine_only(small_xy, seed):
    x, key = tf.constant(small_xy[0][:32]), tf.constant([seed, 1], tf.int64)
    out = random_distortion(x, key, ELASTIC).numpy()
    assert out.shape == (32, 28, 28, 1) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    ratio = out.sum(axis=(1, 2, 3)) / small_xy[0][:32].sum(axis=(1, 2, 3))
    # Stretching and squeezing strokes changes their ink (measured: 0.44x to 2.0x over 6,000
    # draws at alpha 34), but no digit vanishes or floods the frame.
    assert np.all((ratio > 0.25) & (ratio < 3.0)), ratio
    affine_only = random_affine(x, key, ELASTIC).numpy()
    assert np.abs(out - affine_only).mean() > 0.01  # the elastic part does something


def test_finished_run_without_checkpoint_is_refused(mnist, one_epoch_folder):
    folder = copy_of(one_epoch_folder)
    (folder / CHECKPOINT_FILE).unlink()
    with pytest.raises(ValueError, match=r"metrics\.json: the run is finished but checkpoint"):
        train(tiny_config(epochs=1, **PLAIN), mnist, folder)


# -- distribution -------------------------------------------------------------------------

# Logical devices must be configured before TensorFlow starts, so the mirrored runs happen in
# a fresh interpreter that splits this machine's CPU into two devices, the CPU stand-in for
# two GPUs. It prints one JSON line per run.
_MIRRORED_SCRIPT = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mnist_bench import TrainConfig, load_mnist, train
data = load_mnist(sys.argv[1])
config = TrainConfig.from_json(sys.argv[2])
for strategy in ("mirrored", "mirrored", "default"):
    result = train(config.replace(strategy=strategy), data)
    print(json.dumps({
        "strategy": strategy,
        "replicas": result.metrics["replicas"],
        "digest": result.metrics["weights_digest"],
        "losses": [row["loss"] for row in result.history],
    }))
"""


@pytest.mark.slow  # two subprocesses importing TensorFlow and training: ~50 s of the fast tier
def test_mirrored_strategy_trains_on_two_devices_deterministically(mnist_dir, tmp_path):
    config = tiny_config(train_subset=512)
    runs = [
        json.loads(line)
        for line in subprocess.run(
            [sys.executable, "-c", _MIRRORED_SCRIPT, str(mnist_dir), config.to_json()],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout.splitlines()
    ]
    mirrored, again, default = runs
    assert (mirrored["replicas"], default["replicas"]) == (2, 1)
    assert again["digest"] == mirrored["digest"]  # deterministic across replicas too
    # Per-replica batch norm sees half batches: close to one device, but not the same bits.
    assert default["digest"] != mirrored["digest"]
    assert mirrored["losses"][-1] < mirrored["losses"][0]
    assert all(math.isfinite(loss) for loss in mirrored["losses"])
