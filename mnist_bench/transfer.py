"""Transfer learning: adapt a trained model to a user's own digits, given as an image folder.

    mnist-bench finetune results/robust/model.keras my_digits/ --out runs/mine

    images, labels, skipped = read_digit_folder("my_digits/")   # (n, 28, 28) uint8, (n,) uint8
    model = finetune(load_model("results/robust/model.keras"), images, labels, FinetuneConfig())
    write_finetuned(model, "runs/mine", record)                  # model.keras + finetune.json

The folder has the layout of `keras.utils.image_dataset_from_directory`: one subfolder per
digit, named ``0`` to ``9``, holding PNG or JPEG files of any size (other files and files at
the top level are ignored, as Keras does). Each image is read through the decoding guard
(`mnist_bench.images`) and made MNIST-style by `preprocess.prepare_digit` (`prepare_photo`
for any size but 28x28), exactly as `mnist-bench predict` and the server read images. Every
file is read before training starts: a bad one is named and the run refuses to start, unless
it is asked to skip bad files. The output folder is written whole or not at all.

Fine-tuning, by default (`FinetuneConfig`): every layer learns except batch normalisation,
whose statistics stay MNIST's (a few dozen images would give noisy ones, and a frozen Keras
BatchNormalization runs in inference mode); Adam at 3e-4, a tenth of the published recipe's
peak rate, so the MNIST features are adjusted rather than overwritten; a fixed number of steps
whatever the number of images, batches drawn from shuffled passes over them. ``layers="head"``
trains only the last Dense layer; ``layers="scratch"`` re-initialises the same network and
trains all of it, batch norm included, whose statistics are then set to those of the
training images (`batch_norm.recalibrate_batch_norm`: after a few hundred steps the moving
averages are still far from them); the baseline of the transfer experiment.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ._io import write_json
from .batch_norm import recalibrate_batch_norm
from .config import FinetuneConfig
from .images import ImageError, read_image_file
from .models import save_model
from .preprocess import IMAGE_SIZE, prepare_digit, preprocess_images
from .training import seed_everything

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # image_dataset_from_directory's, less bmp/gif
CLASS_NAMES = tuple(str(d) for d in range(10))
RECORD_NAME = "finetune.json"
MAX_NAMED = 5  # bad files named in one refusal; the count says how many more


class DigitFolderError(ValueError):
    """A digit folder that cannot be used as it is; the message names the file(s)."""


# -- the folder ---------------------------------------------------------------------------


def _class_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        raise DigitFolderError(f"{root}: no such folder")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    others = [p.name for p in subdirs if p.name not in CLASS_NAMES]
    if others:
        raise DigitFolderError(
            f"{root}: subfolders must be named 0 to 9 (one per digit), found {others}"
        )
    return [(int(p.name), p) for p in subdirs]


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )  # fmt: skip


def _refusal(root: Path, bad: list[tuple[str, str]]) -> str:
    named = "; ".join(reason for _, reason in bad[:MAX_NAMED])
    more = f" (and {len(bad) - MAX_NAMED} more)" if len(bad) > MAX_NAMED else ""
    return (
        f"{root}: {len(bad)} bad image file(s), nothing trained: {named}{more}; "
        "fix or remove them, or skip them with --skip-bad-images"
    )


def read_digit_folder(
    root: str | os.PathLike[str], *, skip_bad: bool = False
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Read every digit image of a folder laid out one subfolder per digit.

    Parameters
    ----------
    root : path
        Holds subfolders ``0`` .. ``9`` (some may be missing) of PNG/JPEG files, any size.
    skip_bad : bool, default=False
        Leave out files that cannot be read or hold no digit, instead of refusing.

    Returns
    -------
    images : ndarray of shape (n, 28, 28), uint8
        Each file made MNIST-style (`preprocess.prepare_digit`), in sorted file order.
    labels : ndarray of shape (n,), uint8
        The subfolder's digit.
    skipped : list of (path, reason)
        The files left out (empty unless `skip_bad`).

    Raises
    ------
    DigitFolderError
        For a missing folder, a subfolder not named 0-9, no image at all, or (without
        `skip_bad`) any bad file, each named with what is wrong.
    """
    root = Path(root)
    images, labels, bad = [], [], []
    for digit, folder in _class_dirs(root):
        for path in _image_files(folder):
            try:
                images.append(prepare_digit(read_image_file(path)))
                labels.append(digit)
            except ImageError as exc:
                bad.append((str(path), str(exc)))
            except ValueError as exc:  # prepare_digit: no ink, odd values
                bad.append((str(path), f"{path}: {exc}"))
    if bad and not skip_bad:
        raise DigitFolderError(_refusal(root, bad))
    if not images:
        raise DigitFolderError(
            f"{root}: no readable PNG/JPEG digit in subfolders 0-9"
            + (f" ({len(bad)} skipped)" if bad else "")
        )
    shape = (len(images), IMAGE_SIZE, IMAGE_SIZE)
    return np.stack(images).reshape(shape), np.asarray(labels, np.uint8), bad


