"""The MNIST-C corruption suite: properties every corruption must have, and spot checks of
what some of them do, on a handful of real test digits."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_bench.corruptions import CORRUPTIONS, SEVERITIES, corrupt

MNIST_C_ORDER = [
    *("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate"),
    *("brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag"),
    "canny_edges",
]
UNSEEDED = {"scale", "brightness", "stripe", "canny_edges"}  # MNIST-C draws nothing for these
N_DIGITS = 16  # enough that two seeds flipping a random sign per digit cannot all agree


@pytest.fixture(scope="module")
def digits(mnist) -> np.ndarray:
    return mnist.x_test[:N_DIGITS].copy()


def test_the_registry_is_mnist_c_in_its_order():
    assert list(CORRUPTIONS) == MNIST_C_ORDER
    assert list(SEVERITIES) == MNIST_C_ORDER


@pytest.mark.parametrize("name", MNIST_C_ORDER)
@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_corruption_is_a_pure_function_of_images_and_seed(name, seed, digits):
    before = digits.copy()
    out = CORRUPTIONS[name](digits, seed)
    assert out.dtype == np.uint8 and out.shape == digits.shape
    assert np.array_equal(digits, before), "the input was modified"
    assert np.array_equal(out, CORRUPTIONS[name](digits, seed)), "same seed, different bytes"
    changed = np.any(out != digits, axis=(1, 2))
    assert changed.all(), f"{name} left digits {np.flatnonzero(~changed)} unchanged"


@pytest.mark.parametrize("name", sorted(set(MNIST_C_ORDER) - UNSEEDED))
def test_a_random_corruption_depends_on_its_seed(name, digits):
    assert not np.array_equal(CORRUPTIONS[name](digits, 0), CORRUPTIONS[name](digits, 1))


@pytest.mark.parametrize("name", sorted(UNSEEDED))
def test_a_deterministic_corruption_ignores_the_seed(name, digits):
    assert np.array_equal(CORRUPTIONS[name](digits, 0), CORRUPTIONS[name](digits, 12345))


def test_an_empty_batch_comes_back_empty():
    empty = np.zeros((0, 28, 28), np.uint8)
    assert all(fn(empty, 0).shape == (0, 28, 28) for fn in CORRUPTIONS.values())


@pytest.mark.parametrize(
    "images",
    [np.zeros((2, 28, 28), np.float32), np.zeros((28, 28), np.uint8), np.zeros((2, 784), np.uint8)],
    ids=["float", "one-image", "flat"],
)
def test_anything_but_uint8_n_28_28_is_refused(images):
    with pytest.raises(ValueError, match=r"uint8 of shape \(N, 28, 28\)"):
        CORRUPTIONS["fog"](images, 0)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_a_bad_seed_is_refused(seed, digits):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        CORRUPTIONS["shot_noise"](digits, seed)


def test_an_unknown_name_lists_the_known_ones(digits):
    with pytest.raises(ValueError, match=r"unknown corruption 'snow'.*canny_edges"):
        corrupt("snow", digits, 0)
    assert np.array_equal(corrupt("zigzag", digits, 7), CORRUPTIONS["zigzag"](digits, 7))


def test_brightness_adds_half_the_range(digits):
    out = CORRUPTIONS["brightness"](digits, 0).astype(np.float64)
    expected = digits + 127.5  # + 0.5 of the range, then rounded to a whole level
    np.testing.assert_array_equal(out[expected > 255], 255)
    np.testing.assert_array_equal(np.abs(out - expected)[expected < 255], 0.5)
    assert (out[digits == 0] == 128).all()


def test_stripe_inverts_the_outer_seven_columns_on_each_side(digits):
    out = CORRUPTIONS["stripe"](digits, 0)
    outer = np.r_[0:7, 21:28]
    assert np.array_equal(out[:, :, outer], 255 - digits[:, :, outer])
    assert np.array_equal(out[:, :, 7:21], digits[:, :, 7:21])


def _shifted(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`image` moved by whole pixels, zeros coming in."""
    padded = np.pad(image, 3)
    return padded[3 - rows : 31 - rows, 3 - cols : 31 - cols]


def test_translate_moves_each_digit_three_pixels_on_each_axis(digits):
    out = CORRUPTIONS["translate"](digits, 3)
    for image, moved in zip(digits, out, strict=True):
        candidates = [_shifted(image, r, c) for r in (-3, 3) for c in (-3, 3)]
        assert any(np.array_equal(moved, c) for c in candidates)


def test_scale_shrinks_the_digit_to_seventy_percent_about_the_centre(digits):
    ink = CORRUPTIONS["scale"](digits, 0).astype(np.float64).sum(axis=(1, 2))
    np.testing.assert_allclose(ink / digits.astype(np.float64).sum(axis=(1, 2)), 0.49, rtol=0.05)


def test_rotation_keeps_the_ink_and_turns_it(digits):
    out = CORRUPTIONS["rotate"](digits, 0)
    ink = out.astype(np.float64).sum(axis=(1, 2)) / digits.astype(np.float64).sum(axis=(1, 2))
    np.testing.assert_allclose(ink, 1.0, atol=0.05)


def test_canny_edges_are_binary(digits):
    assert set(np.unique(CORRUPTIONS["canny_edges"](digits, 0))) <= {0, 255}
