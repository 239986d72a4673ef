"""Train a CNN on MNIST from one `TrainConfig`: seeded, deterministic and resumable.

    from mnist_bench import TrainConfig, train
    result = train(TrainConfig.recipe("seed", epochs=1), out_dir="runs/a")

The recipe, top to bottom:

1. seed everything once: Keras' global seed (Python, NumPy, TensorFlow) and op determinism;
2. split and preprocess: validation on the 10k test set as the seed did, or on a fixed holdout
   of the training images (for choosing a recipe without looking at the test set);
3. build the model and compile it: Adam, categorical cross-entropy, the learning-rate schedule;
4. per epoch: a seeded order of the training images, seeded augmentation, one `model.fit`
   pass (with `weight_averaging`, a moving average of the weights after every step), then a
   checkpoint of every variable (weights, averages, optimizer moments, RNG states);
5. with `weight_averaging`, the averaged weights replace the last ones; with
   `recalibrate_batch_norm`, batch-norm statistics are recomputed on the clean training
   images; evaluate on the test set (not with `score_test=False`: a recipe search), then save
   model, config, history, metrics and plots.

Resuming works because every piece of state is either in the checkpoint (all model and
optimizer variables, including Dropout's seed-generator state) or a pure function of
(seed, epoch, step): the data order and the augmentation. A run restarted from epoch k
therefore ends bit-identical to one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ._io import atomic_path, read_json, write_json
from .augment import (  # noqa: F401 (the helpers tests and users import from here too)
    _affine_transforms,
    _without_autotune,
    augment_batch,
    bilinear_sample,
    elastic_displacement,
    epoch_order,
    random_affine,
    random_distortion,
    random_erasing,
    random_photometric,
)
from .batch_norm import recalibrate_batch_norm
from .config import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, POST_TRAINING_FIELDS, TrainConfig
from .data import MnistData, load_mnist
from .device_input import DeviceTrainer
from .evaluation import EvalReport, evaluate
from .models import build_model, model_flops, save_model
from .models import weights_digest as weights_digest  # re-exported: training.weights_digest
from .preprocess import one_hot, preprocess_images
from .provenance import provenance

CHECKPOINT_FILE = "checkpoint.npz"  # every variable after the last completed epoch
VAL_BATCH = 1024  # inference batch for validation: larger is faster, same result


@dataclass(frozen=True)
class Split:
    """Raw uint8 images (N, 28, 28) and labels (N,) for training and validation."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@dataclass
class TrainResult:
    """What `train` returns: the trained model and everything measured about it."""

    model: keras.Model
    config: TrainConfig
    history: list[dict[str, float]]  # one row per epoch, see `_epoch_row`
    report: EvalReport | None  # the final model on the 10k test set; None: not scored
    metrics: dict[str, Any]  # what metrics.json holds
    out_dir: Path | None


# -- determinism --------------------------------------------------------------------------


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow/Keras once, and make TensorFlow ops deterministic.

    Op determinism makes TensorFlow choose deterministic kernels (and raise on ops that have
    none), so reruns on the same machine give bit-identical weights. It is process-wide and
    cannot be switched off again once enabled.
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy for `TrainConfig.strategy`.

    ``"default"``: TensorFlow's default strategy (one device, nothing distributed).
    ``"mirrored"``: `tf.distribute.MirroredStrategy`, one replica per GPU; without a GPU, one
    per logical CPU device (see `tf.config.set_logical_device_configuration`), which is how
    the tests exercise it on a CPU-only machine. Each step splits the global batch evenly
    between the replicas and all-reduces their gradients into the gradient of the mean loss
    over the whole batch, so the recipe's batch size and learning rate keep their meaning;
    batch-norm statistics are then per replica (each sees batch_size / replicas images).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raise ValueError(f"unknown strategy {name!r}; choose 'default' or 'mirrored'")


# -- data ---------------------------------------------------------------------------------


def split_data(config: TrainConfig, data: MnistData) -> Split:
    """Choose the training and validation images for `config`.

    ``validation="test"`` validates on the 10k test set, as the seed notebook did.
    ``validation="holdout"`` validates on the LAST `holdout_size` training images: a fixed
    split, the same for every seed and recipe, so candidates are compared on equal footing
    and the test set is never used to choose anything. `train_subset` then keeps the first
    N of the remaining training images.
    """
    x, y = data.x_train, data.y_train
    if config.validation == "holdout":
        cut = len(x) - config.holdout_size
        x, y, x_val, y_val = x[:cut], y[:cut], x[cut:], y[cut:]
    else:
        x_val, y_val = data.x_test, data.y_test
    if config.train_subset is not None:
        if config.train_subset > len(x):
            raise ValueError(
                f"train_subset={config.train_subset} exceeds the {len(x)} training images left"
            )
        x, y = x[: config.train_subset], y[: config.train_subset]
    return Split(x, y, x_val, y_val)