# -- fine-tuning --------------------------------------------------------------------------


def _check_examples(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = preprocess_images(images)
    y = np.asarray(labels)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({len(x)},), got {y.dtype} {y.shape}")
    if len(y) == 0 or y.min() < 0 or y.max() > 9:
        raise ValueError("labels must be digits 0..9, and there must be at least one image")
    return x, y.astype(np.int32)


def _batch_order(n: int, config: FinetuneConfig) -> np.ndarray:
    """Indices of `config.steps` batches: shuffled passes over the n images, concatenated."""
    rng = np.random.default_rng(config.seed)
    total = config.steps * config.batch_size
    passes = -(-total // n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:total]


def _trainable_copy(model: keras.Model, layers: str) -> keras.Model:
    """A copy of `model` (its weights, or fresh ones for "scratch") with `layers` learning."""
    copy = keras.models.clone_model(model)  # fresh weights from Keras' seeded generator
    if layers == "scratch":
        return copy
    copy.set_weights(model.get_weights())
    learners = [layer for layer in copy.layers if layer.weights]
    for layer in copy.layers:
        if layers == "head":
            layer.trainable = layer is learners[-1]
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # keeps MNIST's statistics, runs in inference mode
    return copy


class _Progress(keras.callbacks.Callback):
    def __init__(self, report: Callable[[int, int, float], None], steps: int) -> None:
        super().__init__()
        self.report, self.steps = report, steps

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.report(batch + 1, self.steps, float((logs or {}).get("loss", float("nan"))))


def finetune(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    config: FinetuneConfig | None = None,
    *,
    progress: Callable[[int, int, float], None] | None = None,
) -> keras.Model:
    """Adapt `model` to labelled digits; `model` itself is left as it was.

    Seeds everything first (`training.seed_everything`, op determinism on): the same inputs
    and config give the same weights on the same machine.

    Parameters
    ----------
    model : keras.Model
        A trained model: float32 (N, 28, 28, 1) in [0, 1] -> (N, 10) probabilities.
    images : ndarray of shape (n, 28, 28), uint8 (or pixel values 0..255)
        MNIST-style digits, e.g. from `read_digit_folder`.
    labels : ndarray of shape (n,), integer digits 0..9
    config : FinetuneConfig, optional
        Defaults as documented there.
    progress : callable, optional
        ``progress(step, steps, loss)`` after every step.

    Returns
    -------
    keras.Model
        A new model, compiled, every layer trainable again (so it saves and loads as any).
        A calibrated model's temperature layer is kept as it was, not refitted.
    """
    config = config or FinetuneConfig()
    x, y = _check_examples(images, labels)
    seed_everything(config.seed)
    tuned = _trainable_copy(model, config.layers)
    tuned.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    order = _batch_order(len(x), config)
    callbacks = [_Progress(progress, config.steps)] if progress else []
    tuned.fit(
        x[order], y[order], batch_size=config.batch_size, epochs=1, shuffle=False,
        verbose=0, callbacks=callbacks,
    )  # fmt: skip
    if config.layers == "scratch":
        # 150 steps leave batch norm's moving averages (momentum 0.99) far from the fresh
        # network's statistics: set them to the exact ones over the training images.
        recalibrate_batch_norm(tuned, x)
    for layer in tuned.layers:
        layer.trainable = True
    return tuned


def write_finetuned(
    model: keras.Model, out: str | os.PathLike[str], record: dict[str, Any]
) -> dict[str, Path]:
    """Write `model` (`models.save_model`: model.keras, and the .h5 where it round-trips) and
    `record` as finetune.json into the new folder `out`, all or nothing: into a temporary
    folder beside it, renamed into place when complete.

    Raises
    ------
    DigitFolderError
        If `out` exists and is not empty (nothing is overwritten).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DigitFolderError(f"{out}: exists and is not empty; choose a new --out folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        paths = save_model(model, tmp)
        write_json(tmp / RECORD_NAME, record)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {kind: out / path.name for kind, path in paths.items()} | {"record": out / RECORD_NAME}
