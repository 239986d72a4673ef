"""Tests of the `mnist-bench` command line, run in-process through `mnist_bench.cli.main`.

One tiny training serves the whole module (the session fixture `tiny_run` in conftest); only
the flag-mapping test trains again, on 256 images with a 500-image holdout.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from file_factories import bytes_file
from PIL import Image

import mnist_bench
from mnist_bench import EvalReport, TrainConfig
from mnist_bench import cli as cli_module
from mnist_bench.cli import main
from mnist_bench.cli.train import _config_line, _resolve_config

OUTPUT_FILES = [
    "network_for_mnist.h5",
    "model.keras",
    "config.json",
    "history.json",
    "metrics.json",
    "loss_curves.png",
    "confusion_matrix.png",
    "predictions.png",
    "misclassified.png",
]
EPOCH_COLUMNS = ["epoch", "loss", "acc", "val_loss", "val_acc", "lr", "sec", "img/s"]
FINAL_LINE = re.compile(
    r"final epoch (\d+): test accuracy (\d+\.\d{4})% \((\d+) errors\), test loss (\d+\.\d{4})"
)
DIGEST_LINE = re.compile(r"weights digest ([0-9a-f]{64})")


class Result(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch, mnist_dir):
    """`cli(*argv) -> Result`: run `main(argv)` with $MNIST_BENCH_DATA set; capture output."""
    monkeypatch.setenv("MNIST_BENCH_DATA", str(mnist_dir))

    def run(*argv: str | Path) -> Result:
        capsys.readouterr()  # drop anything printed before
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def _assert_bad_input(result: Result, *fragments: str) -> None:
    """Exit code 2 and one message line on stderr holding every fragment; no traceback."""
    assert result.code == 2, result
    assert "Traceback" not in result.err
    assert result.err.startswith("mnist-bench: error: ")
    message = result.err.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def _run_lines(out: str) -> tuple[list[str], str, list[str]]:
    """(lines, the epoch header, the epoch rows) of a `train` command's stdout."""
    lines = out.splitlines()
    header = next((i for i, line in enumerate(lines) if line.split() == EPOCH_COLUMNS), None)
    if header is None:  # nothing trained, e.g. a finished run started again
        return lines, "", []
    end = next(i for i, line in enumerate(lines) if line.startswith("final epoch"))
    return lines, lines[header], lines[header + 1 : end]


def _column_ends(line: str) -> list[int]:
    return [m.end() for m in re.finditer(r"\S+", line)]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"mnist-bench {mnist_bench.__version__}"


# -- train --------------------------------------------------------------------------------


def test_train_prints_config_first_then_one_row_per_epoch(tiny_run):
    assert tiny_run.code == 0
    assert "Traceback" not in tiny_run.err
    lines, header, rows = _run_lines(tiny_run.out)
    config = json.loads((tiny_run.out_dir / "config.json").read_text())
    # The recipe and what differs from it (seed 0 is the recipe's own); the rest is on file.
    assert lines[0] == "config: the 'seed' recipe with epochs=1, train_subset=1024"
    assert config == TrainConfig.recipe("seed", epochs=1, train_subset=1024, seed=0).to_dict()
    assert lines[1] == (
        f"training 'seed' for 1 epoch into {tiny_run.out_dir}/ "
        f"(full config: {tiny_run.out_dir / 'config.json'})"
    )

    (history,) = json.loads((tiny_run.out_dir / "history.json").read_text())
    (row,) = rows  # one epoch, one row
    assert _column_ends(row) == _column_ends(header)  # right-aligned under the header
    epoch, loss, acc, val_loss, val_acc, lr, *_ = row.split()
    assert (int(epoch), lr) == (1, f"{history['lr']:.2e}")
    assert [loss, acc, val_loss, val_acc] == [
        f"{history[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
    ]


def test_train_prints_final_accuracy_and_digest(tiny_run):
    lines, _, _ = _run_lines(tiny_run.out)
    metrics = json.loads((tiny_run.out_dir / "metrics.json").read_text())
    final = FINAL_LINE.fullmatch(lines[-3])
    assert final, lines[-3]
    assert final[1] == "1"
    assert final[2] == f"{100 * metrics['test_accuracy']:.4f}"
    assert int(final[3]) == metrics["test_errors"] > 0
    assert final[4] == f"{metrics['test_loss']:.4f}"
    assert DIGEST_LINE.fullmatch(lines[-2])[1] == metrics["weights_digest"]
    assert lines[-1].startswith(f"wrote {tiny_run.out_dir}/: ")
    assert set(OUTPUT_FILES) <= set(lines[-1].split(": ", 1)[1].split())


