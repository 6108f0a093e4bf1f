"""Where tunebench keeps converted models and fetched data, and atomic file writes."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path


def is_writer() -> bool:
    """Whether this process writes files: the only process, or rank 0 of a torchrun job (distributed.py).
    Reads torch's state only if torch is already imported, so this module stays torch-free."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return True
    return torch.distributed.get_rank() == 0


def cache_dir() -> Path:
    """`$TUNEBENCH_CACHE`, else `$XDG_CACHE_HOME/tunebench`, else `~/.cache/tunebench`."""
    if os.environ.get("TUNEBENCH_CACHE"):
        return Path(os.environ["TUNEBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tunebench"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder + fsync + rename: readers never see half a file.
    Only the writer process writes (see is_writer)."""
    if not is_writer():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
