"""pytest set-up for validating the notebooks with nbval (``pytest --nbval notebooks``).

The project's test command, ``python -m pytest --benchmark-disable --nbval tests notebooks``,
passes no nbval options, so this file supplies them: the sanitize file, quick mode (the saved
outputs are quick mode's). The notebook finds MNIST as the package does ($MNIST_BENCH_DATA,
else the cache). The kernel nbval starts inherits this process's environment, which is how
the variables reach the notebook.

Which sanitize file: each notebook prints ``machine fingerprint: ...`` (CPU model, instruction
set, threads, TensorFlow version) in its saved outputs. On that machine the outputs are
compared exactly but for wall-clock timings (nbval_sanitize.cfg). On any other, where
oneDNN's float round-off differs, every digit is masked (nbval_sanitize_other_machine.cfg):
the cells must still run and print the same text. Regenerate the saved outputs with
``MNIST_BENCH_QUICK=1 jupyter execute --inplace notebooks/mnist_cnn.ipynb``.
"""

import json
import os
import re
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent
SANITIZE_FILE = NOTEBOOKS / "nbval_sanitize.cfg"
SANITIZE_OTHER_MACHINE = NOTEBOOKS / "nbval_sanitize_other_machine.cfg"
_FINGERPRINT_LINE = re.compile(r"^machine fingerprint: (.*)$", re.MULTILINE)

# The saved outputs come from quick mode; validating them against a 30-epoch run (hours on a
# CPU) could only fail.
os.environ["MNIST_BENCH_QUICK"] = "1"


def saved_fingerprints(notebook: Path) -> set[str]:
    """The machine fingerprints printed in `notebook`'s saved outputs."""
    cells = json.loads(notebook.read_text())["cells"]
    texts = (
        "".join(output.get("text", ""))
        for cell in cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )
    return {m for text in texts for m in _FINGERPRINT_LINE.findall(text)}


def sanitize_file(notebooks: list[Path]) -> Path:
    """The strict file when every notebook's outputs were saved on this machine."""
    from mnist_bench import machine_fingerprint
    from mnist_bench._tfenv import start_tensorflow
    from mnist_bench.provenance import fingerprints_match

    # The fingerprint imports TensorFlow: with its C++ start-up lines filtered out, which
    # TF_CPP_MIN_LOG_LEVEL set in-process does not silence (only one set before Python starts).
    for line in start_tensorflow():
        print(line, file=sys.stderr)

    here = machine_fingerprint()  # fingerprints saved before it named oneDNN still match
    saved = [saved_fingerprints(nb) for nb in notebooks]
    same = all(len(s) == 1 and fingerprints_match(next(iter(s)), here) for s in saved)
    return SANITIZE_FILE if same else SANITIZE_OTHER_MACHINE


def pytest_configure(config: pytest.Config) -> None:
    # nbval reads this option when it sets up each notebook; an explicit
    # --nbval-sanitize-with on the command line still wins.
    if getattr(config.option, "nbval_sanitize_with", "") is None:
        config.option.nbval_sanitize_with = str(sanitize_file(sorted(NOTEBOOKS.glob("*.ipynb"))))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The notebook loads MNIST as the package does: its cells carry the ``mnist`` marker."""
    for item in items:
        if NOTEBOOKS in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.mnist)
