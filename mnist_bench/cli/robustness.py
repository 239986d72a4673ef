"""`mnist-bench robustness` and `mnist-bench calibrate`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import _common
from ._common import (
    EXIT_OK,
    CliError,
    _add_data_flag,
    _start_tensorflow,
    _update_table,
)

ROBUSTNESS_MARKERS = ("<!-- robustness-table -->", "<!-- /robustness-table -->")
CALIBRATION_MARKERS = ("<!-- calibration-table -->", "<!-- /calibration-table -->")


def _print_robustness(record: dict[str, Any]) -> None:
    from ..corruptions import CORRUPTIONS

    model, base = record["model"], record["baseline"]
    print(f"{'corruption':<14}  {'seed':>4}  {'accuracy':>8}  {'baseline':>8}  {'CE':>6}")
    for name in CORRUPTIONS:
        b = f"{base['accuracy'][name]:>8.4f}" if base else f"{'-':>8}"
        ce = record["ce"][name] if record["ce"] else None
        print(
            f"{name:<14}  {record['corruptions'][name]['seed']:>4d}  "
            f"{model['accuracy'][name]:>8.4f}  {b}  {'-' if ce is None else f'{ce:.3f}':>6}"
        )
    line = (
        f"{record['n_images']} {record['split']} digits: clean {model['clean_accuracy']:.4f}, "
        f"mean over 15 corruptions {model['mean_accuracy']:.4f}, min {model['min_accuracy']:.4f} "
        f"({model['worst']})"
    )
    if base:
        line += f"; baseline mean {base['mean_accuracy']:.4f}; mCE {record['mce']:.3f}"
        line += f", relative mCE {record['relative_mce']:.3f}"
    print(line)


def _root(out: Path) -> Path:
    """The results root a recipe's folder belongs to: results/ for results/robust/."""
    from ..published import PUBLISHED_DIRS

    return out.parent if out.name in PUBLISHED_DIRS.values() else out


def _robustness_body(root: Path) -> str:
    from ..published import recipe_records
    from ..robustness import ROBUSTNESS_FILE, robustness_table

    return robustness_table(recipe_records(root, ROBUSTNESS_FILE))


def _calibration_body(root: Path) -> str:
    from ..published import recipe_records
    from ..robustness import CALIBRATION_FILE, calibration_table

    return calibration_table(recipe_records(root, CALIBRATION_FILE))


def _cmd_robustness(args: argparse.Namespace) -> int:
    _start_tensorflow()
    from ..robustness import (
        HOLDOUT_ROBUSTNESS_FILE,
        ROBUSTNESS_FILE,
        holdout_robustness,
        measure_robustness,
        previous_baseline,
        robustness_figure,
        write_robustness,
    )

    out = Path(args.out)
    holdout = args.split == "holdout"
    path = out / (HOLDOUT_ROBUSTNESS_FILE if holdout else ROBUSTNESS_FILE)
    if args.readme and holdout:
        raise CliError("--readme publishes test-set numbers; it does not go with --split holdout")
    if args.table_only:
        if not args.readme:
            raise CliError("--table-only writes the README table: give --readme")
        _update_table(args.readme, ROBUSTNESS_MARKERS, _robustness_body(out),
                      "robustness table")  # fmt: skip
        return EXIT_OK
    if args.model is None:
        raise CliError("give the MODEL to measure (or --table-only with --readme)")
    if args.readme:
        from .._io import read_marked

        read_marked(args.readme, *ROBUSTNESS_MARKERS, "the robustness table")  # fail early
    from ..models import load_model

    data = _common._load_data(args.data)
    model = load_model(args.model)
    if args.baseline and args.baseline.endswith(".json"):
        baseline = previous_baseline(args.baseline)
        if baseline is None:
            raise CliError(f"{args.baseline}: no such robustness file")
        baseline_path = baseline.get("path")
        print(f"baseline: the numbers of {baseline_path} carried over from {args.baseline}")
    elif args.baseline:
        baseline = load_model(args.baseline)
        baseline_path = args.baseline
    else:
        baseline = None if holdout else previous_baseline(path)
        baseline_path = baseline.get("path") if baseline else None
        if baseline is not None:
            print(f"baseline: the numbers of {baseline_path} carried over from {path}")
    if holdout:
        record = holdout_robustness(
            model, data, holdout_size=args.holdout_size, base_seed=args.seed, baseline=baseline
        )
    else:
        n = len(data.x_test) if args.images is None else args.images
        if not 0 < n <= len(data.x_test):
            raise CliError(f"--images must be in 1..{len(data.x_test)}, got {n}")
        record = measure_robustness(
            model, data.x_test[:n], data.y_test[:n], base_seed=args.seed, baseline=baseline
        )
    _print_robustness(record)
    write_robustness(record, path, model_path=args.model, baseline_path=baseline_path)
    print(f"wrote {path}")
    if not holdout:
        figure = robustness_figure(record, data.x_test, out / "corruptions.png")
        print(f"wrote {figure}")
    if args.readme:
        _update_table(args.readme, ROBUSTNESS_MARKERS, _robustness_body(_root(out)),
                      "robustness table")  # fmt: skip
    return EXIT_OK


