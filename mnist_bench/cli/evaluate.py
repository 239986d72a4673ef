"""`mnist-bench evaluate` and `mnist-bench predict`."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from . import _common
from ._common import (
    EXIT_OK,
    _add_data_flag,
    _start_tensorflow,
)


def _format_confusion(confusion: Any) -> str:
    header = "true\\pred " + " ".join(f"{j:>5d}" for j in range(len(confusion)))
    rows = [f"{i:>9d} " + " ".join(f"{v:>5d}" for v in row) for i, row in enumerate(confusion)]
    return "\n".join([header, *rows])


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.folder:  # your digits, one subfolder per digit, read as `finetune` reads them
        from ..transfer import read_digit_folder

        data, what = read_digit_folder(args.folder)[:2], f"accuracy on {args.folder}"
    else:
        data, what = _common._load_data(args.data), "test accuracy"
    _start_tensorflow()
    from ..evaluation import evaluate
    from ..export import load_predictor

    report = evaluate(load_predictor(args.model), data)
    print(
        f"{what} {report.accuracy:.4%} ({report.n_errors} errors of {report.n}), "
        f"loss {report.loss:.4f}"
    )
    print(
        f"calibration: ECE {report.ece:.4%} (15 bins), NLL {report.nll:.4f}, "
        f"Brier {report.brier:.4f}, mean confidence {report.mean_confidence:.4f}"
    )
    print(_format_confusion(report.confusion))
    if args.json:
        report.to_json(args.json)
        print(f"wrote {args.json}")
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..preprocess import prepare_image_file

    digits = np.stack([prepare_image_file(path) for path in args.images])  # (n, 28, 28) uint8
    _start_tensorflow()
    from ..evaluation import predict
    from ..export import load_predictor
    from ..model_card import card_line, model_card

    model = load_predictor(args.model)
    print(f"model: {args.model}: {card_line(model_card(args.model, model))}")
    labels, probabilities = predict(model, digits)
    width = max(len("file"), *(len(str(path)) for path in args.images))
    print(f"{'file':<{width}}  digit  probability")
    for path, label, probs in zip(args.images, labels, probabilities, strict=True):
        print(f"{path:<{width}}  {int(label):>5d}  {float(probs[label]):>11.4f}")
    return EXIT_OK


def _add_eval_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a saved model")
    p.add_argument(
        "model",
        help="a .keras/.h5 file or a folder holding one; or an exported model (`mnist-bench "
        "export`): a .tflite file or a SavedModel folder",
    )
    _add_data_flag(p)
    p.add_argument(
        "--folder",
        default=None,
        help="score on your digits instead of MNIST's test set: subfolders 0..9 of PNG/JPEG "
        "files, as `finetune` takes",
    )
    p.add_argument("--json", default=None, help="also write the full report to this JSON file")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="classify your own digit images (PNG, JPEG or .npy)",
        description="Each photo is made MNIST-like first: grayscale, inverted if the "
        "background is light, cropped to the ink, scaled into 20x20 and centred by its centre "
        "of mass in 28x28. A 28x28 image or array is taken as is. Prints the model (name, recipe, "
        "calibrated or not), then file, label, probability (calibrated for a calibrated model: "
        "results/robust/model_calibrated.keras).",
    )
    p.add_argument(
        "model", help="a .keras/.h5 file or a folder holding one, a .tflite file or a SavedModel"
    )
    p.add_argument("images", nargs="+", help="image files: .png, .jpg, .jpeg or .npy")
    p.set_defaults(func=_cmd_predict)
