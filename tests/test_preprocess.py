"""mnist_bench.preprocess: scaling, one-hot labels, and photos of digits made MNIST-style."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mnist_bench import one_hot, prepare_photo, preprocess_images
from mnist_bench.preprocess import load_image_file, prepare_image_file

EXACT = np.arange(256, dtype=np.float32) / np.float32(255)  # the exact float32 of p / 255

batches = hnp.arrays(np.uint8, st.tuples(st.integers(0, 4), st.just(28), st.just(28)))


def _bbox(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of the bounding box of the non-zero pixels."""
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    mass = image.sum(dtype=np.float64)
    return (rows * image).sum() / mass, (cols * image).sum() / mass


# -- preprocess_images ------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(x=batches)
def test_preprocess_is_exactly_pixel_over_255_in_every_layout(x):
    n = len(x)
    out = preprocess_images(x)
    assert out.shape == (n, 28, 28, 1) and out.dtype == np.float32
    assert ((out >= 0) & (out <= 1)).all()
    np.testing.assert_array_equal(out[..., 0], EXACT[x])  # exact, and in the same order
    for layout in (x[..., None], x.reshape(n, 784)):
        np.testing.assert_array_equal(preprocess_images(layout), out)


@settings(max_examples=30, deadline=None)
@given(x=batches, dtype=st.sampled_from([np.int64, np.int16, np.float32, np.float64]))
def test_preprocess_other_dtypes_mean_the_same_pixels(x, dtype):
    np.testing.assert_array_equal(preprocess_images(x.astype(dtype)), preprocess_images(x))


@settings(max_examples=50, deadline=None)
@given(x=hnp.arrays(np.uint8, st.tuples(st.integers(0, 12), st.just(28), st.just(28))),
       data=st.data())  # fmt: skip
def test_preprocess_commutes_with_batching(x, data):
    # Preprocessing a dataset in one go or batch by batch gives the same array, in order.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(x)), max_size=4)))
    pieces = [preprocess_images(part) for part in np.split(x, cuts)]
    np.testing.assert_array_equal(np.concatenate(pieces), preprocess_images(x))
    labels = data.draw(hnp.arrays(np.uint8, len(x), elements=st.integers(0, 9)))
    parts = [one_hot(part) for part in np.split(labels, cuts)]
    np.testing.assert_array_equal(np.concatenate(parts).reshape(-1, 10), one_hot(labels))


def test_preprocess_does_not_modify_its_input():
    x = np.full((2, 28, 28), 200.0)
    preprocess_images(x)
    assert (x == 200.0).all()


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((28, 28)), r"shape \(n, 28, 28\), \(n, 28, 28, 1\) or \(n, 784\), got shape"),
        (np.zeros((2, 28, 28, 3)), r"got shape \(2, 28, 28, 3\)"),
        (np.zeros((2, 27, 27)), r"got shape \(2, 27, 27\)"),
        (np.zeros((2, 783)), r"got shape \(2, 783\)"),
        (np.full((1, 28, 28), -1), r"pixel values in \[0, 255\], got values in \[-1, -1\]"),
        (np.full((1, 784), 256.0), r"pixel values in \[0, 255\], got values in \[256.0, 256.0\]"),
        (np.full((1, 28, 28), np.nan), "NaN or infinite"),
        (np.full((1, 28, 28), np.inf), "NaN or infinite"),
        (np.full((1, 28, 28), "1"), "integer or float array, got dtype <U1"),
        (np.zeros((1, 28, 28), bool), "integer or float array, got dtype bool"),
        (np.zeros((1, 28, 28), complex), "integer or float array, got dtype complex128"),
    ],
    ids=["2d", "rgb", "27x27", "783", "negative", "above-255", "nan", "inf", "str", "bool", "cx"],
)
def test_preprocess_rejects_bad_input_with_reason(x, message):
    with pytest.raises(ValueError, match=message):
        preprocess_images(x)