@pytest.mark.parametrize("name", OUTPUT_FILES)
def test_train_writes_every_file(tiny_run, name):
    path = tiny_run.out_dir / name
    assert path.is_file() and path.stat().st_size > 0
    if name.endswith(".png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if name.endswith(".json"):
        json.loads(path.read_text())


def test_train_leaves_no_temporary_files(tiny_run):
    assert not [p.name for p in tiny_run.out_dir.iterdir() if p.name.startswith(".")]


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A copy of the shared run's folder, free to be resumed or written to."""
    return Path(shutil.copytree(tiny_run.out_dir, tmp_path / "run"))


def test_train_again_into_same_folder_resumes_without_training(
    cli, tiny_run, run_copy, small_plot_grids
):
    history = (run_copy / "history.json").read_text()
    argv = [*tiny_run.argv[:-1], run_copy]  # the same command, --out the copy
    result = cli(*argv)
    assert result.code == 0, result.err
    lines, _, rows = _run_lines(result.out)
    assert rows == []  # the one epoch is done: nothing trained
    assert f"already complete: {run_copy}/ holds all 1 epoch" in lines
    assert DIGEST_LINE.fullmatch(lines[-2])[1] == DIGEST_LINE.search(tiny_run.out)[1]
    assert (run_copy / "history.json").read_text() == history


def test_train_with_another_seed_into_the_folder_is_refused(cli, tiny_run, run_copy):
    config = (run_copy / "config.json").read_text()
    argv = [*tiny_run.argv[:-3], "1", "--out", run_copy]  # --seed 1
    assert argv[-4:-2] == ["--seed", "1"]
    result = cli(*argv)
    _assert_bad_input(result, str(run_copy / "config.json"), "different config")
    assert (run_copy / "config.json").read_text() == config
    assert "final epoch" not in result.out


def test_train_flags_map_onto_config_fields(
    cli, tmp_path, mnist_dir, monkeypatch, small_plot_grids
):
    monkeypatch.delenv("MNIST_BENCH_DATA")  # the data come from --data
    start = TrainConfig.recipe("seed", augment=True, extra={"from": "--config"})
    start.to_json(tmp_path / "start.json")
    flags = {
        "--model": "reference",
        "--model-options": '{"widths": [8, 16, 24], "dense_units": 32}',
        "--seed": "3",
        "--epochs": "1",
        "--batch-size": "128",
        "--lr": "0.01",
        "--lr-schedule": "cosine",
        "--warmup-epochs": "0.5",
        "--label-smoothing": "0.1",
        "--weight-averaging": "0.9",
        "--validation": "holdout",
        "--rotation-deg": "5",
        "--shift-px": "1.5",
        "--zoom": "0.05",
        "--elastic-alpha": "20",
        "--elastic-sigma": "5",
        "--contrast": "0.5",
        "--brightness": "0.25",
        "--noise-std": "0.125",
        "--holdout-size": "500",
        "--train-subset": "256",
        "--strategy": "mirrored",
    }
    argv = ["train", "--config", tmp_path / "start.json", "--out", tmp_path / "run"]
    argv += ["--data", mnist_dir]
    argv += [*(x for pair in flags.items() for x in pair), "--no-augment", "--no-deterministic"]
    argv += ["--no-recalibrate-batch-norm"]
    result = cli(*argv)
    assert result.code == 0, result.err

    expected = start.replace(
        model="reference",
        model_options={"widths": [8, 16, 24], "dense_units": 32},
        rotation_deg=5.0,
        shift_px=1.5,
        zoom=0.05,
        elastic_alpha=20.0,
        elastic_sigma=5.0,
        contrast=0.5,
        brightness=0.25,
        noise_std=0.125,
        seed=3,
        epochs=1,
        batch_size=128,
        learning_rate=0.01,
        lr_schedule="cosine",
        warmup_epochs=0.5,
        label_smoothing=0.1,
        weight_averaging=0.9,
        augment=False,
        validation="holdout",
        holdout_size=500,
        train_subset=256,
        deterministic=False,
        recalibrate_batch_norm=False,
        strategy="mirrored",
    )
    assert TrainConfig.from_json(tmp_path / "run" / "config.json") == expected
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"] == expected.to_dict()
    first = result.out.splitlines()[0]
    assert first.startswith("config: the 'reference' recipe with ")
    assert '"augment"' not in first and "augment=false" in first  # each change named once
    assert len(_run_lines(result.out)[2]) == 1
    # A holdout run reports its holdout score, never its test score (not for choosing).
    assert f"final epoch 1: holdout accuracy {metrics['val_accuracy']:.4%}" in result.out
    assert "test accuracy" not in result.out


@pytest.mark.parametrize(("model", "recipe"), [("robust", "robust"), ("notebook", "seed")])
def test_model_flag_picks_a_recipe_and_the_config_line_names_it(model, recipe):
    args = cli_module.build_parser().parse_args(["train", "--model", model, "--out", "run"])
    assert _resolve_config(args) == TrainConfig.recipe(recipe)
    assert _config_line(TrainConfig.recipe(recipe)) == f"config: the {recipe!r} recipe"
    changed = TrainConfig.recipe(recipe, seed=3, noise_std=0.3)
    assert _config_line(changed) == f"config: the {recipe!r} recipe with noise_std=0.3, seed=3"


@pytest.mark.parametrize("where", ["host", "device"])
def test_augment_on_flag_sets_the_input_path(where):
    args = cli_module.build_parser().parse_args(["train", "--augment-on", where, "--out", "run"])
    expected = TrainConfig.recipe("reference", augment_on=where)
    assert _resolve_config(args) == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "epochs must be >= 1, got 0"),
        (["--lr", "-1"], "learning_rate must be in (0.0, inf), got -1.0"),
        (["--holdout-size", "0"], "holdout_size must be in [1, 59999], got 0"),
        (["--train-subset", "70000"], "train_subset must be in [1, 60000], got 70000"),
        (["--label-smoothing", "1"], "label_smoothing must be in [0.0, 1.0), got 1.0"),
        (["--seed", "-1"], "seed must be in [0, 4294967295], got -1"),
        (["--zoom", "1"], "zoom must be in [0.0, 1.0), got 1.0"),
        (["--model-options", '{"width": 8}'], "unknown model_options ['width'] for model 'seed'"),
        (
            ["--augment-on", "device", "--strategy", "mirrored"],
            "augment_on='device' trains on one device: it needs strategy='default'",
        ),
    ],
)
def test_train_invalid_flag_value_is_bad_input(cli, tmp_path, flags, message):
    result = cli("train", "--model", "seed", "--out", tmp_path / "run", *flags)
    _assert_bad_input(result, message)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read config"),
        ("[1]", "expected a JSON object"),
        ('{"epoch": 1}', "unknown TrainConfig field(s) ['epoch']"),
        ('{"epochs": 0}', "epochs must be >= 1, got 0"),
    ],
    ids=["missing", "json-array", "unknown-field", "bad-value"],
)
def test_train_bad_config_file_is_bad_input(cli, tmp_path, content, message):
    path = tmp_path / "start.json"
    if content is not None:
        path.write_text(content)
    result = cli("train", "--config", path, "--out", tmp_path / "run")
    _assert_bad_input(result, f"{path}: ", message)