def epoch_dataset(x: np.ndarray, y: np.ndarray, config: TrainConfig, epoch: int) -> tf.data.Dataset:
    """The training batches of `epoch` (0-based): seeded order, seeded augmentation.

    x: float32 (N, 28, 28, 1) in [0, 1]; y: float32 (N, 10) one-hot. Both the order and the
    augmentation are pure functions of (config.seed, epoch, step), which is what makes a
    resumed run identical to an uninterrupted one.
    """
    key, order = epoch_order(config, epoch, len(x))
    ds = tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(config.batch_size)
    if config.augment:

        def augment(step: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple:
            images, labels = batch
            return augment_batch(images, tf.constant(key, tf.int64), step, config), labels

        ds = ds.enumerate().map(augment, num_parallel_calls=_CPUS, deterministic=True)
    return _without_autotune(ds.prefetch(_PREFETCH))


# Fixed tf.data parallelism instead of AUTOTUNE. tf.data's autotuning runs a model thread
# per iterator that sleeps on a timeout growing to about a minute; destroying the epoch's
# iterator (every epoch, in model.fit) waits for that sleep to end: measured on a 2-core
# Xeon, 35-40 s of idle CPU after most epochs, twice the epoch time. Parallelism and buffer
# size change speed only: the map is deterministic and every batch's seed fixed.
_CPUS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
_PREFETCH = 2  # batches ready ahead of the training step


# -- model --------------------------------------------------------------------------------


def learning_rate(
    config: TrainConfig, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Adam's step size: constant, or cosine decay to 0 over the run; both with optional
    linear warm-up. Built from Keras' own CosineDecay so a saved model loads with plain
    `keras.models.load_model`, no custom objects needed."""
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if config.lr_schedule == "constant" and warmup == 0:
        return config.learning_rate
    total = config.epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate,
        decay_steps=max(total - warmup, 1),
        alpha=1.0 if config.lr_schedule == "constant" else 0.0,  # alpha=1: no decay
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Build layers under Keras' dtype policy `precision` (`TrainConfig.precision`), then
    restore the previous one. Mixed policies compute in bf16/fp16 with float32 weights; the
    models' softmax layer is float32 whatever the policy. Keras wraps the optimizer in a
    `LossScaleOptimizer` at compile for ``mixed_float16``."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    """Adam + categorical cross-entropy + accuracy: the seed's training setup."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate(config, steps_per_epoch)),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    # Adam's moments and the accuracy metric's counters made now, not inside the first traced
    # train step, where Keras makes them when no distribution strategy is set: a tf.function
    # that creates variables is traced twice (3-4 s of a tiny reference run on 2 CPU cores).
    # The same zeros either way, so the same bits (a resumed run has always built Adam here).
    model.optimizer.build(model.trainable_variables)
    blank = keras.ops.zeros((1, *model.output_shape[1:]))
    model.compute_metrics(None, blank, blank)  # the metrics' variables exist after one update
    for metric in model.metrics:
        metric.reset_state()


# -- weight averaging ---------------------------------------------------------------------


class WeightAverage(keras.callbacks.Callback):
    """Exponential moving average of a model's float variables, updated after every step.

    Averages the trainable weights AND the batch-norm statistics (every floating-point
    variable of the model; Dropout's integer seed state is left alone), so the averaged
    network is self-consistent. The momentum ramps up as in
    `tf.train.ExponentialMovingAverage(num_updates=step)`: min(momentum, (1+t)/(10+t)) at
    step t, so the random initial weights fade out within the first few dozen steps.

    Keras' own `Adam(use_ema=True)` is not used: `model.fit` overwrites the weights with the
    average at the end of every call, and this recipe calls fit once per epoch.
    """

    def __init__(self, model: keras.Model, momentum: float) -> None:
        super().__init__()
        self.momentum = momentum
        self.sources = [v for v in model.variables if "float" in str(v.dtype)]
        self.averages = [
            keras.Variable(v, trainable=False, name=f"average_{i}")
            for i, v in enumerate(self.sources)
        ]

    @tf.function
    def _update(self, step: tf.Tensor) -> None:
        t = tf.cast(step, tf.float32)
        momentum = tf.minimum(self.momentum, (1.0 + t) / (10.0 + t))
        for average, source in zip(self.averages, self.sources, strict=True):
            average.assign(momentum * average + (1.0 - momentum) * source)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # The optimizer's counter already counts this step: t = 0 after the first one.
        self._update(self.model.optimizer.iterations - 1)

    def copy_to_model(self) -> None:
        """Overwrite the model's variables with their averages (for good)."""
        for average, source in zip(self.averages, self.sources, strict=True):
            source.assign(average)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Within the block, the model holds the averaged weights; the last ones after."""
        last = [keras.ops.convert_to_numpy(v) for v in self.sources]
        self.copy_to_model()
        try:
            yield
        finally:
            for source, value in zip(self.sources, last, strict=True):
                source.assign(value)


def _revalidated(row: dict, model: keras.Model, val: tf.data.Dataset) -> dict:
    """The last epoch's row, its val_loss/val_accuracy those of the recalibrated model (what
    is saved), the scores before recalibration kept as uncalibrated_val_loss/_accuracy."""
    scores = model.evaluate(val, return_dict=True, verbose=0)
    return {
        **row,
        "uncalibrated_val_loss": row["val_loss"],  # the checkpointed row: before recalibration
        "uncalibrated_val_accuracy": row["val_accuracy"],
        "val_loss": float(scores["loss"]),
        "val_accuracy": float(scores["accuracy"]),
    }


# -- checkpoints --------------------------------------------------------------------------


def _state_variables(model: keras.Model, average: WeightAverage | None) -> list[keras.Variable]:
    # Weights, batch-norm statistics and Dropout's seed-generator state (model.variables),
    # then Adam's step counter and moments, then the weight averages. The order follows the
    # model's structure, so a checkpoint restores into a freshly built model in another
    # process.
    averages = average.averages if average is not None else []
    return [*model.variables, *model.optimizer.variables, *averages]


def _write_checkpoint(
    out_dir: Path, model: keras.Model, average: WeightAverage | None, history: list[dict]
) -> None:
    variables = _state_variables(model, average)
    arrays = {f"v{i:04d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}
    arrays["history_json"] = np.frombuffer(json.dumps(history).encode(), dtype=np.uint8)
    with atomic_path(out_dir / CHECKPOINT_FILE) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _restore_checkpoint(
    out_dir: Path, model: keras.Model, average: WeightAverage | None
) -> list[dict]:
    """Load every variable from the checkpoint into `model` (and `average`); return the
    history so far."""
    path = out_dir / CHECKPOINT_FILE
    # Adam makes its step counter and moments at its first step; a resumed run has taken
    # none in this process, so they are made now, to be assigned the saved values.
    model.optimizer.build(model.trainable_variables)
    variables = _state_variables(model, average)
    try:
        with np.load(path) as saved:
            if f"v{len(variables):04d}" in saved:  # e.g. saved with weight averages
                raise ValueError(f"more variables than the {len(variables)} of this config")
            arrays = [saved[f"v{i:04d}"] for i in range(len(variables))]
            history = json.loads(saved["history_json"].tobytes())
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable or incompatible checkpoint ({exc})") from exc
    for variable, array in zip(variables, arrays, strict=True):
        if tuple(variable.shape) != array.shape:
            raise ValueError(f"{path}: checkpoint shape {array.shape} does not fit {variable.path}")
        variable.assign(array)
    return history


def _start_or_resume(
    out_dir: Path | None, model: keras.Model, average: WeightAverage | None, config: TrainConfig
) -> list[dict]:
    """Write config.json for a new run, or check it and restore the checkpoint of an old one."""
    if out_dir is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / CONFIG_FILE
    if config_path.exists():
        previous = TrainConfig.from_dict(read_json(config_path))
        same_training = previous.replace(**{f: getattr(config, f) for f in POST_TRAINING_FIELDS})
        if previous != config and same_training == config and (out_dir / CHECKPOINT_FILE).exists():
            # Only the steps after the last epoch differ: training follows the very same
            # trajectory, so its checkpoint is as good as a retrain; finish it the new way.
            # The folder changes only once the checkpoint has loaded.
            history = _restore_checkpoint(out_dir, model, average)
            write_json(config_path, config.to_dict())
            (out_dir / METRICS_FILE).unlink(missing_ok=True)  # unfinished until rewritten
            return history
        if previous != config:
            raise ValueError(
                f"{config_path}: this folder holds a run with a different config; "
                "choose another output folder or delete this one"
            )
        if (out_dir / CHECKPOINT_FILE).exists():
            return _restore_checkpoint(out_dir, model, average)
        if (out_dir / METRICS_FILE).exists():  # finished, but its final weights are gone
            raise ValueError(
                f"{out_dir / METRICS_FILE}: the run is finished but {CHECKPOINT_FILE} is missing, "
                "so its weights cannot be restored; choose another output folder"
            )
    else:
        write_json(config_path, config.to_dict())
    return []


# -- training -----------------------------------------------------------------------------


def _epoch_row(
    epoch: int, logs: dict[str, float], model: keras.Model, seconds: float, n: int
) -> dict:
    return {
        "epoch": epoch + 1,  # 1-based, as printed
        "loss": float(logs["loss"]),  # mean over the epoch, dropout and augmentation on
        "accuracy": float(logs["accuracy"]),
        "val_loss": float(logs["val_loss"]),
        "val_accuracy": float(logs["val_accuracy"]),
        **{key: float(logs[key]) for key in ("last_val_loss", "last_val_accuracy") if key in logs},
        "lr": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        "seconds": seconds,  # wall time of the epoch: training and validation
        "images_per_s": n / seconds,
    }


def device_trainer(
    model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig
) -> keras.Model:
    """A `device_input.DeviceTrainer`: `x`, `y` uploaded once, batches made on the device."""
    return DeviceTrainer(model, x, y, config)


def train_one_epoch(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    val: tf.data.Dataset,
    config: TrainConfig,
    epoch: int,
    average: WeightAverage | None = None,
    on_step: Callable[[int, int], None] | None = None,
    trainer: keras.Model | None = None,
) -> dict[str, float]:
    """One pass over the training images, then validation; returns the epoch's row.

    With `average`, the row's val_loss/val_accuracy are those of the averaged weights (the
    ones that will be saved) and last_val_loss/last_val_accuracy those of the last step's
    weights: the same trajectory scored both ways, a paired comparison. `on_step(step,
    steps)` is called after each training step (1-based), e.g. to draw a progress bar.
    With ``config.augment_on == "device"``, `trainer` is the `device_input.DeviceTrainer`
    of `model` and `x`, `y` (made here when None: pass one to keep it across epochs).
    """
    start = time.perf_counter()
    callbacks: list[keras.callbacks.Callback] = [] if average is None else [average]
    if on_step is not None:
        steps = math.ceil(len(x) / config.batch_size)
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda batch, logs: on_step(batch + 1, steps)
            )
        )
    if config.augment_on == "device":
        trainer = trainer if trainer is not None else device_trainer(model, x, y, config)
        fit_model, batches = trainer, trainer.epoch_steps(epoch)
    else:
        fit_model, batches = model, epoch_dataset(x, y, config, epoch)
    fit = fit_model.fit(
        batches,
        validation_data=val,
        initial_epoch=epoch,
        epochs=epoch + 1,
        shuffle=False,  # the order is already seeded per epoch by epoch_dataset
        verbose=0,
        callbacks=callbacks or None,
    )
    logs = {key: values[-1] for key, values in fit.history.items()}
    if average is not None:
        logs["last_val_loss"], logs["last_val_accuracy"] = logs["val_loss"], logs["val_accuracy"]
        with average.swapped_in():
            averaged = model.evaluate(val, return_dict=True, verbose=0)
        logs["val_loss"], logs["val_accuracy"] = averaged["loss"], averaged["accuracy"]
    return _epoch_row(epoch, logs, model, time.perf_counter() - start, len(x))


def train(
    config: TrainConfig,
    data: MnistData | None = None,
    out_dir: str | Path | None = None,
    *,
    progress: Callable[[dict[str, float]], None] | None = None,
    step_progress: Callable[[int, int, int], None] | None = None,
    score_test: bool = True,
) -> TrainResult:
    """Train `config.model` following `config`, evaluate it on the test set, save it.

    Parameters
    ----------
    config : TrainConfig
        Every knob of the run; see `TrainConfig.recipe` for the published recipes.
    data : MnistData, optional
        The dataset; loaded with `load_mnist()` when None.
    out_dir : path, optional
        Where to write the model (`network_for_mnist.h5`, `model.keras`), `config.json`,
        `history.json`, `metrics.json`, the plots and a per-epoch checkpoint. A folder that
        already holds an unfinished run of the same config is resumed from its checkpoint.
        None: nothing is written and nothing resumed.
    progress : callable, optional
        Called with each epoch's row (a dict, see `history`) once it is checkpointed.
    step_progress : callable, optional
        ``step_progress(epoch, step, steps)`` after every training step (epoch and step
        1-based, `steps` per epoch): for a progress bar inside an epoch.
    score_test : bool, default True
        False: the test set is never read, not even at the end: no test scores in
        ``metrics.json``, no test-set figures, ``report`` None. Only with
        ``validation="holdout"`` (else the test set is the validation set); a recipe search
        (`mnist_bench.search`) trains this way.

    Returns
    -------
    TrainResult
    """
    if not score_test and config.validation != "holdout":
        raise ValueError(
            f"score_test=False keeps the test set unread: it needs validation='holdout', "
            f"got validation={config.validation!r}"
        )
    run_start = time.perf_counter()
    seed_everything(config.seed, deterministic=config.deterministic)
    data = data if data is not None else load_mnist()
    split = split_data(config, data)
    x_train, y_train = preprocess_images(split.x_train), one_hot(split.y_train)
    val = tf.data.Dataset.from_tensor_slices(
        (preprocess_images(split.x_val), one_hot(split.y_val))
    ).batch(VAL_BATCH)
    val = _without_autotune(val)

    out = Path(out_dir) if out_dir is not None else None
    strategy = distribution_strategy(config.strategy)
    with strategy.scope():  # variables (model and optimizer) are created on every replica
        with dtype_policy(config.precision):
            model = build_model(config.model, **config.model_options)
        compile_model(model, config, steps_per_epoch=math.ceil(len(x_train) / config.batch_size))
        average = (
            WeightAverage(model, config.weight_averaging)
            if config.weight_averaging is not None
            else None
        )
        history = _start_or_resume(out, model, average, config)

    trainer = (
        device_trainer(model, x_train, y_train, config) if config.augment_on == "device" else None
    )
    for epoch in range(len(history), config.epochs):
        on_step = (
            None
            if step_progress is None
            else (lambda step, steps, e=epoch + 1: step_progress(e, step, steps))
        )
        history.append(
            train_one_epoch(model, x_train, y_train, val, config, epoch, average, on_step, trainer)
        )
        if out is not None:
            _write_checkpoint(out, model, average, history)
        if progress is not None:
            progress(history[-1])
    if average is not None:
        average.copy_to_model()  # what is evaluated and saved from here on
    if config.recalibrate_batch_norm:
        recalibrate_batch_norm(model, x_train)
        history[-1] = _revalidated(history[-1], model, val)

    report = evaluate(model, data) if score_test else None
    if out is not None and (out / METRICS_FILE).exists():
        # A finished run started again: its checkpoint restored the final weights; keep the
        # files (and provenance) of the run that produced them.
        return TrainResult(model, config, history, report, read_json(out / METRICS_FILE), out)
    metrics = _final_metrics(model, config, history, report, time.perf_counter() - run_start)
    if out is not None:
        _write_outputs(out, model, history, metrics, report, data)
    return TrainResult(model, config, history, report, metrics, out)


def _final_metrics(
    model: keras.Model,
    config: TrainConfig,
    history: list[dict],
    report: EvalReport | None,
    wall: float,
) -> dict[str, Any]:
    last = history[-1]
    # Without a report (score_test=False) the test keys are left out, never filled in.
    test = (
        {}
        if report is None
        else {
            "test_loss": report.loss,
            "test_accuracy": report.accuracy,
            "test_errors": report.n_errors,
            # The report without the 10k predicted labels (predict recomputes them).
            "test": {k: v for k, v in report.to_dict().items() if k != "predicted"},
        }
    )
    return {
        "config": config.to_dict(),
        # Final epoch only: never the best epoch picked on the test set.
        "final_epoch": last["epoch"],
        "train_loss": last["loss"],
        "train_accuracy": last["accuracy"],
        "val_loss": last["val_loss"],
        "val_accuracy": last["val_accuracy"],
        **test,
        "weights_digest": weights_digest(model),
        "params": int(model.count_params()),
        "replicas": int(model.distribute_strategy.num_replicas_in_sync),
        "flops_per_image": model_flops(model),
        "epoch_seconds": [row["seconds"] for row in history],
        "wall_seconds_this_call": wall,  # excludes epochs done before a resume
        "provenance": provenance(),
    }


def _write_outputs(
    out: Path,
    model: keras.Model,
    history: list[dict],
    metrics: dict,
    report: EvalReport | None,
    data: MnistData,
) -> None:
    from .plots import plot_history, plot_report

    save_model(model, out)
    write_json(out / HISTORY_FILE, history)
    plot_history(history, out / "loss_curves.png")
    if report is not None:
        plot_report(report, data.x_test, data.y_test, out)
    write_json(out / METRICS_FILE, metrics)  # last: its presence marks a finished run