# -- one_hot ----------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(data=st.data(), num_classes=st.integers(1, 12))
def test_one_hot_inverts_by_argmax(data, num_classes):
    y = data.draw(
        hnp.arrays(np.int64, st.integers(0, 40), elements=st.integers(0, num_classes - 1))
    )
    out = one_hot(y, num_classes)
    assert out.shape == (len(y), num_classes) and out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(axis=1), y)
    np.testing.assert_array_equal(out.sum(axis=1), np.ones(len(y)))
    assert set(np.unique(out)) <= {0.0, 1.0}


def test_one_hot_accepts_uint8_and_integral_floats():
    expected = one_hot(np.array([3, 0, 9]))
    np.testing.assert_array_equal(one_hot(np.array([3, 0, 9], np.uint8)), expected)
    np.testing.assert_array_equal(one_hot([3.0, 0.0, 9.0]), expected)


@pytest.mark.parametrize(
    ("y", "kwargs", "message"),
    [
        ([0, 10], {}, r"labels must be in \[0, 9\], got values in \[0, 10\]"),
        ([-1, 2], {}, r"labels must be in \[0, 9\], got values in \[-1, 2\]"),
        ([0, 3], {"num_classes": 3}, r"labels must be in \[0, 2\]"),
        ([0.5, 1], {}, "non-integer values"),
        ([np.nan], {}, "non-integer values"),
        ([[0, 1]], {}, r"shape \(n,\), got shape \(1, 2\)"),
        (3, {}, r"shape \(n,\), got shape \(\)"),
        (["a"], {}, "integer or float array, got dtype <U1"),
        ([0], {"num_classes": 0}, "num_classes must be an integer >= 1, got 0"),
        ([0], {"num_classes": 2.0}, "num_classes must be an integer >= 1, got 2.0"),
    ],
)
def test_one_hot_rejects_bad_input_with_reason(y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        one_hot(y, **kwargs)


# -- prepare_photo ----------------------------------------------------------------------------


def _photo_of_a_seven(noise: bool = True) -> np.ndarray:
    """A dark, thick '7' on light, slightly noisy paper: (400, 300) float, like a phone shot."""
    paper = np.full((400, 300), 230.0)
    paper[60:100, 70:230] = 40.0  # the top bar
    for row in range(100, 340):  # the stem, sliding left as it goes down
        left = int(200 - (row - 100) * 0.45)
        paper[row, left : left + 35] = 40.0
    if noise:
        paper += np.random.default_rng(0).normal(0.0, 4.0, paper.shape)
    return np.clip(paper, 0, 255)


def test_photo_becomes_a_centred_20px_light_on_dark_digit():
    out = prepare_photo(_photo_of_a_seven())
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert max(_bbox(out)) == 20  # the longer side, as MNIST digits
    assert out.max() >= 240  # the ink was stretched to (nearly) full brightness
    assert out[0].max() == out[-1].max() == out[:, 0].max() == out[:, -1].max() == 0
    row, col = _centre_of_mass(out)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1, (row, col)


def test_photo_keeps_the_aspect_ratio():
    dash = np.full((200, 300), 255.0)
    dash[90:110, 50:250] = 0.0  # 20 x 200: a 1:10 bar
    height, width = _bbox(prepare_photo(dash))
    assert width == 20 and height in (2, 3, 4)  # 2 px plus at most one anti-aliased row each side


def test_photo_polarity_and_colour_do_not_matter():
    gray = _photo_of_a_seven(noise=False)
    expected = prepare_photo(gray)
    np.testing.assert_array_equal(prepare_photo(255 - gray), expected)  # light on dark
    np.testing.assert_array_equal(prepare_photo(np.stack([gray] * 3, axis=-1)), expected)
    rgba = np.zeros((*gray.shape, 4))
    rgba[..., 3] = np.where(gray < 128, 255, 0)  # black ink on transparent: composited on white
    ink_on_white = np.where(gray < 128, 0.0, 255.0)
    np.testing.assert_array_equal(prepare_photo(rgba), prepare_photo(ink_on_white))


def test_off_centre_heavy_digit_is_clipped_inside_the_field():
    canvas = np.zeros((100, 100))
    canvas[10:60, 10:60] = 255.0  # a heavy blob pulls the centre of mass to the top left ...
    canvas[10:110, 95:100] = 255.0  # ... of a long thin stroke on the right
    out = prepare_photo(canvas)
    assert max(_bbox(out)) == 20  # nothing was cut off at the field's edge


@pytest.mark.parametrize("index", range(12))
def test_real_digit_on_white_paper_round_trips(mnist, index):
    digit = mnist.x_test[index]
    big = np.kron(255 - digit.astype(np.float64), np.ones((5, 5)))  # dark on light, 140x140
    paper = np.full((300, 420), 255.0)
    paper[40:180, 230:370] = big
    out = prepare_photo(paper.astype(np.uint8))
    correlation = np.corrcoef(out.ravel(), digit.ravel())[0, 1]
    assert correlation > 0.9, correlation


@pytest.mark.parametrize(
    "blank", [np.full((50, 60), 255), np.zeros((28, 28)), np.full((40, 40, 3), 128.0)]
)
def test_blank_image_has_no_ink(blank):
    with pytest.raises(ValueError, match="no ink found"):
        prepare_photo(blank)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10, 2)), r"got shape \(10, 10, 2\)"),
        (np.zeros(10), r"got shape \(10,\)"),
        (np.zeros((0, 10)), "empty"),
        (np.full((10, 10), 300.0), r"\[0, 255\]"),
    ],
)
def test_prepare_photo_rejects_bad_input(image, message):
    with pytest.raises(ValueError, match=message):
        prepare_photo(image)


