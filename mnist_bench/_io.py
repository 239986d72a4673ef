"""Crash-safe file writes: everything the package writes goes to a temporary file in the
target's folder and is renamed into place only when complete (a rename is atomic within a
filesystem), so an interrupted run never leaves a half-written result behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it to `target`.

    The temporary file keeps the target's suffix, since some writers (Keras, matplotlib)
    choose the format from it. On an exception the temporary file is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(target: str | Path, obj: Any) -> Path:
    """Write `obj` as indented, key-sorted JSON (stable diffs in results/), atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return Path(target)


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or malformed file raises ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc


def read_marked(path: str | Path, begin: str, end: str, what: str) -> str:
    """The text of `path`, once it is known to hold exactly one `begin` marker followed by one
    `end` marker. Raises ``ValueError`` naming the file and `what` goes between otherwise."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc
    if text.count(begin) != 1 or text.count(end) != 1 or text.find(end) < text.find(begin):
        raise ValueError(
            f"{path}: needs exactly one {begin} followed by one {end} to place {what} between"
        )
    return text


def replace_marked(path: str | Path, begin: str, end: str, body: str, what: str) -> bool:
    """Replace the text between the `begin` and `end` markers of `path` with `body`, leaving
    the rest of the file as it is; atomically. Returns whether the file changed."""
    text = read_marked(path, begin, end, what)
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    new = f"{head}{begin}\n{body}\n{end}{tail}"
    if new == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(new)
    return True
