"""Factories for bad-input files, used in parametrize tables (which run before fixtures)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def bytes_file(name: str, content: bytes | None) -> Callable[[Path], Path]:
    """A function writing `content` to ``tmp/name`` (nothing if None) and returning the path."""

    def make(tmp: Path) -> Path:
        path = tmp / name
        if content is not None:
            path.write_bytes(content)
        return path

    return make