# -- files ------------------------------------------------------------------------------------


def test_load_image_file_png_jpeg_npy(tmp_path):
    gray = (np.arange(40 * 30) % 256).astype(np.uint8).reshape(40, 30)
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_image_file(tmp_path / "g.png"), gray)
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    jpeg = load_image_file(tmp_path / "c.jpg")
    assert jpeg.shape == (40, 30, 3) and jpeg.dtype == np.uint8
    np.save(tmp_path / "a.npy", gray.astype(np.float32))
    np.testing.assert_array_equal(load_image_file(tmp_path / "a.npy"), gray)


def test_load_image_file_scales_16_bit_png(tmp_path):
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(tmp_path / "w.png")
    np.testing.assert_allclose(load_image_file(tmp_path / "w.png"), [[0.0, 255.0]])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.png", b"", "cannot read image"),
        ("corrupt.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "cannot read image"),
        ("empty.npy", b"", "cannot read image"),
        ("corrupt.npy", b"\x93NUMPY garbage", "cannot read image"),
    ],
)
def test_load_image_file_bad_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_image_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(5), r"expected an image of shape"),
        (np.zeros((0, 4)), "empty"),
        (np.array([None, 1], dtype=object), "cannot read image"),  # pickles are refused
    ],
)
def test_load_image_file_bad_npy_arrays_are_named(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(ValueError, match=message) as info:
        load_image_file(path)
    assert str(path) in str(info.value)


def test_load_image_file_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="cannot read image") as info:
        load_image_file(tmp_path / "nope.png")
    assert "nope.png" in str(info.value)


def test_prepare_image_file_takes_28x28_as_is(tmp_path, mnist):
    shifted = np.roll(mnist.x_test[0], 4, axis=1)  # off-centre on purpose: must stay so
    np.save(tmp_path / "d.npy", shifted)
    np.testing.assert_array_equal(prepare_image_file(tmp_path / "d.npy"), shifted)
    Image.fromarray(255 - shifted).save(tmp_path / "d.png")  # dark on light: only inverted
    np.testing.assert_array_equal(prepare_image_file(tmp_path / "d.png"), shifted)


def test_prepare_image_file_runs_prepare_photo_on_photos(tmp_path):
    photo = _photo_of_a_seven().astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "seven.png")
    np.testing.assert_array_equal(prepare_image_file(tmp_path / "seven.png"), prepare_photo(photo))
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(ValueError, match="no ink found") as info:
        prepare_image_file(tmp_path / "blank.png")
    assert "blank.png" in str(info.value)
