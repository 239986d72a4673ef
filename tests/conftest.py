"""Shared fixtures: the real MNIST files, and a tiny IDX writer for synthetic files.

The real data is found as the package finds it (`mnist_bench.data.data_dir`):
``$MNIST_BENCH_DATA``, else the cache that `mnist-bench data download` and the quick start
fill. A test that needs it and finds none FAILS, saying how to get it: an accuracy check that
passes by not running is no check. Such tests carry the ``mnist`` marker, so leaving them out
is explicit: ``pytest -m "not mnist"``.
"""

import gzip
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# First, before anything imports TensorFlow: importing the package sets TensorFlow's
# import-time variables (oneDNN on every x86 CPU, C++ logging quiet; mnist_bench._tfenv).
import mnist_bench
from mnist_bench._tfenv import start_tensorflow

REPO_ROOT = Path(__file__).resolve().parents[1]


def _idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim])
    dims = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + dims + array.tobytes()


def _write_idx(path: str | os.PathLike, data: np.ndarray | bytes, *, gz: bool = True) -> Path:
    """Write `data` (an array, IDX-encoded here; or raw bytes, as is) to `path`, gzipped or not.

    The caller picks the file name: the loader decides from the ``.gz`` suffix whether to
    decompress, so tests can also write a mismatch on purpose.
    """
    path = Path(path)
    raw = data if isinstance(data, bytes) else _idx_bytes(data)
    path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=0) if gz else raw)
    return path


def pytest_configure(config: pytest.Config) -> None:
    """Import TensorFlow once with its C++ start-up lines (CUDA stubs, cuInit on a CPU
    machine) filtered out of the test output; anything else it writes still shows.
    TF_CPP_MIN_LOG_LEVEL set in-process does not silence them (only one set before Python
    starts does), hence the filter. Under pytest-xdist, keep `LONGEST_FILES_FIRST`'s order
    (xdist would reorder files by their number of tests: `--no-loadscope-reorder`). The
    xdist controller runs no test: it leaves TensorFlow to its workers (an import is ~10 s of
    CPU on a 2-core Zen 3, taken from the workers starting beside it)."""
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist is installed
        config.option.loadscopereorder = False
    xdist_controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(
        config, "workerinput"
    )
    if xdist_controller:
        return
    for line in start_tensorflow():
        print(line, file=sys.stderr)


# The helpers reach tests as session fixtures (safe inside hypothesis tests, which reject
# function-scoped ones), not by importing conftest.
@pytest.fixture(scope="session")
def write_idx() -> Callable[..., Path]:
    """`write_idx(path, array_or_bytes, *, gz=True) -> Path`: write a (synthetic) IDX file."""
    return _write_idx


@pytest.fixture(scope="session")
def encode_idx() -> Callable[[np.ndarray], bytes]:
    """`encode_idx(array) -> bytes`: the IDX encoding of a uint8 array, to tamper with."""
    return _idx_bytes


