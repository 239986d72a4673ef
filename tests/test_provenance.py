"""`provenance.git_commit`: which changes make a checkout "dirty" in a run's provenance."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mnist_bench.provenance import git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with one code file and one results file, all committed."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "metrics.json").write_text("{}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


@pytest.mark.parametrize(
    ("edit", "dirty"),
    [(None, False), ("results/metrics.json", False), ("pkg/code.py", True)],
    ids=["clean", "results-only", "code"],
)
def test_only_changes_outside_results_make_the_checkout_dirty(repo, edit, dirty):
    if edit is not None:
        (repo / edit).write_text("changed\n")
    info = git_commit(repo / "pkg")  # asked from inside the package, as provenance() does
    assert info is not None and len(info["commit"]) == 40
    assert info["dirty"] is dirty


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert git_commit(tmp_path) is None
