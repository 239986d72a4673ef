"""Tests of the architectures, their documented sizes and FLOPs, and saving/loading models."""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py
import keras
import numpy as np
import pytest
from file_factories import bytes_file
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import layers

from mnist_bench import MODEL_NAMES, TrainConfig, build_model, load_model, model_flops, save_model
from mnist_bench.config import MODEL_OPTIONS
from mnist_bench.models import (
    build_efficientnet_b0,
    build_reference,
    build_resnet20,
    build_seed,
    h5_published,
    h5_round_trips,
    model_option_defaults,
    model_options,
    newer_keras_needed,
)

BUILDERS = {
    "seed": build_seed,
    "reference": build_reference,
    "resnet20": build_resnet20,
    "efficientnet_b0": build_efficientnet_b0,
}
H5, KERAS = "network_for_mnist.h5", "model.keras"


@pytest.fixture(scope="module")
def models() -> dict[str, keras.Model]:
    """Every architecture, built once for the module (fresh, untrained weights)."""
    keras.utils.set_random_seed(0)
    return {name: build_model(name) for name in MODEL_NAMES}


def _forward(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def _random_images(n: int, seed: int, fill: str) -> np.ndarray:
    if fill == "random":
        return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)
    return np.full((n, 28, 28, 1), 1.0 if fill == "ones" else 0.0, dtype=np.float32)


def image_batches(max_size: int = 64) -> st.SearchStrategy[np.ndarray]:
    """Model inputs: float32 (n, 28, 28, 1) in [0, 1], n in 1..max_size; random or constant."""
    return st.builds(
        _random_images,
        n=st.integers(1, max_size),
        seed=st.integers(0, 2**32 - 1),
        fill=st.sampled_from(["random", "zeros", "ones"]),
    )


# -- architectures ------------------------------------------------------------------------


def test_model_names():
    assert MODEL_NAMES == ("seed", "reference", "resnet20", "efficientnet_b0")
    assert set(BUILDERS) == set(MODEL_NAMES)  # every architecture has its docstring checked


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_build_model_is_uncompiled_with_mnist_input(models, name):
    model = models[name]
    assert model.name == name
    assert tuple(model.input_shape) == (None, 28, 28, 1)
    assert tuple(model.output_shape) == (None, 10)
    assert not model.compiled


@pytest.mark.parametrize("name", MODEL_NAMES)
@settings(max_examples=6, deadline=None)
@given(x=image_batches())
def test_output_is_a_probability_row_per_image(models, name, x):
    p = _forward(models[name], x)
    assert p.shape == (len(x), 10)
    assert p.dtype == np.float32
    assert ((p >= 0.0) & (p <= 1.0)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["vgg", "Seed", "", "reference "])
