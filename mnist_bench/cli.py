"""The `mnist-bench` command line: argument parsing, printing and exit codes.

Only this module reads argv and environment variables, prints, or exits. Each subcommand is a
`_cmd_*` function taking the parsed arguments and returning an exit code:
0 success, 1 a check failed (e.g. data did not verify), 2 bad input (usage, missing or corrupt
files). Library errors (`ValueError`, `OSError`) become a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

# TensorFlow's C++ logging (oneDNN notices, CPU feature lines) goes to stderr at import and
# would pollute every command's output; silence it before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DATA_ENV = "MNIST_BENCH_DATA"


class CliError(Exception):
    """Bad user input: printed as one line to stderr, exit code 2."""


def _err(message: str) -> None:
    print(f"mnist-bench: error: {message}", file=sys.stderr)


def _data_dir_from_env(explicit: str | None) -> str | None:
    """The data folder: the flag if given, else $MNIST_BENCH_DATA, else None (loader decides)."""
    return explicit or os.environ.get(DATA_ENV) or None


# -- data ---------------------------------------------------------------------------------


def _cmd_data_verify(args: argparse.Namespace) -> int:
    raise NotImplementedError  # filled in with data.py


def _cmd_data_download(args: argparse.Namespace) -> int:
    raise NotImplementedError  # filled in with data.py


def _add_data_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="verify or download the MNIST files")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    verify = data_sub.add_parser(
        "verify", help="check the four IDX files: format, record counts and pinned SHA-256"
    )
    verify.add_argument(
        "dir", nargs="?", default=None, help=f"folder holding the files (default: ${DATA_ENV}, "
        "then the cache)"
    )
    verify.set_defaults(func=_cmd_data_verify)
    download = data_sub.add_parser("download", help="download the four files and verify them")
    download.add_argument("--dir", default=None, help="destination (default: the user cache)")
    download.set_defaults(func=_cmd_data_download)


# -- parser and entry point ---------------------------------------------------------------

_PARSER_BUILDERS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data_parser,
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mnist-bench",
        description="Reproducible, tested and benchmarked reference CNN for MNIST.",
    )
    parser.add_argument("--version", action="version", version=f"mnist-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _PARSER_BUILDERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    except (ValueError, OSError) as exc:  # MnistDataError is a ValueError
        _err(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
