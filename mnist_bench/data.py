"""The four MNIST IDX files: find them, check them, download them, load them.

`load_mnist` looks for the files (each as ``name.gz`` or uncompressed ``name``) in this order:

1. the `data_dir` argument;
2. the folder named by the environment variable ``MNIST_BENCH_DATA``;
3. the per-user cache, ``$XDG_CACHE_HOME/mnist-bench`` or ``~/.cache/mnist-bench`` (or
   the `cache_dir` argument);
4. a download into that cache from the public mirrors in `MIRRORS` (unless
   ``download=False``).

A folder named by 1 or 2 is trusted to hold the files: if they are missing there, loading
fails instead of going on to the cache or the network. Files that are found but do not verify
(IDX format, record counts, 28x28, pinned SHA-256 of the decompressed bytes) always raise
`MnistDataError`; they are never silently downloaded again.

Example::

    from mnist_bench import load_mnist
    data = load_mnist()                 # or load_mnist("../shared/mnist")
    data.x_train.shape                  # (60000, 28, 28), uint8
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_ENV = "MNIST_BENCH_DATA"
IMAGE_SIZE = 28  # MNIST images are 28x28 pixels

# SHA-256 of each file's decompressed bytes (shared/mnist/SHA256SUMS): the content is pinned
# whatever gzip framing a mirror serves.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# MD5 of the canonical .gz files the public mirrors serve (shared/mnist/README.md); checked by
# keras.utils.get_file on download, before the content check.
GZ_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # Keras' / TensorFlow's mirror
)

_IDX_UBYTE = 0x08  # IDX data-type byte for unsigned 8-bit values, the only one MNIST uses
_KIND_NDIM = {"images": 3, "labels": 1}  # IDX magic 0x00000803 / 0x00000801
_NUM_CLASSES = 10
_HOW_TO_POINT = (
    "put the four MNIST files (.gz or uncompressed) in a folder and point the loader at it: "
    f"load_mnist(data_dir=...), {DATA_ENV}=/path, or `mnist-bench data download --dir DIR` "
    "on a machine with network access"
)


class MnistDataError(ValueError):
    """An MNIST file is missing, malformed or not the pinned content.

    ``str(error)`` is ``"<path>: <problem>"``; both parts are also attributes.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(str(path), problem)  # both in args, so the error pickles
        self.path = str(path)
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass(frozen=True)
class _FileSpec:
    """What one IDX file must hold. ``None`` skips a check (tests feed tiny files)."""

    name: str  # canonical file name without .gz
    kind: str  # "images" or "labels"
    records: int | None = None  # expected number of records
    sha256: str | None = None  # expected SHA-256 of the decompressed bytes


def _pinned(name: str, kind: str, records: int) -> _FileSpec:
    return _FileSpec(name, kind, records, SHA256[name])


# split -> (images, labels)
_SPLITS: dict[str, tuple[_FileSpec, _FileSpec]] = {
    "train": (
        _pinned("train-images-idx3-ubyte", "images", 60_000),
        _pinned("train-labels-idx1-ubyte", "labels", 60_000),
    ),
    "test": (
        _pinned("t10k-images-idx3-ubyte", "images", 10_000),
        _pinned("t10k-labels-idx1-ubyte", "labels", 10_000),
    ),
}
_SPECS: tuple[_FileSpec, ...] = tuple(spec for pair in _SPLITS.values() for spec in pair)


@dataclass(frozen=True)
class MnistData:
    """The MNIST training and test sets, as stored in the IDX files.

    Attributes
    ----------
    x_train : ndarray of shape (60000, 28, 28), uint8 in [0, 255]
    y_train : ndarray of shape (60000,), uint8 in [0, 9]
    x_test : ndarray of shape (10000, 28, 28), uint8 in [0, 255]
    y_test : ndarray of shape (10000,), uint8 in [0, 9]
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class FileReport:
    """The outcome of checking one file, as returned by `verify_mnist`.

    `records` and `sha256` are ``None`` when the file could not be read that far; `problem`
    is ``None`` exactly when `ok`.
    """

    name: str  # canonical name without .gz, e.g. "train-images-idx3-ubyte"
    path: Path  # the file checked, or where it was expected (name.gz) when missing
    records: int | None
    sha256: str | None
    ok: bool
    problem: str | None


# -- locations ------------------------------------------------------------------------------


def _env_data_dir() -> Path | None:
    # The one environment read outside the CLI, on purpose: the loader's contract is to honour
    # MNIST_BENCH_DATA, so that tests, CI and notebooks on offline machines reach
    # ../shared/mnist without passing a path through every call.
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def default_cache_dir() -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/mnist-bench``, else ``~/.cache/mnist-bench``."""
    # XDG Base Directory spec: https://specifications.freedesktop.org/basedir-spec/latest/
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "mnist-bench"