def test_unknown_model_raises_listing_names(name):
    message = (
        f"unknown model {name!r}; choose one of ['seed', 'reference', 'resnet20', "
        "'efficientnet_b0']"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        build_model(name)


# -- the reference architecture's options ------------------------------------------------


def test_model_options_are_the_builders_keywords_and_what_configs_accept():
    assert {name: model_options(name) for name in MODEL_NAMES} == MODEL_OPTIONS


def test_option_defaults_are_json_values_that_build_the_default_network():
    defaults = model_option_defaults("reference")
    assert defaults == {"widths": [32, 64, 128], "convs_per_stage": [1, 1, 1],
                        "dense_units": 256, "dropout": 0.3, "standardize": False}  # fmt: skip
    assert json.loads(json.dumps(defaults)) == defaults
    assert model_option_defaults("seed") == {}
    built, default = build_model("reference", **defaults), build_model("reference")
    assert [w.shape for w in built.weights] == [w.shape for w in default.weights]


def _reference_flops(widths, convs, dense_units=256) -> int:
    """Forward FLOPs of build_reference counted by hand: per stage, its first conv (5x5 in
    the first stage, 3x3 after) then 3x3 convs at the same width; the dense head last."""
    total, c_in = 0, 1
    for side, kernel, width, n in zip((28, 14, 7), (5, 3, 3), widths, convs, strict=True):
        total += 2 * side * side * width * kernel * kernel * c_in
        total += (n - 1) * 2 * side * side * width * 3 * 3 * width
        c_in = width
    return total + 2 * 9 * widths[2] * dense_units + 2 * dense_units * 10


@pytest.mark.parametrize(
    ("widths", "convs"),
    [((32, 64, 128), (1, 1, 1)), ((48, 96, 192), (1, 1, 1)), ((8, 16, 24), (2, 3, 1))],
)
def test_reference_options_set_each_stage_width_and_depth(widths, convs):
    model = build_model("reference", widths=list(widths), convs_per_stage=list(convs))
    conv_layers = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert [c.filters for c in conv_layers] == [
        w for w, n in zip(widths, convs, strict=True) for _ in range(n)
    ]
    assert [c.kernel_size for c in conv_layers] == [(5, 5)] + [(3, 3)] * (sum(convs) - 1)
    pools = [layer for layer in model.layers if isinstance(layer, layers.MaxPooling2D)]
    assert [tuple(p.output.shape[1:]) for p in pools] == [
        (14, 14, widths[0]), (7, 7, widths[1]), (3, 3, widths[2]),
    ]  # fmt: skip
    assert tuple(model.output_shape) == (None, 10)
    assert model_flops(model)["forward"] == _reference_flops(widths, convs)


def test_reference_defaults_are_the_documented_architecture(models):
    assert _reference_flops((32, 64, 128), (1, 1, 1)) == model_flops(models["reference"])["forward"]
    dense = [layer for layer in models["reference"].layers if isinstance(layer, layers.Dense)]
    assert [d.units for d in dense] == [256, 10]


def test_standardised_network_ignores_a_brightness_offset_of_its_input():
    # Per-image standardisation: x + b standardises to exactly what x does (same variance),
    # so the whole network's output is unchanged up to float rounding.
    model = build_model("reference", standardize=True)
    x = np.random.default_rng(0).uniform(0.0, 0.7, (4, 28, 28, 1)).astype(np.float32)
    plain = model(x, training=False).numpy()
    np.testing.assert_allclose(model(x + 0.3, training=False).numpy(), plain, atol=1e-5)
    unstandardised = build_model("reference")  # the check above can fail: without it, it does
    assert not np.allclose(unstandardised(x + 0.3).numpy(), unstandardised(x).numpy(), atol=1e-3)
    assert model_flops(model) == model_flops(unstandardised)  # no multiply-adds added
    assert model.count_params() == unstandardised.count_params()  # and nothing learned


def test_standardisation_is_per_image_zero_mean_unit_variance_up_to_its_epsilon():
    # A contrast change a * x is undone up to the epsilon: var(a x) + eps vs a^2 (var x + eps).
    layer = build_model("reference", standardize=True).layers[0]
    x = np.random.default_rng(1).uniform(0.0, 1.0, (3, 28, 28, 1)).astype(np.float32)
    out = layer(x).numpy()
    var = x.var(axis=(1, 2, 3), keepdims=True)
    expected = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / np.sqrt(var + layer.epsilon)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert layer.epsilon < 0.02 * var.min()  # so a contrast change moves it by under 1%


BAD_OPTIONS = {
    "unknown": ({"width": [1, 2, 3]}, "unknown option(s) ['width'] for model 'reference'"),
    "short-widths": ({"widths": [32, 64]}, "widths must be 3 positive integers, got [32, 64]"),
    "zero-convs": ({"convs_per_stage": [1, 0, 1]}, "convs_per_stage must be 3 positive integers"),
    "float-width": ({"widths": [32, 64.0, 128]}, "widths must be 3 positive integers"),
    "string-widths": ({"widths": "abc"}, "widths must be 3 positive integers, got 'abc'"),
    "dense-units": ({"dense_units": 0}, "dense_units must be 1 positive integers, got [0]"),
    "dropout": ({"dropout": 1.0}, "dropout must be a number in [0, 1), got 1.0"),
    "standardize": ({"standardize": 1}, "standardize must be true or false, got 1"),
}


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS.values(), ids=BAD_OPTIONS)
def test_bad_reference_options_raise_naming_the_option(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_model("reference", **options)


def test_seed_model_takes_no_options():
    with pytest.raises(ValueError, match=re.escape("for model 'seed'; allowed: none")):
        build_model("seed", widths=[1, 2, 3])


# -- documented sizes and FLOPs -----------------------------------------------------------


def _documented(name: str) -> tuple[int, float, float]:
    """(parameters, MFLOP, the MFLOP's rounding tolerance) as the builder's docstring states."""
    doc = " ".join(BUILDERS[name].__doc__.split())  # the statement may wrap
    match = re.search(r"([\d,]+) parameters; (\d+)\.(\d+) MFLOP forward per image", doc)
    assert match, f"build_{name}'s docstring states no parameter and FLOP count"
    params, whole, decimals = match.groups()
    return int(params.replace(",", "")), float(f"{whole}.{decimals}"), 0.5 * 10.0 ** -len(decimals)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_count_is_the_documented_one(models, name):
    params, _, _ = _documented(name)
    assert models[name].count_params() == params


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_flops_are_the_documented_ones(models, name):
    _, mflop, tolerance = _documented(name)
    assert abs(model_flops(models[name])["forward"] / 1e6 - mflop) <= tolerance


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_flops_are_three_forward_passes(models, name):
    flops = model_flops(models[name])
    assert flops["training"] == 3 * flops["forward"] > 0
    assert all(isinstance(v, int) for v in flops.values())


# (input shape, layers, forward FLOPs counted by hand; a multiply-add is 2 FLOPs)
TINY_NETS = {
    # conv (6, 6, 4) outputs x 3*3*3 taps; dense 144 inputs x 5 units
    "conv+dense": ((8, 8, 3), [layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(5)], 9216),
    # 'same' + stride 2: (5, 5, 2) outputs x 3*5*1 taps = 750 MACs; dense 50 x 3 = 150 MACs
    "strided-same-conv": (
        (10, 10, 1),
        [layers.Conv2D(2, (3, 5), strides=2, padding="same"), layers.Flatten(), layers.Dense(3)],
        1800,
    ),
    # pooling, batch norm and activations count 0; dense 16 inputs x 1 unit
    "pool+dense": (
        (8, 8, 1),
        [layers.MaxPooling2D(), layers.BatchNormalization(), layers.Flatten(), layers.Dense(1)],
        32,
    ),
    # groups=2: each of the (4, 4, 4) outputs sees 3*3*2 inputs = 288 MACs
    "grouped-conv": ((6, 6, 4), [layers.Conv2D(4, 3, groups=2)], 2304),
    # Dense on a (4, 4, 3) input runs at each of the 16 positions: 16 x 3 x 2 = 96 MACs
    "dense-on-map": ((4, 4, 3), [layers.Dense(2)], 192),
    # depthwise, multiplier 2: (4, 4, 6) outputs x 3*3 taps each (no sum over channels)
    "depthwise-conv": ((6, 6, 3), [layers.DepthwiseConv2D(3, depth_multiplier=2)], 1728),
}


def test_flops_of_a_nested_model_count_its_layers():
    # "conv+dense" of TINY_NETS with its conv wrapped in a model of its own
    inner = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3)])  # 2 x 6*6*4 x 27
    outer = keras.Sequential([keras.Input((8, 8, 3)), inner, layers.Flatten(), layers.Dense(5)])
    assert model_flops(inner)["forward"] == 7776
    assert model_flops(outer)["forward"] == 7776 + 2 * 144 * 5 == 9216


