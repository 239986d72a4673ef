"""`mnist-bench finetune` (adapt a model to a folder of your digits) and `mnist-bench transfer`
(the transfer experiment on the UCI digits)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import EXIT_OK, _show_table, _start_tensorflow

DEFAULT_BASE = "results/robust/model.keras"
PROGRESS_EVERY = 25  # steps between progress lines


def _cmd_finetune(args: argparse.Namespace) -> int:
    from ..transfer import FinetuneConfig, read_digit_folder

    config = FinetuneConfig(
        layers=args.layers,
        learning_rate=args.learning_rate,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    print("config: " + ", ".join(f"{k}={v}" for k, v in config.to_dict().items()))
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not empty; choose a new --out folder")
    images, labels, skipped = read_digit_folder(args.data_dir, skip_bad=args.skip_bad_images)
    for _, reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    counts = " ".join(f"{d}:{int((labels == d).sum())}" for d in range(10))
    print(f"{len(labels)} digits from {args.data_dir} (per class {counts})")
    _start_tensorflow()
    from ..evaluation import model_temperature, predict
    from ..export import file_sha256
    from ..models import load_model
    from ..provenance import provenance
    from ..transfer import finetune, write_finetuned

    base = load_model(args.model)

    def progress(step: int, steps: int, loss: float) -> None:
        if step % PROGRESS_EVERY == 0 or step == steps:
            print(f"step {step:>5d}/{steps}  loss {loss:.4f}", flush=True)

    tuned = finetune(base, images, labels, config, progress=progress)
    accuracy = float((predict(tuned, images)[0] == labels).mean())
    record = {
        "base_model": str(args.model),
        "base_sha256": file_sha256(_model_file(Path(args.model))),
        "data_dir": str(args.data_dir),
        "n_images": len(labels),
        "per_class": [int((labels == d).sum()) for d in range(10)],
        "skipped": [{"file": p, "reason": r} for p, r in skipped],
        "config": config.to_dict(),
        "temperature": model_temperature(tuned),  # a calibrated base's, kept, not refitted
        "train_accuracy": accuracy,
        "provenance": provenance(),
    }
    paths = write_finetuned(tuned, out, record)
    print(f"accuracy on its own {len(labels)} digits {accuracy:.4f} (training images)")
    print(f"wrote {paths['keras']} and {paths['record']}")
    return EXIT_OK


def _model_file(path: Path) -> Path:
    from ..models import H5_NAME, KERAS_NAME

    if path.is_dir():
        return next((path / n for n in (KERAS_NAME, H5_NAME) if (path / n).is_file()), path)
    return path


def _cmd_transfer(args: argparse.Namespace) -> int:
    out_file = Path(args.out) / "transfer.json"
    _start_tensorflow()
    from ..export import file_sha256
    from ..models import load_model
    from ..plots import plot_transfer
    from ..provenance import provenance
    from ..transfer_experiment import (
        TABLE_MARKERS,
        curve,
        experiment_setup,
        render_uci_digits,
        run_experiment,
        transfer_table,
    )

    base = load_model(args.model)
    setup = experiment_setup(str(args.model), file_sha256(_model_file(Path(args.model))))

    def progress(point: dict, done: int, total: int) -> None:
        print(
            f"[{done:>2d}/{total}] {point['method']:<12}  {point['shots']:>2d} per class  "
            f"seed {point['seed']}  held-out accuracy {point['accuracy']:.4f}  "
            f"({point['seconds']:.0f} s)",
            flush=True,
        )

    content = run_experiment(
        base, setup, out_file, provenance=provenance(), progress=progress, max_points=args.points
    )
    print(f"wrote {out_file}{'' if content['complete'] else ' (incomplete: run again)'}")
    examples = render_uci_digits()[0][:10]  # the digits 0 to 9
    figure = plot_transfer(curve(content), examples, out_file.with_suffix(".png"))
    print(f"wrote {figure}")
    _show_table(transfer_table(content), args.docs, TABLE_MARKERS, "transfer table")
    return EXIT_OK


def _add_finetune_parsers(sub: argparse._SubParsersAction) -> None:
    from ..config import LAYER_CHOICES, FinetuneConfig

    defaults = FinetuneConfig()
    p = sub.add_parser(
        "finetune",
        help="adapt a trained model to your own digits (one subfolder per digit)",
        description="DATA_DIR holds subfolders 0..9 of PNG/JPEG digits of any size (the "
        "layout of keras.utils.image_dataset_from_directory); each image is prepared as "
        "`predict` prepares it. Every file is read before training: a bad one is named and "
        "nothing is trained unless --skip-bad-images. Writes OUT/model.keras and "
        "OUT/finetune.json, all or nothing.",
    )
    p.add_argument("model", help="a .keras/.h5 file or a folder holding one")
    p.add_argument("data_dir", help="folder of subfolders 0..9 holding PNG/JPEG digits")
    p.add_argument("--out", required=True, help="new (or empty) folder for the model")
    p.add_argument(
        "--layers",
        choices=LAYER_CHOICES,
        default=defaults.layers,
        help=f"which weights learn (default: {defaults.layers}: all but batch norm)",
    )
    p.add_argument(
        "--learning-rate", type=float, default=defaults.learning_rate,
        help=f"Adam's step size (default: {defaults.learning_rate:g})",
    )  # fmt: skip
    p.add_argument(
        "--steps", type=int, default=defaults.steps,
        help=f"optimizer steps (default: {defaults.steps})",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, default=defaults.batch_size,
        help=f"images per step (default: {defaults.batch_size})",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: 0)")
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out unreadable files (named on stderr) instead of refusing to start",
    )
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser(
        "transfer",
        help="the transfer experiment on the UCI digits -> results/transfer.json and .png",
        description="A learning curve on scikit-learn's 8x8 UCI digits rendered MNIST-style: "
        "fine-tuned from MODEL, the same network from scratch, and MODEL with no labels, at "
        "1, 5, 10 and 50 labels per class, 3 seeds. Resumable: each point is recorded as it "
        "finishes; run the command again to go on.",
    )
    p.add_argument(
        "--model", default=DEFAULT_BASE, help=f"the published model (default: {DEFAULT_BASE})"
    )
    p.add_argument("--out", default="results", help="folder of transfer.json (default: results)")
    p.add_argument("--docs", default=None, help="also regenerate the table in this Markdown file")
    p.add_argument(
        "--points", type=int, default=None, help="run at most this many new points, then stop"
    )
    p.set_defaults(func=_cmd_transfer)
