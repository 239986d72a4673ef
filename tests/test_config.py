"""Tests of `TrainConfig`: validation, recipes, immutability and the JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_bench import TrainConfig
from mnist_bench.config import RECIPES

# The architectures a config may name, as its errors list them.
MODELS = "['seed', 'reference', 'resnet20', 'efficientnet_b0']"

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


# -- strategies ---------------------------------------------------------------------------


def json_values() -> st.SearchStrategy:
    """Anything JSON writes and reads back unchanged: scalars, lists and str-keyed dicts."""
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    scalars |= st.floats(allow_nan=False, allow_infinity=False)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    )


def _floats(low: float, high: float, **exclude: bool) -> st.SearchStrategy:
    return st.floats(low, high, allow_nan=False, allow_infinity=False, **exclude)


def reference_options() -> st.SearchStrategy[dict]:
    """`model_options` of the reference architecture: any subset of its keywords, in range."""
    three_ints = st.lists(st.integers(1, 512), min_size=3, max_size=3)
    return st.fixed_dictionaries(
        {},
        optional={
            "widths": three_ints,
            "convs_per_stage": three_ints,
            "dense_units": st.integers(1, 4096),
            "dropout": _floats(0.0, 1.0, exclude_max=True),
            "standardize": st.booleans(),
        },
    )


@st.composite
def valid_configs(draw: st.DrawFn) -> TrainConfig:
    """A `TrainConfig` with every field drawn from its whole documented range."""
    epochs = draw(st.integers(1, 1000))
    validation = draw(st.sampled_from(["test", "holdout"]))
    holdout_size = draw(st.integers(1, 59_999))
    available = 60_000 - (holdout_size if validation == "holdout" else 0)  # left to train on
    model = draw(st.sampled_from(["seed", "reference"]))
    return TrainConfig(
        model=model,
        model_options=draw(reference_options() if model == "reference" else st.just({})),
        seed=draw(st.integers(0, 2**32 - 1)),
        epochs=epochs,
        batch_size=draw(st.integers(1, 100_000)),
        learning_rate=draw(_floats(0.0, 1e6, exclude_min=True) | st.integers(1, 10)),
        lr_schedule=draw(st.sampled_from(["constant", "cosine"])),
        warmup_epochs=draw(_floats(0.0, float(epochs)) | st.integers(0, epochs)),
        label_smoothing=draw(_floats(0.0, 1.0, exclude_max=True)),
        weight_averaging=draw(st.none() | _floats(0.0, 1.0, exclude_max=True)),
        recalibrate_batch_norm=draw(st.booleans()),
        augment=draw(st.booleans()),
        rotation_deg=draw(_floats(0.0, 180.0)),
        shift_px=draw(_floats(0.0, 14.0)),
        zoom=draw(_floats(0.0, 1.0, exclude_max=True)),
        elastic_alpha=draw(_floats(0.0, 1000.0)),
        elastic_sigma=draw(_floats(0.0, 28.0, exclude_min=True)),
        contrast=draw(_floats(0.0, 1.0, exclude_max=True)),
        brightness=draw(_floats(0.0, 1.0)),
        noise_std=draw(_floats(0.0, 1.0)),
        erasing=draw(_floats(0.0, 1.0)),
        validation=validation,
        holdout_size=holdout_size,
        train_subset=draw(st.none() | st.integers(1, available)),
        deterministic=draw(st.booleans()),
        strategy=(strategy := draw(st.sampled_from(["default", "mirrored"]))),
        precision=draw(st.sampled_from(["float32", "mixed_bfloat16", "mixed_float16"])),
        # the device input path trains on one device
        augment_on=draw(st.sampled_from(["host", "device"] if strategy == "default" else ["host"])),
        extra=draw(st.dictionaries(st.text(max_size=8), json_values(), max_size=3)),
    )


# -- JSON round trip ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(config=valid_configs())
def test_dict_and_json_round_trips_are_identity(config):
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json()) == config.to_dict()


@pytest.fixture(scope="module")
def json_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("configs")  # module-scoped: hypothesis reruns the test body


@settings(max_examples=25, deadline=None)
@given(config=valid_configs())
def test_file_round_trip_is_identity(config, json_dir):
    path = json_dir / "config.json"
    text = config.to_json(path)
    assert path.read_text() == text
    assert TrainConfig.from_json(path) == config  # a Path
    assert TrainConfig.from_json(str(path)) == config  # a str naming a file


def test_to_dict_holds_every_field_and_is_a_copy():
    config = TrainConfig(extra={"note": ["a"]})
    values = config.to_dict()
    assert list(values) == FIELDS
    values["extra"]["note"].append("b")
    assert config.extra == {"note": ["a"]}


# -- validation ---------------------------------------------------------------------------

# (field, bad value, the message: names the field and the allowed values or range)
INVALID = [
    ("model", "vgg", f"model must be one of {MODELS}, got 'vgg'"),
    ("model", None, f"model must be one of {MODELS}, got None"),
    ("lr_schedule", "linear", "lr_schedule must be one of ['constant', 'cosine']"),
    ("validation", "train", "validation must be one of ['test', 'holdout']"),
    ("seed", -1, "seed must be in [0, 4294967295], got -1"),
    ("seed", 2**32, "seed must be in [0, 4294967295], got 4294967296"),
    ("seed", 1.0, "seed must be an integer, got 1.0"),
    ("seed", True, "seed must be an integer, got True"),
    ("epochs", 0, "epochs must be >= 1, got 0"),
    ("epochs", "3", "epochs must be an integer, got '3'"),
    ("batch_size", 0, "batch_size must be >= 1, got 0"),
    ("holdout_size", 0, "holdout_size must be in [1, 59999], got 0"),
    ("holdout_size", 60_000, "holdout_size must be in [1, 59999], got 60000"),
    ("train_subset", 0, "train_subset must be in [1, 60000], got 0"),
    ("train_subset", 60_001, "train_subset must be in [1, 60000], got 60001"),
    ("train_subset", 10.0, "train_subset must be an integer, got 10.0"),
    ("learning_rate", 0.0, "learning_rate must be in (0.0, inf), got 0.0"),
    ("learning_rate", -1e-3, "learning_rate must be in (0.0, inf), got -0.001"),
    ("learning_rate", math.inf, "learning_rate must be a finite number, got inf"),
    ("learning_rate", math.nan, "learning_rate must be a finite number, got nan"),
    ("learning_rate", "1e-3", "learning_rate must be a finite number, got '1e-3'"),
    ("learning_rate", False, "learning_rate must be a finite number, got False"),
    ("warmup_epochs", -0.5, "warmup_epochs must be in [0.0, 30.0], got -0.5"),
    ("warmup_epochs", 30.5, "warmup_epochs must be in [0.0, 30.0], got 30.5"),
    ("label_smoothing", 1.0, "label_smoothing must be in [0.0, 1.0), got 1.0"),
    ("label_smoothing", -0.1, "label_smoothing must be in [0.0, 1.0), got -0.1"),
    ("weight_averaging", 1.0, "weight_averaging must be in [0.0, 1.0), got 1.0"),
    ("weight_averaging", -0.5, "weight_averaging must be in [0.0, 1.0), got -0.5"),
    ("weight_averaging", "0.9", "weight_averaging must be a finite number, got '0.9'"),
    ("rotation_deg", 180.5, "rotation_deg must be in [0.0, 180.0], got 180.5"),
    ("rotation_deg", -math.inf, "rotation_deg must be a finite number, got -inf"),
    ("shift_px", 14.5, "shift_px must be in [0.0, 14.0], got 14.5"),
    ("zoom", 1.0, "zoom must be in [0.0, 1.0), got 1.0"),
    ("elastic_alpha", -1.0, "elastic_alpha must be in [0.0, 1000.0], got -1.0"),
    ("elastic_sigma", 0.0, "elastic_sigma must be in (0.0, 28.0], got 0.0"),
    ("contrast", 1.0, "contrast must be in [0.0, 1.0), got 1.0"),
    ("brightness", 1.5, "brightness must be in [0.0, 1.0], got 1.5"),
    ("noise_std", -0.1, "noise_std must be in [0.0, 1.0], got -0.1"),
    ("erasing", 1.5, "erasing must be in [0.0, 1.0], got 1.5"),
    ("augment", 1, "augment must be true or false, got 1"),
    ("recalibrate_batch_norm", "yes", "recalibrate_batch_norm must be true or false, got 'yes'"),
    ("deterministic", "yes", "deterministic must be true or false, got 'yes'"),
    ("strategy", "tpu", "strategy must be one of ['default', 'mirrored'], got 'tpu'"),
    (
        "precision",
        "float16",
        "precision must be one of ['float32', 'mixed_bfloat16', 'mixed_float16'], got 'float16'",
    ),
    ("augment_on", "gpu", "augment_on must be one of ['host', 'device'], got 'gpu'"),
    ("model_options", [], "model_options must be a dict, got list"),
    ("model_options", {"width": 3}, "unknown model_options ['width'] for model"),
    ("extra", [], "extra must be a dict, got list"),
    ("extra", {"a": (1, 2)}, "extra must hold only JSON values"),
    ("extra", {1: "a"}, "extra must hold only JSON values"),
    ("extra", {"a": {1, 2}}, "extra must hold only JSON values"),
    ("extra", {"a": math.nan}, "extra must hold only JSON values"),
]


def test_every_field_has_invalid_cases():
    assert {field for field, _, _ in INVALID} == set(FIELDS)


INVALID_IDS = [f"{field}={value!r}" for field, value, _ in INVALID]
ROUTES = {  # every way a config is made from field values
    "constructor": lambda values: TrainConfig(**values),
    "from_dict": TrainConfig.from_dict,
    "replace": lambda values: TrainConfig.recipe("seed").replace(**values),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("field", "value", "message"), INVALID, ids=INVALID_IDS)
def test_invalid_field_raises_naming_field_and_allowed_values(route, field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ROUTES[route]({field: value})


def test_model_options_must_read_back_from_json_unchanged():
    with pytest.raises(ValueError, match=re.escape("model_options must hold only JSON values")):
        TrainConfig(model="reference", model_options={"widths": (32, 64, 128)})  # a tuple


def test_device_input_path_needs_one_device():
    assert TrainConfig(augment_on="device").strategy == "default"
    message = "augment_on='device' trains on one device: it needs strategy='default'"
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(augment_on="device", strategy="mirrored")


def test_warmup_bound_follows_epochs():
    assert TrainConfig(epochs=2, warmup_epochs=2.0).warmup_epochs == 2.0
    with pytest.raises(ValueError, match=re.escape("warmup_epochs must be in [0.0, 2.0], got 3")):
        TrainConfig(epochs=2, warmup_epochs=3)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: TrainConfig.from_dict({"epoch": 3}), id="from_dict"),
        pytest.param(lambda: TrainConfig.from_json('{"epoch": 3}'), id="from_json"),
        pytest.param(lambda: TrainConfig.recipe("seed", epoch=3), id="recipe"),
        pytest.param(lambda: TrainConfig().replace(epoch=3), id="replace"),
    ],
)
def test_unknown_field_raises_listing_allowed_fields(make):
    with pytest.raises(ValueError, match=re.escape("unknown TrainConfig field(s) ['epoch']")) as e:
        make()
    assert f"allowed fields are {sorted(FIELDS)}" in str(e.value)


# -- recipes, replace, immutability -------------------------------------------------------


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipes_keep_the_host_input_path_and_old_records_read_as_them(name):
    recipe = TrainConfig.recipe(name)
    if name == "fast":  # its search chose the device path: its records all name the field
        assert recipe.augment_on == "device"
        return
    assert recipe.augment_on == "host"  # the published bits come from the tf.data path
    # a config recorded before the field existed (results/runs/*.json) reads with its default
    old = {k: v for k, v in recipe.to_dict().items() if k != "augment_on"}
    assert TrainConfig.from_dict(old) == recipe


def test_recorded_configs_without_the_newest_fields_still_load():
    root = Path(__file__).resolve().parents[1] / "results"
    records = sorted((root / "runs").glob("*.json")) + sorted((root / "holdout").glob("*.json"))
    assert records
    old = 0
    for path in records:
        config = json.loads(path.read_text())["config"]
        # written before augment_on existed: the default; written after (a search trial may
        # choose "device"): the recorded value
        assert TrainConfig.from_dict(config).augment_on == config.get("augment_on", "host"), path
        old += "augment_on" not in config
    assert old  # the committed results include records from before the field


def test_seed_recipe_is_the_seed_notebook():
    config = TrainConfig.recipe("seed")
    assert config == TrainConfig(model="seed", learning_rate=1e-3, augment=False)
    assert (config.epochs, config.batch_size, config.lr_schedule) == (30, 256, "constant")
    assert (config.validation, config.train_subset, config.deterministic) == ("test", None, True)


def test_reference_recipe():
    config = TrainConfig.recipe("reference")
    expected = dict(model="reference", learning_rate=3e-3, lr_schedule="cosine")
    expected |= dict(warmup_epochs=1.0, augment=True, rotation_deg=10.0, shift_px=2.0, zoom=0.1)
    expected |= dict(label_smoothing=0.1, recalibrate_batch_norm=True)
    expected |= dict(model_options={"convs_per_stage": [1, 2, 2]})
    assert config == TrainConfig(**expected)
    assert config.epochs == 30  # the seed's


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_overrides_replace_only_the_named_fields(name):
    base = TrainConfig.recipe(name)
    config = TrainConfig.recipe(name, epochs=1, train_subset=1024, seed=7)
    assert (config.epochs, config.train_subset, config.seed) == (1, 1024, 7)
    assert config == base.replace(epochs=1, train_subset=1024, seed=7)
    changed = {k for k in FIELDS if getattr(config, k) != getattr(base, k)}
    assert changed == {"epochs", "train_subset", "seed"}


def test_recipe_overrides_are_validated():
    with pytest.raises(ValueError, match=re.escape("epochs must be >= 1, got 0")):
        TrainConfig.recipe("seed", epochs=0)


@pytest.mark.parametrize("name", ["vgg", "Seed", ""])
def test_unknown_recipe_raises_listing_recipes(name):
    message = f"recipe must be one of {list(RECIPES)}, got {name!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig.recipe(name)


def test_replace_returns_a_validated_copy():
    config = TrainConfig()
    changed = config.replace(epochs=5, model="seed")
    assert (changed.epochs, changed.model) == (5, "seed")
    assert (config.epochs, config.model) == (30, "reference")  # the original is untouched
    with pytest.raises(ValueError, match=re.escape("batch_size must be >= 1, got -2")):
        config.replace(batch_size=-2)


@pytest.mark.parametrize("field", ["epochs", "model", "extra"])
def test_config_is_frozen(field):
    config = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{field}'"):
        setattr(config, field, getattr(config, field))


# -- from_json errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read config: No such file or directory", id="missing"),
        pytest.param('{"epochs": 3,}', "not valid JSON", id="invalid-json"),
        pytest.param("", "not valid JSON", id="empty"),
        pytest.param("[1, 2]", "expected a JSON object, got list", id="json-array"),
        pytest.param('"seed"', "expected a JSON object, got str", id="json-string"),
    ],
)
@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_from_json_file_errors_name_the_file(tmp_path, content, message, as_str):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        TrainConfig.from_json(str(path) if as_str else path)
    assert str(e.value).startswith(f"{path}: ")


def test_from_json_folder_raises_naming_it(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: cannot read config")):
        TrainConfig.from_json(tmp_path)


def test_from_json_text_errors():
    with pytest.raises(ValueError, match=re.escape("config JSON: not valid JSON")):
        TrainConfig.from_json('{"epochs": }')
    with pytest.raises(ValueError, match=re.escape("epochs must be >= 1, got 0")):
        TrainConfig.from_json('{"epochs": 0}')
    with pytest.raises(
        ValueError, match=re.escape("config JSON: expected a JSON object, got list")
    ):
        TrainConfig.from_json("[1]")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"epoch": 3}', "unknown TrainConfig field(s) ['epoch']; allowed fields are"),
        ('{"epochs": 0}', "epochs must be >= 1, got 0"),
        ('{"model": "vgg"}', f"model must be one of {MODELS}, got 'vgg'"),
    ],
)
def test_from_json_field_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
        TrainConfig.from_json(path)
