"""The generated tables of README.md and docs/ are what the committed results/ render to today.

Each table is written by a command (named in the failure message); these tests fail the day a
results file and its table disagree, or a table's markers go missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mnist_bench._io import read_json
from mnist_bench.cli import CALIBRATION_MARKERS, ROBUSTNESS_MARKERS
from mnist_bench.cli.robustness import _calibration_body, _robustness_body
from mnist_bench.compat import README_MARKERS as VERSIONS_MARKERS
from mnist_bench.compat import compat_table
from mnist_bench.export import EXPORT_TABLE_MARKERS, export_table
from mnist_bench.export_bench import INFERENCE_TABLE_MARKERS, inference_table
from mnist_bench.published import ARCHITECTURES_MARKERS, architectures_table, recipes_table
from mnist_bench.published import README_MARKERS as RECIPES_MARKERS
from mnist_bench.reproduction import README_BEGIN, README_END, results_table
from mnist_bench.search_report import README_MARKERS as SEARCH_MARKERS
from mnist_bench.search_report import search_table
from mnist_bench.serving.load import SERVE_LOAD_TABLE_MARKERS, serve_load_table
from mnist_bench.transfer_experiment import TABLE_MARKERS as TRANSFER_MARKERS
from mnist_bench.transfer_experiment import transfer_table

ROOT = Path(__file__).resolve().parents[1]


def _from(render, name):
    """A table body from one results file: `render` of results/<name>."""
    return lambda root: render(read_json(root / name))


# (page, markers, the table body from the results root, the command that regenerates it)
TABLES = {
    "robustness": ("docs/robustness.md", ROBUSTNESS_MARKERS, _robustness_body,
                   "mnist-bench robustness --table-only --readme docs/robustness.md"),
    "calibration": ("docs/robustness.md", CALIBRATION_MARKERS, _calibration_body,
                    "mnist-bench calibrate --table-only --readme docs/robustness.md"),
    "recipes": ("README.md", RECIPES_MARKERS, recipes_table,
                "mnist-bench reproduce --check --readme README.md"),
    "robust-results": ("docs/robustness.md", (README_BEGIN, README_END),
                       _from(results_table, "robust/metrics.json"),
                       "mnist-bench reproduce --check --recipe robust --readme docs/robustness.md"),
    "architectures": ("docs/architectures.md", ARCHITECTURES_MARKERS, architectures_table,
                      "mnist-bench reproduce --architectures docs/architectures.md"),
    "versions": ("README.md", VERSIONS_MARKERS, compat_table,
                 "tox -e tf-min,tf-mid,tf-latest; mnist-bench compat --report --readme README.md"),
    "search": ("docs/recipe.md", SEARCH_MARKERS, _from(search_table, "search/fast.json"),
               "mnist-bench search --study fast --report --readme docs/recipe.md"),
    "export-readme": ("README.md", EXPORT_TABLE_MARKERS, _from(export_table, "export.json"),
                      "mnist-bench export --report --readme README.md"),
    "export-docs": ("docs/serving.md", EXPORT_TABLE_MARKERS, _from(export_table, "export.json"),
                    "mnist-bench export --report --readme docs/serving.md"),
    "inference": ("docs/serving.md", INFERENCE_TABLE_MARKERS,
                  _from(inference_table, "inference.json"),
                  "mnist-bench export-bench --report --readme docs/serving.md"),
    "serve-load": ("docs/serving.md", SERVE_LOAD_TABLE_MARKERS,
                   _from(serve_load_table, "serve_load.json"),
                   "mnist-bench serve-load --report --readme docs/serving.md"),
    "transfer": ("docs/transfer.md", TRANSFER_MARKERS, _from(transfer_table, "transfer.json"),
                 "mnist-bench transfer --out results --docs docs/transfer.md"),
}  # fmt: skip


@pytest.mark.parametrize(("page", "markers", "body", "command"), TABLES.values(), ids=TABLES)
def test_generated_table_matches_the_results_file(page, markers, body, command):
    text = (ROOT / page).read_text()
    begin, end = markers
    assert text.count(begin) == 1 and text.count(end) == 1, f"{page}: markers {markers}"
    table = text.split(begin)[1].split(end)[0].strip("\n")
    assert table == body(ROOT / "results"), f"{page} is stale: run `{command}`"


def test_readme_stays_a_front_page():
    # Issue 15: a newcomer reads it in ten minutes; the long material lives in docs/.
    assert len((ROOT / "README.md").read_text().splitlines()) < 200


def test_every_local_link_of_the_readme_and_docs_resolves():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_the_readme_lists_every_subcommand():
    from mnist_bench.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command" or (hasattr(a, "choices")
              and isinstance(a.choices, dict))]  # fmt: skip
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in sub.choices if f"`mnist-bench {name}" not in readme]
    assert not missing, f"README.md's command table lacks {missing}"
