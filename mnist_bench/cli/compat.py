"""`mnist-bench compat`: the version matrix's steps in this environment, and its table."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import EXIT_CHECK_FAILED, EXIT_OK, CliError, _add_data_flag, _show_table


def _cmd_compat(args: argparse.Namespace) -> int:
    from ..compat import README_MARKERS, compat_table, run_compat, versions, write_compat

    if args.report:
        _show_table(compat_table(args.results), args.readme, README_MARKERS, "versions table")
        return EXIT_OK
    if args.readme:
        raise CliError("--readme regenerates the table: give --report")
    v = versions()
    print(f"checking with Python {v['python']}, TensorFlow {v['tensorflow']}, Keras {v['keras']}, "
          f"numpy {v['numpy']} in {Path(args.repo).resolve()}", flush=True)  # fmt: skip

    def progress(name: str, step: dict) -> None:
        verdict = "passed" if step["passed"] else "FAILED"
        print(f"  {name:<18} {verdict:<6} {step['seconds']:6.1f} s  {step['detail']}", flush=True)
        if not step["passed"]:
            print(step["output"], flush=True)

    record = run_compat(args.repo, data_dir=args.data, progress=progress)
    if args.out:
        print(f"wrote {write_compat(record, args.out)}")
    return EXIT_OK if record["passed"] else EXIT_CHECK_FAILED


def _add_compat_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compat",
        help="the version matrix: check, 1-epoch training, notebook, export and predict with "
        "this environment's TensorFlow/Keras/numpy; or --report the table",
        description="Run `reproduce --check`, a 1-epoch training, the notebook under nbval, and "
        "export + predict with this environment's Python (tox envs tf-min, tf-mid, tf-latest "
        "run it once each and write results/compat/<env>.json); exit 1 if a step failed. "
        "--report prints the table of every recorded environment.",
    )
    p.add_argument("--out", default=None, help="write the record to this JSON file (default: none)")
    p.add_argument("--repo", default=".", help="the project checkout (default: .)")
    _add_data_flag(p)
    p.add_argument("--report", action="store_true", help="no run: the table (default: off)")
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument(
        "--readme",
        default=None,
        help="with --report: regenerate the table between the "
        "versions-table markers in this file (default: none)",
    )
    p.set_defaults(func=_cmd_compat)