@pytest.mark.parametrize(("shape", "net_layers", "expected"), TINY_NETS.values(), ids=TINY_NETS)
def test_flops_of_tiny_nets_match_hand_counts(shape, net_layers, expected):
    model = keras.Sequential([keras.Input(shape), *net_layers])
    assert model_flops(model) == {"forward": expected, "training": 3 * expected}


# -- saving and loading -------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe_images() -> np.ndarray:
    return _random_images(16, seed=1, fill="random")


@pytest.fixture(scope="module", params=MODEL_NAMES)
def saved(request, models, tmp_path_factory) -> tuple[keras.Model, Path]:
    """(model, folder) after `save_model` into a not yet existing nested folder."""
    folder = tmp_path_factory.mktemp(f"saved-{request.param}") / "not" / "yet"
    paths = save_model(models[request.param], folder)
    assert paths == {"h5": folder / H5, "keras": folder / KERAS}
    return models[request.param], folder


def test_save_model_writes_both_files_and_no_temporary_ones(saved):
    _, folder = saved
    assert sorted(os.listdir(folder)) == sorted([H5, KERAS])
    assert (folder / H5).read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # the HDF5 signature
    assert (folder / KERAS).read_bytes()[:4] == b"PK\x03\x04"  # a zip archive


def test_save_model_overwrites_in_place(saved, tmp_path):
    model, folder = saved
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    save_model(model, copy)
    assert sorted(os.listdir(copy)) == sorted([H5, KERAS])


