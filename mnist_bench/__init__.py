"""mnist-bench: a reproducible, tested and benchmarked reference CNN for MNIST.

The public API, by concern (data flows top to bottom)::

    load_mnist, MnistData, MnistDataError, verify_mnist, download_mnist   # data
    preprocess_images, one_hot, prepare_photo                            # preprocess
    build_model, MODEL_NAMES, model_flops, save_model, load_model        # models
    weights_digest                                                       # models
    TrainConfig                                                          # config
    evaluate, predict, EvalReport                                        # evaluate
    train, TrainResult                                                   # train
    reproduce, check_results                                             # reproduce
    machine_fingerprint                                                  # provenance
    export_model, load_predictor                                         # export (LiteRT)

Importing the package turns TensorFlow's oneDNN kernels on for every x86 CPU before
TensorFlow is imported (opt out with ``MNIST_BENCH_ONEDNN=0`` or ``TF_ENABLE_ONEDNN_OPTS=0``).
Names are imported lazily (PEP 562), so ``from mnist_bench import load_mnist`` does not pay
for importing TensorFlow; only the model, training and evaluation names do.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from . import _tfenv

__version__ = "0.1.0"

# Before any module of the package imports TensorFlow: oneDNN on every x86 CPU (an opt-out:
# MNIST_BENCH_ONEDNN=0 or TF_ENABLE_ONEDNN_OPTS=0) and a quiet C++ start-up; see _tfenv.
_TF_MESSAGE = _tfenv.configure()
if _TF_MESSAGE is not None:
    warnings.warn(_TF_MESSAGE, RuntimeWarning, stacklevel=2)

# public name -> module that defines it. Module names differ from the function names
# (training.train, evaluation.evaluate): a submodule import sets a package attribute of the
# same name, which would otherwise shadow the function.
_EXPORTS: dict[str, str] = {
    "load_mnist": "data",
    "MnistData": "data",
    "MnistDataError": "data",
    "verify_mnist": "data",
    "download_mnist": "data",
    "preprocess_images": "preprocess",
    "one_hot": "preprocess",
    "prepare_photo": "preprocess",
    "build_model": "models",
    "MODEL_NAMES": "models",
    "model_flops": "models",
    "save_model": "models",
    "load_model": "models",
    "TrainConfig": "config",
    "evaluate": "evaluation",
    "predict": "evaluation",
    "EvalReport": "evaluation",
    "train": "training",
    "TrainResult": "training",
    "weights_digest": "models",
    "reproduce": "reproduction",
    "check_results": "reproduction",
    "machine_fingerprint": "provenance",
    "export_model": "export",
    "load_predictor": "export",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # let type checkers and IDEs see the real definitions
    from .config import TrainConfig
    from .data import MnistData, MnistDataError, download_mnist, load_mnist, verify_mnist
    from .evaluation import EvalReport, evaluate, predict
    from .export import export_model, load_predictor
    from .models import (
        MODEL_NAMES,
        build_model,
        load_model,
        model_flops,
        save_model,
        weights_digest,
    )
    from .preprocess import one_hot, prepare_photo, preprocess_images
    from .provenance import machine_fingerprint
    from .reproduction import check_results, reproduce
    from .training import TrainResult, train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mnist_bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
