"""The one error type users see, and the checks that raise it for bad settings."""

from __future__ import annotations

import math
import stat
from collections.abc import Iterable
from pathlib import Path


class TunebenchError(Exception):
    """A user-facing problem (bad input, missing file, no network): printed as one line, exit code 2."""


def require_at_least(key: str, value: float | None, low: float) -> None:
    """`value` must be >= `low` (None passes: it means "not set")."""
    if value is not None and not value >= low:
        raise TunebenchError(f"config key '{key}' must be >= {low:g}, got {value}")


def require_positive(key: str, value: float | None) -> None:
    """`value` must be a finite number > 0 (None passes)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise TunebenchError(f"config key '{key}' must be a finite number > 0, got {value}")


def require_choice(key: str, value: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise TunebenchError(f"config key '{key}' must be one of {', '.join(allowed)}; got '{value}'")


def require_below_one(key: str, value: float) -> None:
    """A probability or share: 0 <= value < 1."""
    if not 0 <= value < 1:
        raise TunebenchError(f"config key '{key}' must be in [0, 1), got {value}")


def require_nonempty(key: str, value: list) -> None:
    if not value:
        raise TunebenchError(f"config key '{key}' must list at least one entry")


def is_folder_name(name: object) -> bool:
    """One folder name: a non-empty string with no path separator or NUL, not '.' or '..' (so joining it to a
    folder stays inside that folder)."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0") \
        and len(name.encode("utf-8", "surrogateescape")) <= 255  # NAME_MAX of common file systems


def not_a_file(path: Path) -> str | None:
    """What `path` is when it is not a regular file one can read ("a directory", "a named pipe (FIFO)", ...), or
    None for a regular file. Checked before opening: reading a FIFO or a device could block forever."""
    try:
        mode = path.stat().st_mode  # follows links: a link to a file is a file
    except FileNotFoundError:
        return "does not exist" if not path.is_symlink() else "is a broken symbolic link"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character "
             "device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return "is " + next((name for test, name in kinds if test(mode)), "not a regular file")


def require_file(path: Path, what: str, hint: str) -> None:
    """A one-line refusal when `path` is not a regular file, saying what it is."""
    problem = not_a_file(path)
    if problem:
        raise TunebenchError(f"{what} '{path}' {problem}; {hint}")
