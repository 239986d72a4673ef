"""mnist_bench.data: IDX reading and its every error, the search order, verify, the CLI, and
the downloader against a local HTTP server (127.0.0.1 only)."""

import contextlib
import filecmp
import functools
import gzip
import hashlib
import http.server
import os
import pickle
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mnist_bench
from mnist_bench import MnistDataError, download_mnist, load_mnist, verify_mnist
from mnist_bench import data as data_mod
from mnist_bench.cli import main
from mnist_bench.data import GZ_MD5, SHA256, _FileSpec, _read_checked, _read_idx, _read_split

NAMES = list(SHA256)  # the four canonical names, without .gz
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # published
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
HOW_TO_POINT = ("load_mnist(data_dir=", "MNIST_BENCH_DATA", "mnist-bench data download --dir")


@contextlib.contextmanager
def _raises(path: Path, *fragments: str):
    """pytest.raises(MnistDataError) whose message must name `path` and hold `fragments`."""
    with pytest.raises(MnistDataError) as info:
        yield info
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message


def _link_real_files(mnist_dir: Path, folder: Path, skip: str | None = None) -> None:
    """Symlink the real files (whatever their suffix) into `folder`, except `skip`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        for candidate in (mnist_dir / f"{name}.gz", mnist_dir / name):
            if name != skip and candidate.is_file():
                (folder / candidate.name).symlink_to(candidate.resolve())
                break


def _real_bytes(mnist_dir: Path, name: str) -> bytes:
    gz = mnist_dir / f"{name}.gz"
    return gzip.decompress(gz.read_bytes()) if gz.is_file() else (mnist_dir / name).read_bytes()


# -- IDX round trip ---------------------------------------------------------------------------

images = hnp.arrays(np.uint8, st.tuples(*(st.integers(0, 6),) * 3))
labels = hnp.arrays(np.uint8, st.integers(0, 30), elements=st.integers(0, 9))


@settings(max_examples=40, deadline=None)
@given(array=images, gz=st.booleans())
def test_idx_images_round_trip(write_idx, array, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_idx(Path(tmp) / ("x.gz" if gz else "x"), array, gz=gz)
        back = _read_idx(path, "images")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, array)
    assert back.shape == array.shape  # also for zero-sized dimensions


@settings(max_examples=40, deadline=None)
@given(array=labels, gz=st.booleans())
def test_idx_labels_round_trip(write_idx, array, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_idx(Path(tmp) / ("y.gz" if gz else "y"), array, gz=gz)
        back = _read_idx(path, "labels")
    np.testing.assert_array_equal(back, array)


# -- every format error names the file and the problem --------------------------------------

_LABELS = np.array([0, 1, 2, 9], dtype=np.uint8)
_IMAGES = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)


def _tamper(raw: bytes, index: int, value: int) -> bytes:
    return raw[:index] + bytes([value]) + raw[index + 1 :]


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize(
    ("kind", "make", "fragments"),
    [
        ("labels", lambda raw: _tamper(raw, 1, 0x01), ["wrong magic number 0x00010801"]),
        ("labels", lambda raw: _tamper(raw, 2, 0x0D), ["data type byte 0x0d", "0x08"]),
        ("images", lambda raw: raw, ["1 dimension(s), expected 3", "0x00000803"]),
        ("labels", lambda raw: raw[:-1], ["truncated", "implies"]),
        ("labels", lambda raw: raw[:6], ["truncated", "header"]),
        ("labels", lambda raw: raw[:2], ["truncated", "shorter than an IDX header"]),
        ("labels", lambda raw: raw + b"\x00\x00", ["trailing bytes", "2 extra"]),
        ("labels", lambda raw: raw[:-1] + b"\x0a", ["label 10 at index 3", "range 0..9"]),
    ],
    ids=[
        "magic",
        "dtype",
        "dims",
        "truncated",
        "truncated-header",
        "truncated-magic",
        "trailing",
        "label-range",
    ],
)
def test_format_errors_name_file_and_problem(
    tmp_path, write_idx, encode_idx, gz, kind, make, fragments
):
    path = write_idx(tmp_path / ("f.gz" if gz else "f"), make(encode_idx(_LABELS)), gz=gz)
    with _raises(path, *fragments):
        _read_idx(path, kind)


def test_images_read_as_labels_is_a_dimension_error(tmp_path, write_idx):
    path = write_idx(tmp_path / "x.gz", _IMAGES)
    with _raises(path, "3 dimension(s), expected 1"):
        _read_idx(path, "labels")


@pytest.mark.parametrize(
    "content",
    [b"not gzip at all", gzip.compress(b"\x00" * 1000)[:20]],
    ids=["garbage", "truncated-stream"],
)
def test_corrupt_gzip_names_file(tmp_path, content):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(content)
    with _raises(path, "corrupt gzip stream"):
        _read_idx(path, "labels")


def test_unreadable_file_names_it(tmp_path):
    path = tmp_path / "a-folder-not-a-file"
    path.mkdir()
    with _raises(path, "cannot read"):
        _read_idx(path, "labels")


def test_record_count_image_size_and_hash_checks(tmp_path, write_idx):
    y = write_idx(tmp_path / "y.gz", _LABELS)
    with _raises(y, "holds 4 records, expected 5"):
        _read_checked(y, _FileSpec("y", "labels", records=5))
    with _raises(y, "SHA-256 mismatch", "0" * 64):
        _read_checked(y, _FileSpec("y", "labels", sha256="0" * 64))
    x = write_idx(tmp_path / "x.gz", _IMAGES)
    with _raises(x, "images are 3x4 pixels, expected 28x28"):
        _read_checked(x, _FileSpec("x", "images"))
    # with the right pins, the same files pass
    sha = hashlib.sha256(gzip.decompress(y.read_bytes())).hexdigest()
    np.testing.assert_array_equal(_read_checked(y, _FileSpec("y", "labels", 4, sha)), _LABELS)


def test_split_count_mismatch_names_labels_file(tmp_path, write_idx):
    write_idx(tmp_path / "x.gz", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "y", np.zeros(4, np.uint8), gz=False)  # uncompressed is found too
    with _raises(tmp_path / "y", "holds 4 labels but x.gz holds 3 images"):
        _read_split(tmp_path, _FileSpec("x", "images"), _FileSpec("y", "labels"))


def test_gz_is_preferred_over_uncompressed(tmp_path, write_idx):
    write_idx(tmp_path / "x.gz", np.ones((1, 28, 28), np.uint8))
    write_idx(tmp_path / "x", b"garbage", gz=False)
    write_idx(tmp_path / "y.gz", np.ones(1, np.uint8))
    x, y = _read_split(tmp_path, _FileSpec("x", "images"), _FileSpec("y", "labels"))
    assert x.shape == (1, 28, 28) and y.tolist() == [1]


def test_real_labels_with_one_flipped_label_fail_the_pinned_hash(tmp_path, mnist_dir, encode_idx):
    name = "t10k-labels-idx1-ubyte"
    raw = bytearray(_real_bytes(mnist_dir, name))
    raw[-1] = (raw[-1] + 1) % 10  # still a valid label: only the hash can tell
    path = tmp_path / name
    path.write_bytes(bytes(raw))
    spec = next(s for pair in data_mod._SPLITS.values() for s in pair if s.name == name)
    with _raises(path, "SHA-256 mismatch", SHA256[name]):
        _read_checked(path, spec)


def test_error_pickles_and_formats():
    error = MnistDataError(Path("/x/y.gz"), "truncated")
    assert str(error) == "/x/y.gz: truncated" and isinstance(error, ValueError)
    back = pickle.loads(pickle.dumps(error))
    assert (back.path, back.problem, str(back)) == (error.path, error.problem, str(error))


# -- search order -----------------------------------------------------------------------------


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if anything tries to download; also unset MNIST_BENCH_DATA."""
    monkeypatch.delenv("MNIST_BENCH_DATA", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("load_mnist must not download here")

    monkeypatch.setattr(data_mod, "download_mnist", refuse)


def test_missing_files_message_says_how_to_point_the_loader(tmp_path, no_download):
    with _raises(tmp_path / "train-images-idx3-ubyte.gz", "missing", *HOW_TO_POINT):
        load_mnist(tmp_path)


def test_explicit_data_dir_that_does_not_exist_raises(tmp_path, no_download):
    with _raises(tmp_path / "nope", "no such folder", *HOW_TO_POINT):
        load_mnist(tmp_path / "nope")


def test_explicit_data_dir_missing_one_file_raises(tmp_path, mnist_dir, no_download):
    _link_real_files(mnist_dir, tmp_path, skip="t10k-labels-idx1-ubyte")
    with _raises(tmp_path / "t10k-labels-idx1-ubyte.gz", "missing"):
        load_mnist(tmp_path, cache_dir=mnist_dir)  # the cache is not consulted


def test_env_folder_is_used_and_not_fallen_through(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("MNIST_BENCH_DATA", str(tmp_path))
    with _raises(tmp_path / "train-images-idx3-ubyte.gz", "missing"):
        load_mnist(cache_dir=tmp_path / "cache")


def test_empty_cache_without_download_raises(tmp_path, no_download):
    with _raises(tmp_path / "train-images-idx3-ubyte.gz", "missing", *HOW_TO_POINT):
        load_mnist(cache_dir=tmp_path, download=False)


def test_empty_cache_is_filled_by_download(tmp_path, monkeypatch, mnist_dir, mnist):
    monkeypatch.delenv("MNIST_BENCH_DATA", raising=False)
    calls = []

    def fake_download(dest):
        calls.append(Path(dest))
        _link_real_files(mnist_dir, Path(dest))
        return Path(dest)

    monkeypatch.setattr(data_mod, "download_mnist", fake_download)
    data = load_mnist(cache_dir=tmp_path / "cache")
    assert calls == [tmp_path / "cache"]
    np.testing.assert_array_equal(data.y_test, mnist.y_test)


def test_default_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data_mod.default_cache_dir() == tmp_path / "mnist-bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_mod.default_cache_dir() == tmp_path / "home" / ".cache" / "mnist-bench"


# -- the real files ---------------------------------------------------------------------------


def test_real_data_shapes_dtypes_and_label_counts(mnist):
    assert isinstance(mnist, mnist_bench.MnistData)
    assert mnist.x_train.shape == (60_000, 28, 28) and mnist.x_test.shape == (10_000, 28, 28)
    assert mnist.y_train.shape == (60_000,) and mnist.y_test.shape == (10_000,)
    for array in (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test):
        assert array.dtype == np.uint8
    assert np.bincount(mnist.y_train, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.y_test, minlength=10).tolist() == TEST_COUNTS
    assert sum(TRAIN_COUNTS) == 60_000 and sum(TEST_COUNTS) == 10_000
    assert mnist.x_train.max() == 255 and mnist.x_train.min() == 0


def test_loading_local_files_does_not_import_tensorflow(mnist_dir):
    code = (
        "import sys, mnist_bench; mnist_bench.load_mnist(sys.argv[1], download=False); "
        "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code, str(mnist_dir)], check=True, timeout=60)


def test_pinned_hashes_match_the_real_files_and_their_sha256sums(mnist_dir):
    found = {r.name: r.sha256 for r in verify_mnist(mnist_dir)}
    assert found == SHA256
    sums = mnist_dir / "SHA256SUMS"  # beside the project's offline copy, not in a user's cache
    if sums.is_file():
        listed = dict(line.split()[::-1] for line in sums.read_text().splitlines() if line.strip())
        assert listed == SHA256


def test_verify_real_folder(mnist_dir):
    reports = verify_mnist(mnist_dir)
    assert [r.name for r in reports] == NAMES
    assert all(r.ok and r.problem is None for r in reports), reports
    assert [r.sha256 for r in reports] == [SHA256[n] for n in NAMES]
    assert [r.records for r in reports] == [60_000, 60_000, 10_000, 10_000]


def _folder_with_truncated_labels(mnist_dir: Path, folder: Path) -> Path:
    name = "t10k-labels-idx1-ubyte"
    _link_real_files(mnist_dir, folder, skip=name)
    truncated = folder / name  # uncompressed, so the raw path is exercised too
    truncated.write_bytes(_real_bytes(mnist_dir, name)[:-100])
    return truncated


def test_verify_reports_bad_and_missing_files_without_raising(tmp_path, mnist_dir):
    truncated = _folder_with_truncated_labels(mnist_dir, tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    reports = {r.name: r for r in verify_mnist(tmp_path)}
    assert [r.ok for r in reports.values()] == [True, False, True, False]
    bad = reports["t10k-labels-idx1-ubyte"]
    assert bad.path == truncated and "truncated" in bad.problem and bad.records is None
    missing = reports["train-labels-idx1-ubyte"]
    assert missing.problem == "missing" and missing.path.name == "train-labels-idx1-ubyte.gz"


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_verify_good_folder(mnist_dir, capsys):
    assert main(["data", "verify", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok") == 4 and "BAD" not in out and "verified" in out


def test_cli_verify_uses_env_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_BENCH_DATA", str(tmp_path))
    assert main(["data", "verify"]) == 1
    assert str(tmp_path) in capsys.readouterr().err


def test_cli_verify_truncated_file_fails_and_names_it(tmp_path, mnist_dir, capsys):
    _folder_with_truncated_labels(mnist_dir, tmp_path)
    assert main(["data", "verify", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    (line,) = [x for x in captured.out.splitlines() if "BAD" in x]
    assert line.startswith("t10k-labels-idx1-ubyte ") and "truncated" in line
    assert "t10k-labels-idx1-ubyte" in captured.err


def test_cli_verify_missing_folder_exits_2(tmp_path, capsys):
    assert main(["data", "verify", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_cli_download_prints_the_folder(tmp_path, monkeypatch, mnist_dir, capsys):
    def fake_download(dest):
        _link_real_files(mnist_dir, Path(dest))
        return Path(dest)

    monkeypatch.setattr(data_mod, "download_mnist", fake_download)
    assert main(["data", "download", "--dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok") == 4 and str(tmp_path / "d") in out


def test_cli_download_failure_exits_2(tmp_path, monkeypatch, capsys):
    def failing_download(dest):
        raise MnistDataError(Path(dest) / "x.gz", "could not download")

    monkeypatch.setattr(data_mod, "download_mnist", failing_download)
    assert main(["data", "download", "--dir", str(tmp_path)]) == 2
    assert "could not download" in capsys.readouterr().err


# -- the downloader, against a local HTTP server ------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory, mnist_dir):
    """Base URLs of three local 'mirrors': good/, broken/ (truncated .gz), missing/ (404)."""
    root = tmp_path_factory.mktemp("mirrors")
    for sub in ("good", "broken", "missing"):
        (root / sub).mkdir()
    for name in NAMES:
        gz = mnist_dir / f"{name}.gz"
        content = gz.read_bytes() if gz.is_file() else gzip.compress(_real_bytes(mnist_dir, name))
        (root / "good" / f"{name}.gz").write_bytes(content)
        (root / "broken" / f"{name}.gz").write_bytes(content[: len(content) // 2])
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {sub: f"{base}/{sub}/" for sub in ("good", "broken", "missing")} | {"root": root}
    server.shutdown()
    server.server_close()


@pytest.fixture
def local_only(monkeypatch):
    """Keep urllib off any proxy: the test server is on 127.0.0.1."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _assert_downloaded(dest: Path, root: Path) -> None:
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    for name in NAMES:
        assert filecmp.cmp(dest / f"{name}.gz", root / "good" / f"{name}.gz", shallow=False)


@pytest.mark.network
def test_download_skips_a_mirror_that_404s(tmp_path, mirrors, local_only):
    dest = download_mnist(
        tmp_path / "dest", mirrors=[mirrors["missing"], mirrors["good"]], gz_md5=None
    )
    assert dest == tmp_path / "dest"
    _assert_downloaded(dest, mirrors["root"])


@pytest.mark.network
@pytest.mark.parametrize("check_md5", [False, True], ids=["sha256-only", "gz-md5"])
def test_download_skips_a_mirror_serving_corrupt_files(tmp_path, mirrors, local_only, check_md5):
    good = mirrors["root"] / "good"
    # gz_md5 is injectable: the served .gz are recompressed, so the canonical MD5s cannot match.
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in good.iterdir()}
    dest = download_mnist(
        tmp_path, mirrors=[mirrors["broken"], mirrors["good"]], gz_md5=md5 if check_md5 else None
    )
    _assert_downloaded(dest, mirrors["root"])


@pytest.mark.network
def test_download_fails_cleanly_when_every_mirror_fails(tmp_path, mirrors, local_only):
    urls = [mirrors["missing"], mirrors["broken"]]
    dest = tmp_path / "dest"
    with _raises(dest / "train-images-idx3-ubyte.gz", "any mirror", "404", *HOW_TO_POINT) as info:
        download_mnist(dest, mirrors=urls, gz_md5=None)
    for url in urls:
        assert f"{url}train-images-idx3-ubyte.gz" in str(info.value)
    assert "corrupt gzip stream" in str(info.value)
    assert list(dest.rglob("*")) == []  # nothing left behind, not even the temporary folder


@pytest.mark.network
def test_download_checks_the_canonical_gz_md5_by_default(tmp_path, mirrors, local_only):
    assert GZ_MD5["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    with _raises(tmp_path / "train-images-idx3-ubyte.gz", "md5", GZ_MD5[f"{NAMES[0]}.gz"]):
        download_mnist(tmp_path, mirrors=[mirrors["good"]])  # recompressed: MD5 differs
    assert list(tmp_path.rglob("*")) == []


def test_download_refuses_to_replace_a_bad_file_already_there(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"junk")
    with _raises(bad, "corrupt gzip stream", "delete it"):
        download_mnist(tmp_path, mirrors=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name]


# -- how the tests find MNIST ----------------------------------------------------------------


def test_tests_needing_mnist_carry_the_marker(mnist_dir, request):
    assert request.node.get_closest_marker("mnist") is not None
    assert mnist_dir == data_mod.data_dir()  # as the package finds it


def test_a_test_needing_mnist_fails_without_it_and_says_how_to_get_it(tmp_path):
    """Missing data fails the test (never a skip); `-m "not mnist"` leaves it out explicitly."""
    env = {**os.environ, "MNIST_BENCH_DATA": str(tmp_path)}
    test = f"{Path(__file__)}::test_verify_real_folder"
    argv = [sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 error" in run.stdout and "skipped" not in run.stdout  # failed in its fixture
    assert f"no MNIST in $MNIST_BENCH_DATA={tmp_path}" in run.stdout
    assert "run `mnist-bench data download`" in run.stdout
    assert "-m 'not mnist'" in run.stdout
