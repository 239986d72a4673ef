"""What a user is shown: calibrated probabilities, and which model answers (`model_card`), in
`mnist-bench predict`, the server's ``/healthz`` and predictions, and exported files (the
temperature travels into LiteRT: its probabilities match the calibrated Keras model's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from mnist_bench._io import read_json
from mnist_bench.cli import main
from mnist_bench.evaluation import model_temperature, predict
from mnist_bench.model_card import card_line, model_card
from mnist_bench.models import load_model

REPO_ROOT = Path(__file__).resolve().parents[1]
ROBUST = REPO_ROOT / "results" / "robust"
CALIBRATED = ROBUST / "model_calibrated.keras"


@pytest.fixture(scope="module")
def calibrated():
    return load_model(CALIBRATED)


@pytest.fixture(scope="module")
def calibrated_litert(calibrated, tmp_path_factory) -> Path:
    from mnist_bench.export import export_model

    return export_model(calibrated, "litert", tmp_path_factory.mktemp("cal") / "cal.tflite")


def test_cards_of_the_published_models(calibrated):
    card = model_card(CALIBRATED, calibrated)
    recorded = read_json(ROBUST / "calibration.json")["temperature"]
    assert card["recipe"] == "robust" and card["calibrated"] is True
    assert card["temperature"] == pytest.approx(recorded, abs=1e-4)  # travels with the file
    assert card["temperature"] == pytest.approx(model_temperature(calibrated), abs=1e-4)
    assert "robust recipe" in card_line(card) and "calibrated: temperature 0.4987" in card_line(
        card
    )
    plain = model_card(REPO_ROOT / "results" / "model.keras", load_model(REPO_ROOT / "results"))
    assert plain["recipe"] == "reference" and plain["calibrated"] is False
    assert plain["temperature"] is None and "not calibrated" in card_line(plain)


def test_litert_export_keeps_the_temperature(calibrated, calibrated_litert, mnist):
    from mnist_bench.export import LiteRTPredictor

    x = mnist.x_test[:300]
    keras_p = predict(calibrated, x)[1]
    litert = LiteRTPredictor(calibrated_litert)
    np.testing.assert_allclose(predict(litert, x)[1], keras_p, atol=2e-5)
    raw = predict(load_model(ROBUST / "model.keras"), x)[1]
    assert np.abs(raw - keras_p).max() > 0.05  # the temperature changes what users see
    card = model_card(calibrated_litert, litert)
    assert card["calibrated"] is None and "calibration unknown" in card_line(card)


def test_predict_command_names_the_model_and_shows_calibrated_probabilities(
    calibrated, mnist, tmp_path, capsys
):
    Image.fromarray(255 - np.kron(mnist.x_test[0], np.ones((5, 5), np.uint8))).save(
        tmp_path / "d.png"
    )
    assert main(["predict", str(CALIBRATED), str(tmp_path / "d.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"model: {CALIBRATED}: reference_calibrated (robust recipe)")
    assert "calibrated: temperature" in out[0]
    from mnist_bench.preprocess import prepare_image_file

    label, probs = predict(calibrated, prepare_image_file(tmp_path / "d.png"))
    row = out[-1].split()
    assert int(row[1]) == label[0] == mnist.y_test[0]
    assert float(row[2]) == pytest.approx(float(probs[0, label[0]]), abs=1e-4)


def test_server_reports_its_model_and_calibrated_probabilities(calibrated, mnist):
    from mnist_bench.serving import create_app, load_for_serving

    predictor, info = load_for_serving(CALIBRATED, runtime="keras")
    assert info["recipe"] == "robust" and info["calibrated"] is True
    assert info["name"] == "reference_calibrated" and info["file"] == CALIBRATED.name
    with TestClient(create_app(predictor.predict_proba, model_info=info)) as client:
        assert client.get("/healthz").json()["model"] == info
        answer = client.post("/predict", json=mnist.x_test[1].tolist()).json()
    expected = predict(calibrated, mnist.x_test[1])[1][0]
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-5)
    assert answer["model"]["temperature"] == info["temperature"]
