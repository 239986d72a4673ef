"""Transfer learning (`mnist_bench.transfer`, `mnist-bench finetune`) on a tiny synthetic digit
folder, the UCI digits' rendering, and the committed experiment (`results/transfer.json`) with
the table generated from it (checked against docs/transfer.md by test_docs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_bench._io import read_json
from mnist_bench.cli import main
from mnist_bench.transfer import (
    DigitFolderError,
    FinetuneConfig,
    finetune,
    read_digit_folder,
)
from mnist_bench.transfer_experiment import (
    curve,
    draw_labelled,
    render_uci_digits,
    split_pool,
    transfer_table,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TRANSFER_JSON = REPO_ROOT / "results" / "transfer.json"
TINY = ("--steps", "3", "--batch-size", "8")


def _photo(digit: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """An MNIST digit as a 'photo': dark ink on light paper, resized to `size` (w, h)."""
    return Image.fromarray(255 - digit).resize(size, Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def digit_folder(mnist, tmp_path_factory) -> Path:
    """Subfolders 0..9, two digits each: one PNG (odd size), one JPEG (RGB, another size)."""
    root = tmp_path_factory.mktemp("digits")
    for d in range(10):
        first, second = np.flatnonzero(mnist.y_train == d)[:2]
        (root / str(d)).mkdir()
        _photo(mnist.x_train[first], (37, 53)).save(root / str(d) / "a.png")
        _photo(mnist.x_train[second], (90, 64)).convert("RGB").save(root / str(d) / "b.JPG")
    (root / "README.txt").write_text("ignored, as Keras ignores it")
    (root / "3" / "notes.txt").write_text("ignored: not an image suffix")
    return root


@pytest.fixture(scope="module")
def seed_model_file(tmp_path_factory) -> Path:
    """An untrained notebook model saved as .keras: fine-tuning needs only its shape."""
    import keras

    from mnist_bench.models import build_model

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("base") / "base.keras"
    build_model("seed").save(path)
    return path


def _with_bad_file(folder: Path, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "digits"
    shutil.copytree(folder, root)
    png = (root / "7" / "a.png").read_bytes()
    (root / "7" / "broken.png").write_bytes(png[: len(png) // 2])  # truncated
    return root


# -- the folder ---------------------------------------------------------------------------


def test_read_digit_folder_reads_png_and_jpeg_of_any_size(digit_folder):
    images, labels, skipped = read_digit_folder(digit_folder)
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 2))
    assert skipped == []
    rows, cols = np.indices((28, 28))
    mass = images.sum(axis=(1, 2))
    assert np.all(np.abs((images * rows).sum(axis=(1, 2)) / mass - 14) < 1.5)  # centred
    assert np.all(np.abs((images * cols).sum(axis=(1, 2)) / mass - 14) < 1.5)


def test_bad_files_and_layouts_are_named(digit_folder, tmp_path):
    root = _with_bad_file(digit_folder, tmp_path)
    with pytest.raises(DigitFolderError, match=r"1 bad image file\(s\), nothing trained") as info:
        read_digit_folder(root)
    assert str(root / "7" / "broken.png") in str(info.value)
    assert "--skip-bad-images" in str(info.value)
    images, _, skipped = read_digit_folder(root, skip_bad=True)
    assert len(images) == 20 and [p for p, _ in skipped] == [str(root / "7" / "broken.png")]
    (root / "seven").mkdir()
    with pytest.raises(DigitFolderError, match=r"named 0 to 9.*\['seven'\]"):
        read_digit_folder(root)
    with pytest.raises(DigitFolderError, match="no such folder"):
        read_digit_folder(tmp_path / "missing")
    (tmp_path / "empty" / "4").mkdir(parents=True)
    with pytest.raises(DigitFolderError, match="no readable PNG/JPEG digit"):
        read_digit_folder(tmp_path / "empty")


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match=r"layers must be one of \['all', 'head', 'scratch'\]"):
        FinetuneConfig(layers="top")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        FinetuneConfig(steps=0)
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        FinetuneConfig(learning_rate=float("nan"))


# -- fine-tuning --------------------------------------------------------------------------


def test_finetune_is_seeded_and_leaves_the_base_alone(digit_folder, seed_model_file):
    import keras

    base = keras.models.load_model(seed_model_file)
    before = [w.copy() for w in base.get_weights()]
    images, labels, _ = read_digit_folder(digit_folder)
    config = FinetuneConfig(steps=3, batch_size=8, seed=1)
    first, second = (finetune(base, images, labels, config) for _ in range(2))
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(before, base.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before, first.get_weights(), strict=True))
    head = finetune(base, images, labels, FinetuneConfig(layers="head", steps=3, batch_size=8))
    changed = [not np.array_equal(a, b) for a, b in zip(before, head.get_weights(), strict=True)]
    assert changed[-2:] == [True, True] and not any(changed[:-2])  # the last Dense only
    steps = []
    finetune(base, images, labels, config, progress=lambda s, n, loss: steps.append((s, n)))
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_finetune_command_refuses_a_bad_file_then_skips_it(
    digit_folder, seed_model_file, tmp_path, capsys
):
    import keras

    root = _with_bad_file(digit_folder, tmp_path)
    out = tmp_path / "tuned"
    assert main(["finetune", str(seed_model_file), str(root), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.png" in err and "Traceback" not in err
    assert not out.exists()  # nothing half-written
    argv = ["finetune", str(seed_model_file), str(root), "--out", str(out), *TINY]
    assert main([*argv, "--skip-bad-images"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.png" in captured.err
    assert "20 digits from" in captured.out and "wrote" in captured.out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.keras", "network_for_mnist.h5", "finetune.json"]
    )
    record = read_json(out / "finetune.json")
    assert record["n_images"] == 20 and record["skipped"][0]["file"].endswith("broken.png")
    assert record["config"] == FinetuneConfig(steps=3, batch_size=8).to_dict()
    model = keras.models.load_model(out / "model.keras")  # plain Keras
    assert model.output_shape == (None, 10)
    assert main(["predict", str(out / "model.keras"), str(root / "3" / "a.png")]) == 0
    assert "a.png" in capsys.readouterr().out
    from mnist_bench.export import export_model
    from mnist_bench.serving import load_for_serving

    assert main(["evaluate", str(out), "--folder", str(digit_folder)]) == 0
    assert f"accuracy on {digit_folder} " in capsys.readouterr().out
    _, info = load_for_serving(out, runtime="keras")  # the folder, as `serve` takes it
    assert info["recipe"] == "fine-tuned" and info["file"] == "model.keras"
    assert export_model(model, "litert", tmp_path / "t.tflite").stat().st_size > 0
    assert main([*argv, "--skip-bad-images"]) == 2  # never overwrites
    assert "exists and is not empty" in capsys.readouterr().err


# -- the UCI digits -----------------------------------------------------------------------


def test_uci_digits_are_rendered_mnist_style():
    images, labels = render_uci_digits()
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (1797,) and set(labels) == set(range(10))
    assert images.max() == 255 and images[:, 0].max() == 0 and images[:, :, 0].max() == 0
    rows, cols = np.indices((28, 28))
    mass = images.sum(axis=(1, 2))
    com = np.stack([(images * g).sum(axis=(1, 2)) / mass for g in (rows, cols)], axis=1)
    assert np.abs(com - 14).max() <= 1.0  # to the pixel, as MNIST
    ink = images > 25  # the ink's bounding box: its longer side is 20 pixels (MNIST's box)
    extents = [
        max(np.ptp(np.flatnonzero(i.any(axis=1))), np.ptp(np.flatnonzero(i.any(axis=0)))) + 1
        for i in ink[:50]
    ]
    assert min(extents) >= 18 and max(extents) <= 20


def test_the_split_is_fixed_and_draws_are_nested():
    _, labels = render_uci_digits()
    pool, held_out = split_pool(labels)
    assert pool.shape == (10, 50) and len(held_out) == 1797 - 500
    assert not set(pool.ravel()) & set(held_out)
    assert all((labels[row] == d).all() for d, row in enumerate(pool))
    np.testing.assert_array_equal(pool, split_pool(labels)[0])
    five, ten = draw_labelled(pool, 5, 1), draw_labelled(pool, 10, 1)
    assert set(five) <= set(ten) and len(set(ten)) == 100


# -- the experiment's record --------------------------------------------------------------


def _content(points: list[tuple[str, int, int, float]]) -> dict:
    return {
        "setup": {
            "shots": [1, 10], "split_seed": 0, "base_model": "m.keras",
            "finetune": FinetuneConfig().to_dict(), "scratch_learning_rate": 1e-3,
        },
        "points": {
            f"{m}/{k}/{s}": {"method": m, "shots": k, "seed": s, "accuracy": a, "seconds": 1.0}
            for m, k, s, a in points
        },
        "complete": True, "n_pool": 500, "n_held_out": 1297,
        "provenance": {"cpu": {"model_name": "Test CPU", "logical_cpus": 2,
                               "vendor_family_model_stepping": "AuthenticAMD/25/1/1"}},
    }  # fmt: skip


def test_table_is_generated_from_the_points():
    content = _content(
        [
            *[("no labels", 0, 0, 0.9), ("fine-tuned", 1, 0, 0.8), ("fine-tuned", 1, 1, 0.6)],
            *[("from scratch", 1, 0, 0.1), ("from scratch", 1, 1, 0.3)],
            *[("fine-tuned", 10, 0, 0.99), ("from scratch", 10, 0, 0.5)],
        ]
    )
    table = transfer_table(content)
    assert "| 1 | 90.00% | 70.00% ± 14.14% | 20.00% ± 14.14% | 2 |" in table
    assert "| 10 | 90.00% | 99.00% ± 0.00% | 50.00% ± 0.00% | 1 |" in table
    assert "on Test CPU (family 25 model 1, 2 CPUs)." in table  # a Zen 3 told from a Zen 4
    assert "Incomplete" not in table


def test_committed_experiment_fine_tuning_beats_no_labels_at_10_per_class():
    content = read_json(TRANSFER_JSON)
    assert content["complete"], "results/transfer.json is incomplete: run `mnist-bench transfer`"
    by = curve(content)
    no_labels = by["no labels"][0][0]
    tuned = by["fine-tuned"][10]
    assert len(tuned) >= 3 and len(by["from scratch"][10]) >= 3
    assert np.mean(tuned) > no_labels, (tuned, no_labels)
    assert content["n_held_out"] == 1297 and content["provenance"]["git"] is not None