# -- evaluate -----------------------------------------------------------------------------


def _confusion_from_table(lines: list[str]) -> np.ndarray:
    assert lines[0].split() == ["true\\pred", *map(str, range(10))]
    rows = [line.split() for line in lines[1:11]]
    assert [row[0] for row in rows] == [str(i) for i in range(10)]
    return np.array([[int(v) for v in row[1:]] for row in rows])


def test_evaluate_prints_accuracy_and_confusion_and_writes_json(cli, tiny_run, mnist, tmp_path):
    report_path = tmp_path / "report.json"
    result = cli("evaluate", tiny_run.out_dir, "--json", report_path)
    assert result.code == 0, result.err
    metrics = json.loads((tiny_run.out_dir / "metrics.json").read_text())
    lines = result.out.splitlines()
    accuracy, errors = f"{100 * metrics['test_accuracy']:.4f}", metrics["test_errors"]
    assert lines[0] == (
        f"test accuracy {accuracy}% ({errors} errors of 10000), loss {metrics['test_loss']:.4f}"
    )
    confusion = _confusion_from_table(lines[2:13])
    assert confusion.shape == (10, 10)
    np.testing.assert_array_equal(confusion.sum(axis=1), np.bincount(mnist.y_test, minlength=10))
    assert np.trace(confusion) == 10_000 - errors
    assert lines[13] == f"wrote {report_path}"

    report = EvalReport.from_json(report_path)
    assert lines[1] == (
        f"calibration: ECE {report.ece:.4%} (15 bins), NLL {report.nll:.4f}, "
        f"Brier {report.brier:.4f}, mean confidence {report.mean_confidence:.4f}"
    )
    assert report.accuracy == metrics["test_accuracy"]
    np.testing.assert_array_equal(report.confusion, confusion)