def test_a_standardising_model_is_saved_as_keras_only_because_h5_would_lose_it(tmp_path):
    model = build_model("reference", convs_per_stage=[1, 2, 2], standardize=True)
    assert not h5_round_trips(model) and not h5_published({"standardize": True})
    (tmp_path / H5).write_bytes(b"stale")  # an older save's file is removed, not left behind
    assert save_model(model, tmp_path) == {"keras": tmp_path / KERAS}
    assert sorted(os.listdir(tmp_path)) == [KERAS]
    # Why: Keras' HDF5 loader drops the three-axis `axis` of the standardisation layer. The
    # day a Keras release loads it back, this fails: then the .h5 file can come back.
    model.save(tmp_path / "direct.h5")
    loaded = keras.models.load_model(tmp_path / "direct.h5")
    axis = {layer.name: layer.get_config().get("axis") for layer in loaded.layers}
    assert axis["per_image_standardization"] != [1, 2, 3]


def test_every_other_model_round_trips_through_h5(models):
    # the deeper networks included: keras.applications' EfficientNet-B0 and the ResNet too
    assert all(h5_round_trips(model) for model in models.values())
    assert h5_published({}) and h5_published({"convs_per_stage": [1, 2, 2]})


# Each file format, through the package's loader and plain Keras, for every architecture
# (what a format keeps depends on the layers); how a folder names its file, for one.
FILE_LOADERS = {
    "keras-file": lambda folder: load_model(folder / KERAS),
    "h5-file": lambda folder: load_model(folder / H5),
    "plain-keras-on-keras-file": lambda folder: keras.models.load_model(folder / KERAS),
    "plain-keras-on-h5-file": lambda folder: keras.models.load_model(folder / H5),
}
FOLDER_LOADERS = {
    "folder": lambda folder: load_model(folder),
    "folder-as-str": lambda folder: load_model(str(folder)),
}


def _assert_same_network(loaded: keras.Model, model: keras.Model, images: np.ndarray) -> None:
    assert loaded.count_params() == model.count_params()
    assert np.array_equal(_forward(loaded, images), _forward(model, images))


@pytest.mark.parametrize("how", FILE_LOADERS)
def test_loaded_model_predicts_identically(saved, probe_images, how):
    model, folder = saved
    _assert_same_network(FILE_LOADERS[how](folder), model, probe_images)


@pytest.mark.parametrize("how", FOLDER_LOADERS)
def test_a_folder_or_its_name_as_text_loads(models, probe_images, tmp_path, how):
    save_model(models["reference"], tmp_path)
    loaded = FOLDER_LOADERS[how](tmp_path)
    _assert_same_network(loaded, models["reference"], probe_images)


def test_folder_with_only_the_h5_file_loads_it(models, probe_images, tmp_path):
    save_model(models["reference"], tmp_path / "both")
    shutil.copy(tmp_path / "both" / H5, tmp_path / H5)
    _assert_same_network(load_model(tmp_path), models["reference"], probe_images)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[keras.Model, Path]:
    """(model, folder): the seed model compiled with Adam, one step taken, then saved."""
    model = build_model("seed")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    x = _random_images(8, seed=2, fill="random")
    model.fit(x, np.eye(10, dtype=np.float32)[np.arange(8)], epochs=1, verbose=0)
    folder = tmp_path_factory.mktemp("trained")
    save_model(model, folder)
    return model, folder


def test_save_model_leaves_the_model_compile_config_whole(trained):
    model, _ = trained
    assert "optimizer" in model.get_compile_config()  # Keras' .h5 writer used to pop it


@pytest.mark.parametrize("name", [KERAS, H5])
def test_saved_files_keep_the_optimizer(trained, name):
    model, folder = trained
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Skipping variable loading")
        loaded = load_model(folder / name)
    assert type(loaded.optimizer) is keras.optimizers.Adam
    assert float(loaded.optimizer.learning_rate) == pytest.approx(1e-3)
    if name == KERAS:  # the native format also holds Adam's step count and moments
        saved_state = [keras.ops.convert_to_numpy(v) for v in loaded.optimizer.variables]
        state = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
        assert len(saved_state) == len(state)
        assert all(np.array_equal(a, b) for a, b in zip(saved_state, state, strict=True))


