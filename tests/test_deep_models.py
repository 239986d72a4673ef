"""The deeper networks (issue #21), end to end through the commands: `train --model resnet20`
and `--model efficientnet_b0` (1 epoch on 1,000 images), then every command that takes a model
(evaluate, predict, export to LiteRT, robustness, calibrate, serve's loader) on the saved
folder, and a plain Keras round trip of both saved files; then their architectures against
hand counts (sizes and FLOPs are also checked with the others in test_models.py)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image

from mnist_bench import TrainConfig, build_model, cli, model_flops, weights_digest
from mnist_bench.models import INPUT_SHAPE

DEEP = ("resnet20", "efficientnet_b0")
TINY = ("--epochs", "1", "--train-subset", "1000", "--seed", "0")


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


# End to end, each network's tiny training and every command on it take 5-8 minutes of a
# shared 2-core machine (EfficientNet's train step alone traces for minutes): the slow tier.
# The fast tier keeps the architecture tests below, test_models.py (build, sizes, FLOPs,
# save/load of every network) and test_reproduce's resnet20 reproduce + check.
END_TO_END = pytest.mark.slow


@pytest.fixture(scope="module", params=DEEP)
def deep_run(request, mnist_dir, tmp_path_factory) -> tuple[str, Path]:
    """(name, folder) of `mnist-bench train --model NAME`, 1 epoch on 1,000 images."""
    from mnist_bench import plots

    out = tmp_path_factory.mktemp(request.param)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNIST_BENCH_DATA", str(mnist_dir))
        mp.setattr(plots, "MAX_GRID_IMAGES", 20)  # as conftest's tiny_run: a small grid
        code, stdout, err = _cli("train", "--model", request.param, *TINY, "--out", out)
    assert code == 0, err
    assert f"training {request.param!r}" in stdout
    return request.param, out


@END_TO_END
def test_train_runs_the_recipe_and_learns_something(deep_run):
    name, out = deep_run
    metrics = json.loads((out / "metrics.json").read_text())
    config = TrainConfig.from_json(out / "config.json")
    assert config == TrainConfig.recipe(name, epochs=1, train_subset=1000)
    assert metrics["test_accuracy"] > 0.10  # above chance after one tiny epoch


@END_TO_END
def test_saved_files_load_with_plain_keras_and_give_the_same_predictions(deep_run, mnist):
    name, out = deep_run
    recorded = json.loads((out / "metrics.json").read_text())["weights_digest"]
    x = mnist.x_test[:64, :, :, None].astype(np.float32) / 255.0
    models = [keras.models.load_model(out / f) for f in ("model.keras", "network_for_mnist.h5")]
    assert [weights_digest(m) for m in models] == [recorded, recorded]
    p_keras, p_h5 = (keras.ops.convert_to_numpy(m(x, training=False)) for m in models)
    np.testing.assert_array_equal(p_keras, p_h5)
    assert models[0].name == name


@END_TO_END
def test_evaluate_and_predict_take_the_folder(deep_run, mnist, mnist_dir, tmp_path, monkeypatch):
    _, out = deep_run
    monkeypatch.setenv("MNIST_BENCH_DATA", str(mnist_dir))
    code, stdout, err = _cli("evaluate", out, "--json", tmp_path / "eval.json")
    assert code == 0, err
    recorded = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == recorded
    Image.fromarray(mnist.x_test[0]).save(tmp_path / "digit.png")
    code, stdout, err = _cli("predict", out, tmp_path / "digit.png")
    assert code == 0, err
    assert "digit.png" in stdout


@END_TO_END
def test_export_to_litert_keeps_the_accuracy(deep_run, tmp_path, mnist_dir, monkeypatch):
    _, out = deep_run
    monkeypatch.setenv("MNIST_BENCH_DATA", str(mnist_dir))
    target, record = tmp_path / "model.tflite", tmp_path / "export.json"
    code, _, err = _cli("export", out, "--format", "litert", "--out", target, "--results", record)
    assert code == 0, err
    keras_accuracy = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    exported = json.loads(record.read_text())["formats"]["litert"]["test_accuracy"]
    assert abs(exported - keras_accuracy) <= 0.002  # float32 LiteRT: a few digits at most


@END_TO_END
def test_robustness_and_calibration_measure_it(deep_run, tmp_path, mnist_dir, monkeypatch):
    _, out = deep_run
    monkeypatch.setenv("MNIST_BENCH_DATA", str(mnist_dir))
    code, _, err = _cli("robustness", out, "--out", tmp_path, "--images", "40")
    assert code == 0, err
    record = json.loads((tmp_path / "robustness.json").read_text())
    assert len(record["model"]["accuracy"]) == 15
    code, _, err = _cli("calibrate", out, "--out", tmp_path, "--holdout-size", "500")
    assert code == 0, err
    calibrated = keras.models.load_model(tmp_path / "model_calibrated.keras")
    assert weights_digest(calibrated) != ""  # loads with plain Keras, graph included
    assert json.loads((tmp_path / "calibration.json").read_text())["temperature"] > 0


@END_TO_END
def test_serve_loads_the_saved_folder_and_agrees_with_keras(deep_run, mnist):
    from mnist_bench.serving.server import load_for_serving

    _, out = deep_run
    predictor, info = load_for_serving(out)  # what `mnist-bench serve` does at start-up
    assert info["file"].endswith("model.keras")
    x = mnist.x_test[:100, :, :, None].astype(np.float32) / 255.0
    keras_p = keras.ops.convert_to_numpy(keras.models.load_model(out / "model.keras")(x))
    np.testing.assert_allclose(predictor.predict_proba(x), keras_p, atol=1e-4)


# -- architecture, counted by hand ---------------------------------------------------------


def _resnet20_macs() -> int:
    """ResNet-20 (option B shortcuts) on 28x28x1, multiply-adds by hand: 3x3 convs of c_in x c_out
    at each side, the two 1x1 projections, the classifier."""
    conv = lambda side, c_in, c_out, k=3: side * side * c_out * k * k * c_in  # noqa: E731
    stem = conv(28, 1, 16)
    stage1 = 6 * conv(28, 16, 16)
    stage2 = conv(14, 16, 32) + 5 * conv(14, 32, 32) + conv(14, 16, 32, k=1)
    stage3 = conv(7, 32, 64) + 5 * conv(7, 64, 64) + conv(7, 32, 64, k=1)
    return stem + stage1 + stage2 + stage3 + 64 * 10


def test_resnet20_is_he_et_als_network_with_its_flops_counted_by_hand():
    model = build_model("resnet20")
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    three = [c for c in convs if c.kernel_size == (3, 3)]
    assert len(three) + 1 == 20  # 6n + 2 weighted layers, n = 3: 19 convs and the Dense
    assert [c.filters for c in three] == [16] * 7 + [32] * 6 + [64] * 6
    assert [c.filters for c in convs if c.kernel_size == (1, 1)] == [32, 64]  # projections
    assert len([lay for lay in model.layers if isinstance(lay, layers.Add)]) == 9
    assert model_flops(model)["forward"] == 2 * _resnet20_macs()
    weights = sum(c.kernel.shape.num_elements() for c in convs) + 64 * 10 + 10
    batch_norm = 4 * sum(c.filters for c in convs)  # gamma, beta, moving mean and variance
    assert model.count_params() == weights + batch_norm


def test_efficientnet_b0_pads_28_to_32_inside_the_model():
    model = build_model("efficientnet_b0")
    assert tuple(model.input_shape[1:]) == INPUT_SHAPE
    pad = next(lay for lay in model.layers if isinstance(lay, layers.ZeroPadding2D))
    assert tuple(pad.output.shape[1:]) == (32, 32, 1)
    stem = model.get_layer("stem_conv")
    assert stem.input.shape[-1] == 1 and stem.output.shape[1:3] == (16, 16)
    # The stem sees the image at the scale the application expects: x 255, then / 255.
    x = np.random.default_rng(0).random((2, *INPUT_SHAPE), dtype=np.float32)
    upto_stem = keras.Model(model.input, stem.input)  # one tensor in, as it is called
    inner = keras.ops.convert_to_numpy(upto_stem(x))[:, 2:30, 2:30]
    np.testing.assert_allclose(inner, x, rtol=1e-6)
    depthwise = [lay for lay in model.layers if isinstance(lay, layers.DepthwiseConv2D)]
    assert len(depthwise) == 16  # MBConv blocks of B0: 1 + 2 + 2 + 3 + 3 + 4 + 1