# -- predict ------------------------------------------------------------------------------


def _save_png(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).save(path)
    return path


def _photo_of(digit: np.ndarray) -> np.ndarray:
    """A 'photo': the digit scaled up 3x, dark ink on white paper, RGB."""
    big = np.kron(digit, np.ones((3, 3), dtype=np.uint8))  # (84, 84)
    return np.repeat((255 - big)[:, :, None], 3, axis=2)


@pytest.fixture
def good_digit(tmp_path, mnist) -> Path:
    return _save_png(tmp_path / "digit.png", mnist.x_test[0])


def test_predict_prints_a_label_and_confidence_per_file(cli, tiny_run, mnist, tmp_path):
    files = [
        _save_png(tmp_path / "a.png", mnist.x_test[0]),
        tmp_path / "b.npy",
        tmp_path / "c.jpg",
    ]
    np.save(files[1], mnist.x_test[1])
    Image.fromarray(_photo_of(mnist.x_test[2])).save(files[2], quality=95)
    result = cli("predict", tiny_run.out_dir, *files)
    assert result.code == 0, result.err
    model_line, header, *lines = result.out.splitlines()
    assert model_line.startswith(f"model: {tiny_run.out_dir}: ")  # which model answers
    assert "not calibrated" in model_line
    assert header.split() == ["file", "digit", "probability"]
    assert len(lines) == len(files)
    for path, line in zip(files, lines, strict=True):
        name, label, confidence = line.split()
        assert name == str(path)
        assert label in [str(d) for d in range(10)]
        assert 0.1 <= float(confidence) <= 1.0  # the largest of 10 probabilities
        assert re.fullmatch(r"[01]\.\d{4}", confidence)


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_predict_on_a_saved_mnist_digit_matches_the_library(
    cli, tiny_run, tiny_model, mnist, tmp_path, suffix
):
    digit = mnist.x_test[7]  # (28, 28) uint8: read back as is, not re-centred
    path = tmp_path / f"digit{suffix}"
    if suffix == ".png":
        _save_png(path, digit)
    else:
        np.save(path, digit)
    labels, probabilities = mnist_bench.predict(tiny_model, digit)
    result = cli("predict", tiny_run.out_dir, path)
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1].split() == [  # file digit probability
        str(path),
        str(labels[0]),
        f"{probabilities[0, labels[0]]:.4f}",
    ]


def _npy_file(name: str, array: np.ndarray):
    def make(tmp: Path) -> Path:
        np.save(tmp / name, array)
        return tmp / name

    return make


def _png_file(name: str, image: np.ndarray):
    return lambda tmp: _save_png(tmp / name, image)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# (how the bad image is made, what the message says besides the file name)