_RANDOM_BYTES = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()

_EMPTY_ZIP = b"PK\x05\x06" + bytes(18)  # a valid zip archive holding nothing

# (how the bad path is made, what the message says besides the path)
BAD_MODEL_PATHS = {
    "missing-file": (bytes_file("missing.keras", None), "no such model file"),
    "missing-folder": (bytes_file("no_such_folder", None), "no such model file"),
    "folder-without-models": (
        lambda tmp: tmp,
        "folder holds neither model.keras nor network_for_mnist.h5",
    ),
    "txt-file": (bytes_file("model.txt", b"not a model\n"), "expected a .keras or .h5 file"),
    "corrupt-keras": (bytes_file("model.keras", _RANDOM_BYTES), "damaged or not a .keras file"),
    "corrupt-h5": (bytes_file("model.h5", _RANDOM_BYTES), "damaged or not an .h5 file"),
    "empty-keras": (bytes_file("model.keras", b""), "damaged or not a .keras file"),
    "text-as-keras-in-folder": (
        lambda tmp: bytes_file(KERAS, b"hello\n")(tmp).parent,
        "damaged or not a .keras file",
    ),
    "zip-without-model": (bytes_file("model.keras", _EMPTY_ZIP), "not a readable Keras model"),
}


@pytest.mark.parametrize(("make", "message"), BAD_MODEL_PATHS.values(), ids=BAD_MODEL_PATHS)
def test_load_model_errors_name_the_path(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        load_model(path)
    assert str(path) in str(e.value)


def _from_keras(version: str, path: Path) -> Path:
    """A small model saved at `path` (.keras or .h5) as a Keras `version` would have saved it:
    the file records that version, and its Dense layer carries an argument this Keras does
    not know (as the published models' initializers carry `input_axes`, new in Keras 3.15)."""
    model = keras.Sequential([keras.Input((4,)), layers.Dense(2, name="dense")])
    if path.suffix == ".keras":
        model.save(path)
        with zipfile.ZipFile(path) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
        config = json.loads(files["config.json"])
        config["config"]["layers"][-1]["config"]["from_the_future"] = 1
        files["config.json"] = json.dumps(config).encode()
        files["metadata.json"] = json.dumps({"keras_version": version}).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras' "HDF5 is legacy" warning
            model.save(path)
        with h5py.File(path, "r+") as f:
            config = json.loads(f.attrs["model_config"])
            config["config"]["layers"][-1]["config"]["from_the_future"] = 1
            f.attrs["model_config"] = json.dumps(config)
            f.attrs["keras_version"] = version
    return path


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_from_a_newer_keras_names_both_versions_and_the_upgrade(tmp_path, suffix):
    path = _from_keras("99.0.1", tmp_path / f"model{suffix}")
    with pytest.raises(ValueError) as e:
        load_model(path)
    message = str(e.value)
    assert message.startswith(f"{path}: saved by Keras 99.0.1, not readable by the older Keras")
    assert f"Keras {keras.__version__} installed here" in message
    assert "pip install --upgrade 'keras>=99.0.1'" in message and "from_the_future" in message
    assert message.startswith(f"{path}: {newer_keras_needed(path)} (")  # what checks add too
    # The same file recorded as written by this Keras: no upgrade to suggest, Keras' error.
    path = _from_keras(keras.__version__, tmp_path / f"same{suffix}")
    assert newer_keras_needed(path) is None
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable Keras model")) as e:
        load_model(path)
    assert "pip install" not in str(e.value)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_docs_models_table_states_the_recipe_networks_size(name):
    # The table describes what the published recipes train, options included.
    page = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text()
    row = re.search(rf"^\| `{name}` \|.* \| ([\d,]+) \| ([\d.]+) M \|$", page, re.MULTILINE)
    assert row, f"docs/reference.md's models table has no row for {name!r}"
    model = build_model(name, **TrainConfig.recipe(name).model_options)
    assert int(row.group(1).replace(",", "")) == model.count_params()
    assert row.group(2) == f"{model_flops(model)['forward'] / 1e6:.1f}"
