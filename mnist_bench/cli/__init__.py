"""The `mnist-bench` command line: argument parsing, printing and exit codes.

Only this subpackage reads argv and environment variables, prints, or exits. Each subcommand
is a `_cmd_*` function taking the parsed arguments and returning an exit code: 0 success, 1 a
check failed (e.g. data did not verify), 2 bad input (usage, missing or corrupt files).
Library errors (`ValueError`, `OSError`) become a one-line message, never a traceback. One
module per group of subcommands; `_common` holds what they share.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from ._common import EXIT_BAD_INPUT, CliError, _duration, _err
from .bench import _add_bench_parser
from .compat import _add_compat_parser
from .data import _add_data_parser
from .evaluate import _add_eval_parsers
from .finetune import _add_finetune_parsers
from .reproduce import _add_reproduce_parser, _add_select_parser, _print_trust_summary
from .robustness import CALIBRATION_MARKERS, ROBUSTNESS_MARKERS, _add_robustness_parsers
from .search import _add_search_parser
from .serve import (
    _add_export_bench_parser,
    _add_export_parser,
    _add_serve_load_parser,
    _add_serve_parser,
)
from .train import _EPOCH_HEADER, _add_train_parser, _StepBar

__all__ = ["CALIBRATION_MARKERS", "ROBUSTNESS_MARKERS", "build_parser", "main"]
# Used by the tests, which reach the helpers through the package.
_TESTED = (_EPOCH_HEADER, _StepBar, _duration, _print_trust_summary)


_PARSER_BUILDERS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data_parser,
    _add_train_parser,
    _add_eval_parsers,
    _add_reproduce_parser,
    _add_select_parser,
    _add_search_parser,
    _add_bench_parser,
    _add_export_parser,
    _add_export_bench_parser,
    _add_serve_parser,
    _add_serve_load_parser,
    _add_robustness_parsers,
    _add_finetune_parsers,
    _add_compat_parser,
]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

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
