"""pytest set-up for validating the notebooks with nbval (``pytest --nbval notebooks``).

The project's test command, ``python -m pytest --benchmark-disable --nbval tests notebooks``,
passes no nbval options, so this file supplies them: the sanitize file for the volatile
timing columns, quick mode (the saved outputs are quick mode's), and the shared MNIST folder.
The kernel nbval starts inherits this process's environment, which is how the variables reach
the notebook.
"""

import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent
SANITIZE_FILE = NOTEBOOKS / "nbval_sanitize.cfg"
_SHARED_MNIST = NOTEBOOKS.parent.parent / "shared" / "mnist"  # as tests/conftest.py finds it

# The saved outputs come from quick mode; validating them against a 30-epoch run (hours on a
# CPU) could only fail.
os.environ["MNIST_BENCH_QUICK"] = "1"
# Offline machines hold MNIST beside the checkout; elsewhere the loader's cache is used.
if "MNIST_BENCH_DATA" not in os.environ and _SHARED_MNIST.is_dir():
    os.environ["MNIST_BENCH_DATA"] = str(_SHARED_MNIST)


def pytest_configure(config: pytest.Config) -> None:
    # nbval reads this option when it sets up each notebook; an explicit
    # --nbval-sanitize-with on the command line still wins.
    if getattr(config.option, "nbval_sanitize_with", "") is None:
        config.option.nbval_sanitize_with = str(SANITIZE_FILE)
