"""`mnist-bench data verify|download`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..data import FileReport

from ._common import (
    DATA_ENV,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    CliError,
    _data_dir_from_env,
    _err,
)


def _print_file_reports(reports: Sequence[FileReport]) -> None:
    print(f"{'file':<28} {'records':>7}  {'status':<6} problem")
    for r in reports:
        records = "-" if r.records is None else str(r.records)
        status = "ok" if r.ok else "BAD"
        print(f"{r.path.name:<28} {records:>7}  {status:<6} {r.problem or ''}".rstrip())


def _cmd_data_verify(args: argparse.Namespace) -> int:
    from ..data import default_cache_dir, verify_mnist

    folder = Path(_data_dir_from_env(args.dir) or default_cache_dir()).expanduser()
    if not folder.is_dir():
        raise CliError(f"{folder}: no such folder")
    reports = verify_mnist(folder)
    _print_file_reports(reports)
    bad = [r.path.name for r in reports if not r.ok]
    if bad:
        _err(f"{len(bad)} of {len(reports)} files in {folder} did not verify: {', '.join(bad)}")
        return EXIT_CHECK_FAILED
    print(f"all {len(reports)} files in {folder} verified")
    return EXIT_OK


def _cmd_data_download(args: argparse.Namespace) -> int:
    from ..data import download_mnist, verify_mnist

    folder = download_mnist(args.dir)
    _print_file_reports(verify_mnist(folder))
    print(f"MNIST files downloaded and verified in {folder}")
    return EXIT_OK


def _add_data_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="verify or download the MNIST files")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    verify = data_sub.add_parser(
        "verify", help="check the four IDX files: format, record counts and pinned SHA-256"
    )
    verify.add_argument(
        "dir",
        nargs="?",
        default=None,
        help=f"folder holding the files (default: ${DATA_ENV}, then the cache)",
    )
    verify.set_defaults(func=_cmd_data_verify)
    download = data_sub.add_parser("download", help="download the four files and verify them")
    download.add_argument("--dir", default=None, help="destination (default: the user cache)")
    download.set_defaults(func=_cmd_data_download)