BAD_IMAGES = {
    "missing": (bytes_file("missing.png", None), "cannot read image"),
    "empty": (bytes_file("empty.png", b""), "cannot read image"),
    "corrupt-png": (bytes_file("corrupt.png", PNG_SIGNATURE + b"\x00" * 64), "cannot read image"),
    "text-as-jpg": (bytes_file("note.jpg", b"a digit, honest\n"), "cannot read image"),
    "npy-3d-wrong-channels": (_npy_file("a.npy", np.ones((3, 5, 2))), "got (3, 5, 2)"),
    "npy-batch": (_npy_file("b.npy", np.zeros((2, 28, 28), np.uint8)), "got (2, 28, 28)"),
    "npy-1d": (_npy_file("c.npy", np.zeros(784, np.uint8)), "got (784,)"),
    "npy-objects": (_npy_file("d.npy", np.array([None, 1], dtype=object)), "cannot read image"),
    "npy-empty": (_npy_file("e.npy", np.zeros((0, 5))), "the image is empty"),
    "blank-white-photo": (_png_file("blank.png", np.full((48, 64), 255, np.uint8)), "no ink"),
    "blank-black-photo": (_png_file("black.png", np.zeros((40, 40, 3), np.uint8)), "no ink"),
}


@pytest.mark.parametrize(("make", "message"), BAD_IMAGES.values(), ids=BAD_IMAGES)
def test_predict_bad_image_is_bad_input(cli, tiny_run, tmp_path, good_digit, make, message):
    bad = make(tmp_path)
    result = cli("predict", tiny_run.out_dir, good_digit, bad)
    _assert_bad_input(result, str(bad), message)
    assert result.out == ""  # nothing predicted when one file is bad


BAD_MODELS = {
    "missing": (lambda tmp: tmp / "no_model", "no such model file"),
    "txt-file": (bytes_file("model.txt", b"weights\n"), "not a model file"),
    "text-as-keras": (bytes_file("model.keras", b"weights\n"), "damaged or not a .keras file"),
    "empty-folder": (lambda tmp: tmp / "empty", "folder holds neither"),
}


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize(("make", "message"), BAD_MODELS.values(), ids=BAD_MODELS)
def test_bad_model_is_bad_input(cli, tmp_path, good_digit, command, make, message):
    (tmp_path / "empty").mkdir()
    model = make(tmp_path)
    extra = [good_digit] if command == "predict" else []
    result = cli(command, model, *extra)
    _assert_bad_input(result, str(model), message)


# -- usage errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
        (["train", "--out", "x", "--epochz", "3"], "unrecognized arguments: --epochz 3"),
        (["train", "--model", "vgg", "--out", "x"], "invalid choice: 'vgg'"),
        (["train", "--epochs", "two", "--out", "x"], "invalid int value: 'two'"),
        (["train", "--model-options", "{widths", "--out", "x"], "not valid JSON"),
        (["train", "--model-options", "[8]", "--out", "x"], "expected a JSON object"),
        (["train", "--model", "seed"], "the following arguments are required: --out"),
        (["predict", "model.keras"], "the following arguments are required: images"),
        (["data", "verify", "--fast"], "unrecognized arguments: --fast"),
    ],
)
def test_usage_error_exits_2(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert message in err
    assert "usage: mnist-bench" in err


# -- progress -----------------------------------------------------------------------------


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_step_bar_redraws_one_line_on_a_terminal_and_clears_it_at_the_epoch_end():
    terminal = _FakeTerminal()
    bar = cli_module._StepBar(stream=terminal)
    for step in range(1, 4):
        bar(2, step, 3)
    drawn = terminal.getvalue()
    assert "\n" not in drawn  # redrawn in place: the epoch's row is the only new line
    assert drawn.startswith("\repoch 2 [" + "#" * 10 + "." * 20 + "] 1/3")
    assert "] 3/3" in drawn and drawn.endswith("\r")  # the last step wipes the bar


def test_step_bar_is_silent_when_not_on_a_terminal():
    stream = io.StringIO()
    bar = cli_module._StepBar(stream=stream)
    bar(1, 1, 2)
    bar(1, 2, 2)
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("seconds", "text"), [(42.4, "42 s"), (89, "89 s"), (420, "7 min"), (7500, "2 h 05 min")]
)
def test_durations_read_as_a_person_would_say_them(seconds, text):
    assert cli_module._duration(seconds) == text


def test_building_the_parser_does_not_import_tensorflow():
    """`mnist-bench --help`, `data verify` and every parser stay quick and quiet: TensorFlow
    (and its start-up lines) only when a command needs it."""
    import subprocess
    import sys

    code = (
        "import sys; from mnist_bench.cli import build_parser; build_parser(); "
        "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