def data_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder `load_mnist` reads when it is given no `data_dir`: ``$MNIST_BENCH_DATA`` when
    set, else the cache (`cache_dir`, default `default_cache_dir()`). Tests, the notebook and
    the CLI find the data this way, as the quick start leaves it."""
    folder = _env_data_dir()
    if folder is not None:
        return folder
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def missing_files(folder: str | os.PathLike[str]) -> list[str]:
    """The canonical names of the four MNIST files not found in `folder` (as ``name`` or
    ``name.gz``); empty when all are there (their content is checked on loading)."""
    return [spec.name for spec in _SPECS if _find_file(Path(folder), spec.name) is None]


def _find_file(folder: Path, name: str) -> Path | None:
    """``folder/name.gz`` if it exists, else ``folder/name``, else None."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _missing_error(folder: Path, name: str) -> MnistDataError:
    return MnistDataError(
        folder / f"{name}.gz", f"missing (also looked for {folder / name}); {_HOW_TO_POINT}"
    )


# -- IDX reading and checks -----------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when its name ends in .gz."""
    try:
        if path.suffix != ".gz":
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise MnistDataError(path, f"corrupt gzip stream ({exc})") from exc
    except OSError as exc:
        raise MnistDataError(path, f"cannot read: {exc.strerror or exc}") from exc


