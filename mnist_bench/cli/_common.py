"""What every `mnist-bench` subcommand shares: exit codes, the one-line error, where the data
and results live, TensorFlow's quiet start-up, and small formatting helpers."""

from __future__ import annotations

import argparse
import os
import sys

from ..data import MnistData, load_mnist

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DATA_ENV = "MNIST_BENCH_DATA"
DEFAULT_BENCH_OUT = "results/benchmarks"


class CliError(Exception):
    """Bad user input: printed as one line to stderr, exit code 2."""


def _err(message: str) -> None:
    print(f"mnist-bench: error: {message}", file=sys.stderr)


def _data_dir_from_env(explicit: str | None) -> str | None:
    """The data folder: the flag if given, else $MNIST_BENCH_DATA, else None (loader decides)."""
    return explicit or os.environ.get(DATA_ENV) or None


def _add_data_flag(parser: argparse.ArgumentParser) -> None:
    """The `--data DIR` flag every command that reads MNIST takes (see `_load_data`)."""
    parser.add_argument(
        "--data", default=None, help=f"MNIST folder (default: ${DATA_ENV}, then cache)"
    )


def _load_data(explicit: str | None) -> MnistData:
    return load_mnist(explicit) if explicit else load_mnist()


def _start_tensorflow() -> None:
    """Import TensorFlow with its start-up chatter filtered out (`_tfenv.start_tensorflow`);
    lines that are not known noise still reach stderr."""
    from .._tfenv import start_tensorflow

    for line in start_tensorflow():
        print(line, file=sys.stderr)


def _print_readme_update(readme: str, section: str, changed: bool) -> None:
    print(f"{readme}: {section} {'updated' if changed else 'already up to date'}")


def _update_table(readme: str, markers: tuple[str, str], body: str, what: str) -> None:
    from .._io import replace_marked

    changed = replace_marked(readme, *markers, body, what)
    _print_readme_update(readme, what, changed)


def _show_table(table: str, page: str | None, markers: tuple[str, str], what: str) -> None:
    """Print a generated table; regenerate it between `markers` in `page` when one is given."""
    print(table)
    if page:
        _update_table(page, markers, table, what)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _duration(seconds: float) -> str:
    """'42 s', '7 min', '2 h 05 min': a human-sized time span."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