# pytest-xdist (`-n 2 --dist loadfile`) hands whole files to the workers in collection order,
# each worker taking the next file when it is nearly done. The longest files go first, so the
# run does not end with one worker on a long file while the other has nothing left (longest
# processing time first; `pytest_configure` keeps this order instead of xdist's, by number of
# tests). Seconds per file under `-n 2` on the 2-core Zen 3, most to
# least; the other files follow in their usual order. Order only: no test changes.
LONGEST_FILES_FIRST = (  # 2026-12-07, Zen 3, idle, summed --durations
    "test_bench.py",  # ~115 s
    "test_reproduce.py",  # ~115 s
    "test_training.py",  # ~100 s
    "test_accuracy.py",  # ~70 s
    "test_models.py",  # ~50 s
    "test_compare.py",  # ~35 s
    "test_batch_norm.py",  # ~35 s (measured busy; added after the refresh)
    "test_export.py",  # ~35 s
    "mnist_cnn.ipynb",  # ~30 s
    "test_device_input.py",  # ~30 s
    "test_cli.py",  # ~25 s
    "test_search.py",  # ~25 s
    "test_data.py",  # ~25 s
    "test_robustness.py",  # ~25 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the real MNIST files (through `mnist_dir`) with ``mnist``;
    put the longest files first (`LONGEST_FILES_FIRST`), each file's tests in their order."""
    for item in items:
        if "mnist_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mnist)
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding the four real MNIST files, found as the package finds it; the test
    fails with how to get them when they are not there."""
    from mnist_bench.data import DATA_ENV, data_dir, default_cache_dir, missing_files

    folder = data_dir()
    missing = missing_files(folder)
    if missing:
        where = f"${DATA_ENV}={folder}" if os.environ.get(DATA_ENV) else f"the cache {folder}"
        pytest.fail(
            f"no MNIST in {where} (missing {', '.join(missing)}): run `mnist-bench data "
            f"download` (fills {default_cache_dir()}) or set {DATA_ENV} to a folder holding the "
            "four IDX files; to leave the tests that need MNIST out, pytest -m 'not mnist'",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> "mnist_bench.MnistData":
    """The real MNIST arrays, loaded (and verified) once per session."""
    return mnist_bench.load_mnist(mnist_dir, download=False)


# -- trained tiny model (shared) --

import contextlib  # noqa: E402 (this section is kept apart, at the end)
import io  # noqa: E402
from dataclasses import dataclass  # noqa: E402

# The seed model, trained once per session through the command line: 1 epoch on the first
# 1,024 training images (about 54% test accuracy: enough to tell digits apart, not to be good).
TINY_RUN_ARGV = (
    *("train", "--model", "seed", "--epochs", "1"),
    *("--train-subset", "1024", "--seed", "0"),
)
# misclassified.png draws one matplotlib axes per digit, up to plots.MAX_GRID_IMAGES (1,000):
# about 40 s for a 54%-accurate model on a loaded 2-core machine. The tests shrink the grid;
# every figure is still drawn and written by the real code.
TINY_GRID_IMAGES = 20


@dataclass(frozen=True)
class CliRun:
    """One in-process run of `mnist_bench.cli.main`: its argv, exit code and output."""

    argv: tuple[str, ...]
    code: int
    out: str  # stdout
    err: str  # stderr
    out_dir: Path  # the --out folder


@pytest.fixture
def small_plot_grids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the misclassified-digits grid for one test (see TINY_GRID_IMAGES)."""
    from mnist_bench import plots

    monkeypatch.setattr(plots, "MAX_GRID_IMAGES", TINY_GRID_IMAGES)


@pytest.fixture(scope="session")
def tiny_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    """`mnist-bench train` of the seed model, 1 epoch on 1,024 images, into a session folder.

    Holds the whole output the command printed, so the CLI tests check it without training
    again. Treat `out_dir` as read-only: copy it (`shutil.copytree`) to resume or overwrite.
    """
    from mnist_bench import cli, plots

    out_dir = tmp_path_factory.mktemp("tiny_run")
    argv = (*TINY_RUN_ARGV, "--out", str(out_dir))
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNIST_BENCH_DATA", str(mnist_dir))
        mp.setattr(plots, "MAX_GRID_IMAGES", TINY_GRID_IMAGES)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(argv))
    assert code == 0, f"the shared tiny training failed:\n{err.getvalue()}"
    return CliRun(argv, code, out.getvalue(), err.getvalue(), out_dir)


@pytest.fixture(scope="session")
def tiny_model(tiny_run: CliRun) -> "keras.Model":  # noqa: F821 (keras is imported lazily)
    """The model of `tiny_run`, loaded from its folder (its `model.keras`)."""
    return mnist_bench.load_model(tiny_run.out_dir)


# -- the published model, exported (shared by test_export and test_serving) --

PUBLISHED_MODEL = REPO_ROOT / "results" / "model.keras"


@pytest.fixture(scope="session")
def published_model() -> "keras.Model":  # noqa: F821
    """The published reference model, results/model.keras (99.71% test accuracy)."""
    return mnist_bench.load_model(PUBLISHED_MODEL)


@pytest.fixture(scope="session")
def litert_file(published_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published model exported to a float32 LiteRT file, once per session."""
    from mnist_bench.export import export_model

    out = tmp_path_factory.mktemp("litert") / "model.tflite"
    return export_model(published_model, "litert", out)


@pytest.fixture(scope="session")
def litert_predictor(litert_file: Path) -> "mnist_bench.export.LiteRTPredictor":
    """A `LiteRTPredictor` of `litert_file`, with the package's default threads."""
    from mnist_bench.export import LiteRTPredictor

    return LiteRTPredictor(litert_file)
