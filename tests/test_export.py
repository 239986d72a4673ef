"""Tests of `mnist_bench.export`: SavedModel / LiteRT / LiteRT int8 files of the published
model, the LiteRT predictor's contract and batching, `evaluate` on exported files, the
recorded accuracies in results/export.json, and the inference benchmark as a smoke run.

Fast tier: one float32 and one int8 export (a few seconds each), subsets of the test set.
Slow tier (`-m slow`): the full test set through every format, via `mnist-bench export`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import mnist_bench
from mnist_bench import export
from mnist_bench.cli import main
from mnist_bench.export import (
    FORMATS,
    INT8_MAX_LOSS,
    LiteRTPredictor,
    SavedModelPredictor,
    export_model,
    file_sha256,
    load_predictor,
)
from mnist_bench.provenance import fingerprints_match

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "results"


@pytest.fixture(scope="session")
def int8_file(published_model, mnist, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "model-int8.tflite"
    return export_model(published_model, "litert-int8", out, representative_images=mnist.x_train)


def _x(mnist, n: int, start: int = 0) -> np.ndarray:
    return mnist_bench.preprocess_images(mnist.x_test[start : start + n])


def test_litert_float32_matches_keras(published_model, litert_predictor, mnist):
    x = _x(mnist, 500)
    _, keras_p = mnist_bench.predict(published_model, x)
    labels, p = litert_predictor.predict(x)
    assert p.shape == (500, 10) and p.dtype == np.float32
    assert labels.dtype == np.uint8
    np.testing.assert_allclose(p, keras_p, atol=1e-4)
    assert np.array_equal(labels, keras_p.argmax(axis=1))


def test_int8_is_smaller_and_agrees_with_float32(int8_file, litert_file, litert_predictor, mnist):
    """Fast-tier check on 2,000 test images; the full 10k limit is test_int8_accuracy_*."""
    assert int8_file.stat().st_size < 0.35 * litert_file.stat().st_size  # ~604 kB vs 2.3 MB
    x, y = _x(mnist, 2000), mnist.y_test[:2000]
    float_labels, _ = litert_predictor.predict(x)
    int8_labels, p = LiteRTPredictor(int8_file).predict(x)
    # The int8 softmax output moves in steps of 1/256: rows sum to 1 within a few steps.
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=6 / 256)
    assert np.mean(int8_labels == float_labels) >= 0.998
    loss = np.mean(float_labels == y) - np.mean(int8_labels == y)
    assert loss <= 2 / 2000  # at most two more errors among 2,000


@pytest.mark.parametrize("n", [1, 3, 64, 300])
def test_batches_equal_single_images(litert_file, mnist, n):
    """Padding to a power of two and chunking (max_chunk=64 here) change no prediction."""
    predictor = LiteRTPredictor(litert_file, max_chunk=64)
    x = _x(mnist, n, start=100)
    batched = predictor.predict_proba(x)
    singles = np.concatenate([predictor.predict_proba(x[i : i + 1]) for i in range(n)])
    assert batched.shape == (n, 10)
    np.testing.assert_allclose(batched, singles, atol=1e-5)


def test_predictor_accepts_what_predict_accepts(litert_predictor, mnist):
    raw = mnist.x_test[:5]  # uint8 (5, 28, 28)
    labels, _ = mnist_bench.predict(litert_predictor, raw)
    labels_one, _ = litert_predictor.predict(raw[0])  # one (28, 28) image
    assert labels.tolist() == mnist.y_test[:5].tolist()
    assert labels_one.tolist() == [labels[0]]
    assert litert_predictor.predict_proba(np.zeros((0, 28, 28, 1), np.float32)).shape == (0, 10)


def test_saved_model_matches_keras(published_model, mnist, tmp_path):
    out = export_model(published_model, "saved_model", tmp_path / "sm")
    assert (out / "saved_model.pb").is_file()
    x = _x(mnist, 200)
    predictor = load_predictor(out)
    assert isinstance(predictor, SavedModelPredictor)
    np.testing.assert_allclose(
        predictor.predict(x)[1], mnist_bench.predict(published_model, x)[1], atol=1e-5
    )
    export_model(published_model, "saved_model", out)  # replacing an export works
    assert (out / "saved_model.pb").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_cli_evaluate_accepts_a_litert_file(int8_file, mnist_dir, capsys, monkeypatch):
    """`mnist-bench evaluate` on the int8 file (the fastest to run), all 10k test images:
    within 0.05 points of the published float32 99.71%."""
    monkeypatch.setenv("MNIST_BENCH_DATA", str(mnist_dir))
    assert main(["evaluate", str(int8_file)]) == 0
    accuracy = re.search(
        r"test accuracy (\d+\.\d+)% \((\d+) errors of 10000\)", capsys.readouterr().out
    )
    assert accuracy is not None
    assert float(accuracy[1]) >= 99.71 - 100 * INT8_MAX_LOSS


def test_bad_inputs_raise_clear_errors(published_model, tmp_path):
    with pytest.raises(ValueError, match=r"format must be one of \['saved_model'"):
        export_model(published_model, "onnx", tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="litert-int8 export needs representative_images"):
        export_model(published_model, "litert-int8", tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="no such LiteRT file"):
        LiteRTPredictor(tmp_path / "missing.tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 100)
    with pytest.raises(ValueError, match=r"garbage.tflite: not a readable LiteRT model"):
        LiteRTPredictor(garbage)
    assert not (tmp_path / "m.tflite").exists()


def test_max_chunk_must_be_a_power_of_two(litert_file):
    with pytest.raises(ValueError, match="max_chunk must be a power of two"):
        LiteRTPredictor(litert_file, max_chunk=100)


# -- the recorded results -----------------------------------------------------------------


def test_recorded_exports_match_their_files(litert_file):
    """results/export.json: every format, the digest of each committed file, the int8 limit;
    and, on the machine that recorded it, a fresh LiteRT export is the committed file."""
    content = export.read_export_results(RESULTS / "export.json")
    if fingerprints_match(content["provenance"]["machine_fingerprint"]):
        # The conversion is bit-reproducible (BN folding runs TF kernels, so only on the same
        # CPU, ISA and TensorFlow version).
        assert file_sha256(litert_file) == content["formats"]["litert"]["sha256"]
    assert set(content["formats"]) == set(FORMATS)
    for record in content["formats"].values():
        assert file_sha256(REPO_ROOT / record["path"]) == record["sha256"], record["path"]
        assert record["source_sha256"] == file_sha256(REPO_ROOT / record["source"])
        assert record["test_accuracy"] >= 0.997
    assert content["int8_loss_vs_float32"] <= INT8_MAX_LOSS
    assert content["int8_within_limit"] is True


def test_readme_tables_regenerate_from_results(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- export-table -->\nold\n<!-- /export-table -->\n"
        "<!-- inference-table -->\n<!-- /inference-table -->\nend\n"
    )
    assert main(["export", "--report", "--readme", str(readme)]) == 0
    assert main(["export-bench", "--report", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert "| litert-int8 | `results/export/model-int8.tflite` |" in text
    assert "| LiteRT int8 | 1 |" in text
    assert "x `model.predict`" in text
    capsys.readouterr()
    assert main(["export", "--report"]) == 2
    assert "--report needs --readme" in capsys.readouterr().err


def test_inference_bench_smoke(published_model, litert_file, mnist, monkeypatch):
    """Every row of the benchmark once, tiny: the shape of the records, no timing asserted."""
    from mnist_bench import export_bench

    monkeypatch.setattr(export_bench, "SINGLE_CALLS", 10)
    monkeypatch.setattr(export_bench, "WARMUP_CALLS", 1)
    monkeypatch.setattr(export_bench, "BATCH", 16)
    monkeypatch.setattr(export_bench, "BATCH_SECONDS", 0.0)
    rows = export_bench.run_inference_bench(published_model, {"litert": litert_file}, _x(mnist, 16))
    names = [(r["name"], r["threads"]) for r in rows]
    assert names == [
        ("keras model.predict", None),
        ("mnist_bench.predict (Keras)", None),
        ("LiteRT float32", 1),
        ("LiteRT float32", 2),
    ]
    for r in rows:
        assert 0 < r["single_p50_ms"] <= r["single_p99_ms"] and r["batch_images_per_s"] > 0
    assert export_bench.ratios(rows)["batch_speedup_vs_model_predict"] > 0


# -- slow: the full test set through every format -----------------------------------------


@pytest.mark.slow
def test_int8_accuracy_within_limit_full_test_set(tmp_path, mnist_dir, capsys, monkeypatch):
    """`mnist-bench export --format all` on the published model: every file's 10k accuracy,
    int8 within 0.05 points of float32."""
    monkeypatch.setenv("MNIST_BENCH_DATA", str(mnist_dir))
    results = tmp_path / "export.json"
    argv = ["export", str(RESULTS / "model.keras"), "--format", "all"]
    assert main([*argv, "--out", str(tmp_path / "export"), "--results", str(results)]) == 0
    content = export.read_export_results(results)
    recorded = export.read_export_results(RESULTS / "export.json")
    if fingerprints_match(
        recorded["provenance"]["machine_fingerprint"], content["provenance"]["machine_fingerprint"]
    ):
        for fmt in ("litert", "litert-int8"):  # seeded calibration: the same int8 file too
            assert content["formats"][fmt]["sha256"] == recorded["formats"][fmt]["sha256"], fmt
    # accuracies are counts: exact (mnist_bench.compare), against the published model's own
    published = export.read_export_results(RESULTS / "export.json")["keras_test_accuracy"]
    assert content["formats"]["litert"]["test_accuracy"] == published
    assert content["formats"]["saved_model"]["test_accuracy"] == published
    assert content["int8_loss_vs_float32"] <= INT8_MAX_LOSS
    shutil.rmtree(tmp_path / "export")


def test_cli_predict_accepts_a_litert_file(litert_file, mnist, tmp_path, capsys):
    """`mnist-bench predict FILE.tflite digit.png`: the same MNIST-style prep as for Keras."""
    from PIL import Image

    path = tmp_path / "digit.png"
    Image.fromarray(255 - np.kron(mnist.x_test[0], np.ones((8, 8), np.uint8))).save(path)
    assert main(["predict", str(litert_file), str(path)]) == 0
    model_line, header, row = capsys.readouterr().out.splitlines()
    assert model_line.startswith(f"model: {litert_file}: ")
    assert header.split() == ["file", "digit", "probability"]
    assert row.split()[:2] == [str(path), str(mnist.y_test[0])]