def _parse_idx(raw: bytes, path: Path, kind: str) -> np.ndarray:
    """Check the IDX header and size of `raw` and return its uint8 array (a copy)."""
    ndim = _KIND_NDIM[kind]
    expected_magic = f"0x{_IDX_UBYTE << 8 | ndim:08x} (IDX {kind})"
    if len(raw) < 4:
        raise MnistDataError(path, f"truncated: {len(raw)} bytes, shorter than an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] or raw[1]:
        raise MnistDataError(path, f"wrong magic number 0x{magic:08x}, expected {expected_magic}")
    if raw[2] != _IDX_UBYTE:
        raise MnistDataError(
            path,
            f"wrong magic number 0x{magic:08x}: data type byte 0x{raw[2]:02x}, expected "
            f"0x{_IDX_UBYTE:02x} (unsigned byte) as in {expected_magic}",
        )
    if raw[3] != ndim:
        raise MnistDataError(
            path,
            f"wrong magic number 0x{magic:08x}: {raw[3]} dimension(s), expected {ndim} "
            f"as in {expected_magic}",
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MnistDataError(path, f"truncated: {len(raw)} bytes, the header alone is {header}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) < size:
        raise MnistDataError(
            path, f"truncated: {len(raw)} bytes, header shape {shape} implies {size}"
        )
    if len(raw) > size:
        raise MnistDataError(
            path,
            f"trailing bytes: {len(raw)} bytes, header shape {shape} implies {size} "
            f"({len(raw) - size} extra)",
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()
    if kind == "labels" and array.size and array.max() >= _NUM_CLASSES:
        bad = int(np.argmax(array >= _NUM_CLASSES))
        raise MnistDataError(
            path, f"label {array[bad]} at index {bad} is out of range 0..{_NUM_CLASSES - 1}"
        )
    return array


def _read_idx(path: str | os.PathLike[str], kind: str) -> np.ndarray:
    """Read an IDX file (gzip or raw) of `kind` "images" (3-D) or "labels" (1-D, 0..9)."""
    path = Path(path)
    return _parse_idx(_read_bytes(path), path, kind)


def _check_content(array: np.ndarray, digest: str, path: Path, spec: _FileSpec) -> None:
    """Check record count, 28x28 images and the SHA-256 against `spec` (None = skip)."""
    if spec.records is not None and len(array) != spec.records:
        raise MnistDataError(path, f"holds {len(array)} records, expected {spec.records}")
    if spec.kind == "images" and array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        rows, cols = array.shape[1:]
        raise MnistDataError(
            path, f"images are {rows}x{cols} pixels, expected {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    if spec.sha256 is not None and digest != spec.sha256:
        raise MnistDataError(
            path, f"SHA-256 mismatch: content hashes to {digest}, pinned {spec.sha256}"
        )


def _read_checked(path: Path, spec: _FileSpec) -> np.ndarray:
    """Read one file and run every check in `spec`: format, then counts, then hash."""
    raw = _read_bytes(path)
    array = _parse_idx(raw, path, spec.kind)
    _check_content(array, hashlib.sha256(raw).hexdigest(), path, spec)
    return array


def _read_split(
    folder: Path, images: _FileSpec, labels: _FileSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Read a split's image and label files from `folder`; their counts must match."""
    if not folder.is_dir():
        raise MnistDataError(folder, f"no such folder; {_HOW_TO_POINT}")
    paths = []
    for spec in (images, labels):
        path = _find_file(folder, spec.name)
        if path is None:
            raise _missing_error(folder, spec.name)
        paths.append(path)
    x, y = _read_checked(paths[0], images), _read_checked(paths[1], labels)
    if len(x) != len(y):
        raise MnistDataError(
            paths[1], f"holds {len(y)} labels but {paths[0].name} holds {len(x)} images"
        )
    return x, y


# -- download -------------------------------------------------------------------------------


def _fetch_verified(url: str, spec: _FileSpec, tmp: Path, md5: str | None) -> Path:
    """Download `url` into `tmp` with Keras and run every content check; return the file."""
    from keras.utils import get_file  # lazy: it imports TensorFlow; local loads never need it

    attempt = tempfile.mkdtemp(dir=tmp)  # a fresh folder: get_file never reuses a leftover
    downloaded = get_file(
        fname=f"{spec.name}.gz",
        origin=url,
        file_hash=md5,
        hash_algorithm="md5",
        cache_dir=attempt,
        cache_subdir=attempt,  # absolute: the file lands directly in `attempt`
    )
    path = Path(downloaded)
    _read_checked(path, spec)
    return path


def _download_one(
    spec: _FileSpec, dest: Path, tmp: Path, mirrors: Sequence[str], md5: str | None
) -> None:
    """Fetch one file from the first mirror that serves it verified; move it into `dest`."""
    gz_name = f"{spec.name}.gz"
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + gz_name
        try:
            path = _fetch_verified(url, spec, tmp, md5)
        except MnistDataError as exc:
            failures.append(f"{url}: {exc.problem}")
        # Broad on purpose: get_file raises bare Exception for HTTP/URL errors, ValueError for
        # a hash mismatch, and whatever urllib/ssl/socket raise mid-transfer; any of them
        # means "try the next mirror", and all are reported below.
        except Exception as exc:
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
        else:
            os.replace(path, dest / gz_name)  # tmp is inside dest: an atomic rename
            return
    listing = "".join(f"\n  - {failure}" for failure in failures) or " (no mirrors given)"
    raise MnistDataError(
        dest / gz_name,
        f"could not download a verified copy from any mirror:{listing}\n"
        f"To work offline, {_HOW_TO_POINT}.",
    )


# -- public API -----------------------------------------------------------------------------


def download_mnist(
    dest: str | os.PathLike[str] | None = None,
    *,
    mirrors: Sequence[str] = MIRRORS,
    gz_md5: Mapping[str, str] | None = GZ_MD5,
) -> Path:
    """Download the four MNIST .gz files into `dest` and verify them.

    Each file is fetched with ``keras.utils.get_file`` from the first of `mirrors` that serves
    it intact, into a temporary folder inside `dest`, checked (IDX format, record counts,
    pinned SHA-256 of the decompressed bytes) and only then moved into place, so a failed or
    unverified download leaves nothing behind. Files already in `dest` are verified and kept.

    Parameters
    ----------
    dest : path, optional
        Destination folder, created if needed. Default: `default_cache_dir()`.
    mirrors : sequence of str, default MIRRORS
        Base URLs tried in turn for each file; ``<mirror>/<name>.gz`` is fetched.
    gz_md5 : mapping of str to str or None, default GZ_MD5
        Expected MD5 of each downloaded ``.gz`` file, keyed by file name, checked by
        ``get_file`` as a first gate. ``None`` skips it and relies on the SHA-256 of the
        decompressed content alone, which is pinned either way (for mirrors that serve the
        same content with different gzip framing, e.g. a local test server).

    Returns
    -------
    Path
        The destination folder.

    Raises
    ------
    MnistDataError
        A file already in `dest` does not verify (delete it to download again), or no mirror
        served a verified copy of a file (the message lists each mirror's failure).
    """
    folder = Path(dest).expanduser() if dest is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    try:
        for spec in _SPECS:
            present = _find_file(folder, spec.name)
            if present is not None:
                try:
                    _read_checked(present, spec)
                except MnistDataError as exc:
                    raise MnistDataError(
                        present, f"{exc.problem}; delete it to download it again"
                    ) from exc
                continue
            md5 = None if gz_md5 is None else gz_md5[f"{spec.name}.gz"]
            _download_one(spec, folder, tmp, mirrors, md5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    test: bool = True,
) -> MnistData:
    """Load and verify the MNIST training and test sets.

    The files are searched for in `data_dir`, then ``$MNIST_BENCH_DATA``, then the cache
    (downloaded there when missing); see the module docstring.

    Parameters
    ----------
    data_dir : path, optional
        Folder holding the four IDX files (``.gz`` or uncompressed). When given, the files
        must be there: nothing else is searched and nothing is downloaded.
    cache_dir : path, optional
        Cache folder used when neither `data_dir` nor ``$MNIST_BENCH_DATA`` is set.
        Default: `default_cache_dir()`.
    download : bool, default True
        Download the files into the cache when they are not there.
    test : bool, default True
        False: the two test files are neither opened nor required, and ``x_test``, ``y_test``
        are empty, of shape (0, 28, 28) and (0,): for work that must not see the test set
        (`mnist_bench.search`).

    Returns
    -------
    MnistData
        ``x_train`` (60000, 28, 28), ``y_train`` (60000,), ``x_test`` (10000, 28, 28) and
        ``y_test`` (10000,), all uint8.

    Raises
    ------
    MnistDataError
        A file is missing (the message says how to point the loader at a folder), malformed,
        or not the pinned content; or the download failed.
    """
    folder = Path(data_dir).expanduser() if data_dir is not None else _env_data_dir()
    if folder is None:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        needed = _SPECS if test else _SPLITS["train"]
        if download and any(_find_file(folder, spec.name) is None for spec in needed):
            download_mnist(folder)
    x_train, y_train = _read_split(folder, *_SPLITS["train"])
    if test:
        x_test, y_test = _read_split(folder, *_SPLITS["test"])
    else:
        x_test = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        y_test = np.zeros((0,), np.uint8)
    return MnistData(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _report(folder: Path, spec: _FileSpec) -> FileReport:
    path = _find_file(folder, spec.name)
    if path is None:
        return FileReport(spec.name, folder / f"{spec.name}.gz", None, None, False, "missing")
    records = digest = None
    try:
        raw = _read_bytes(path)
        digest = hashlib.sha256(raw).hexdigest()
        array = _parse_idx(raw, path, spec.kind)
        records = len(array)
        _check_content(array, digest, path, spec)
    except MnistDataError as exc:
        return FileReport(spec.name, path, records, digest, False, exc.problem)
    return FileReport(spec.name, path, records, digest, True, None)


def verify_mnist(data_dir: str | os.PathLike[str]) -> list[FileReport]:
    """Check the four MNIST files in `data_dir` without raising for bad ones.

    Parameters
    ----------
    data_dir : path
        Folder holding the files (each ``name.gz`` or uncompressed ``name``).

    Returns
    -------
    list of FileReport
        One per file, in the order train images, train labels, test images, test labels;
        a missing or bad file has ``ok=False`` and its `problem` set.
    """
    folder = Path(data_dir).expanduser()
    return [_report(folder, spec) for spec in _SPECS]