def _cmd_calibrate(args: argparse.Namespace) -> int:
    _start_tensorflow()
    from ..robustness import calibrate, write_calibration

    out = Path(args.out)
    if args.table_only:
        if not args.readme:
            raise CliError("--table-only writes the README table: give --readme")
        _update_table(args.readme, CALIBRATION_MARKERS, _calibration_body(out),
                      "calibration table")  # fmt: skip
        return EXIT_OK
    if args.model is None:
        raise CliError("give the MODEL to calibrate (or --table-only with --readme)")
    if args.readme:
        from .._io import read_marked

        read_marked(args.readme, *CALIBRATION_MARKERS, "the calibration table")  # fail early
    from ..models import load_model

    data = _common._load_data(args.data)
    calibrated, record = calibrate(load_model(args.model), data, holdout_size=args.holdout_size)
    print(f"temperature {record['temperature']:.4f} (fitted on {record['fit']['images']})")
    for split in ("holdout", "test"):
        for key in ("uncalibrated", "calibrated"):
            m = record[split][key]
            print(
                f"{split:<8} {key:<13} accuracy {m['accuracy']:.4f}  confidence "
                f"{m['mean_confidence']:.4f}  ECE {m['ece']:.4%}  NLL {m['nll']:.4f}  "
                f"Brier {m['brier']:.4f}"
            )
    paths = write_calibration(calibrated, record, out, model_path=args.model)
    print(f"wrote {' '.join(str(p) for p in paths.values())}")
    if args.readme:
        _update_table(args.readme, CALIBRATION_MARKERS, _calibration_body(_root(out)),
                      "calibration table")  # fmt: skip
    return EXIT_OK


def _add_robustness_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robustness",
        help="accuracy under the 15 MNIST-C corruptions; writes robustness.json and a figure",
        description="Corrupt the test digits with each of the 15 MNIST-C corruptions (seeded: "
        "corruption i uses --seed + i), classify them, and write OUT/robustness.json and "
        "OUT/corruptions.png: accuracy per corruption, mean, min, and the corruption error "
        "against --baseline (the seed notebook's model). --split holdout measures the last "
        "--holdout-size training images instead (for choosing a recipe), into "
        "OUT/robustness-holdout.json.",
    )
    p.add_argument("model", nargs="?", help="a .keras/.h5 file, or a folder holding one")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument(
        "--baseline",
        default=None,
        help="the model CE is relative to, e.g. the seed notebook's, or a robustness.json "
        "whose baseline numbers to reuse (default: the baseline numbers already in "
        "OUT/robustness.json, else none)",
    )
    p.add_argument("--images", type=int, default=None, help="first N test digits (default: all)")
    p.add_argument(
        "--split", choices=("test", "holdout"), default="test", help="digits (default: test)"
    )
    p.add_argument("--holdout-size", type=int, default=10_000, help="(default: 10000)")
    p.add_argument("--seed", type=int, default=0, help="base corruption seed (default: 0)")
    _add_data_flag(p)
    p.add_argument(
        "--readme",
        default=None,
        help=f"also write the table between {ROBUSTNESS_MARKERS[0]} and "
        f"{ROBUSTNESS_MARKERS[1]} in this file (default: none)",
    )
    p.add_argument(
        "--table-only",
        action="store_true",
        help="measure nothing: write the --readme table from OUT/robustness.json and each "
        "published recipe's beside it (OUT/robust/robustness.json)",
    )
    p.set_defaults(func=_cmd_robustness)

    p = sub.add_parser(
        "calibrate",
        help="fit a temperature on the holdout split; publish ECE before and after",
        description="Fit temperature scaling on the last --holdout-size training images "
        "(never the test set); write OUT/model_calibrated.keras (the model with its "
        "temperature, loadable with plain Keras; MODEL itself is left as it is), "
        "OUT/calibration.json (test and holdout ECE, NLL, Brier before and after) and "
        "OUT/reliability.png.",
    )
    p.add_argument("model", nargs="?", help="a .keras/.h5 file, or a folder holding one")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument("--holdout-size", type=int, default=10_000, help="(default: 10000)")
    _add_data_flag(p)
    p.add_argument(
        "--readme",
        default=None,
        help=f"also write the table between {CALIBRATION_MARKERS[0]} and "
        f"{CALIBRATION_MARKERS[1]} in this file (default: none)",
    )
    p.add_argument(
        "--table-only",
        action="store_true",
        help="calibrate nothing: write the --readme table from OUT/calibration.json and each "
        "published recipe's beside it (OUT/robust/calibration.json)",
    )
    p.set_defaults(func=_cmd_calibrate)
