"""The files tunebench writes: where converted models and fetched data are kept, atomic writes that follow the
umask, the run folder's lock, and which process writes (rank 0 under torchrun)."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path

from tunebench.errors import TunebenchError

OWN_JOB = [False]
"""True while this process runs a job of its own under torchrun (train.parallel=jobs, distributed.own_job): it
then writes that job's files itself."""


def is_writer() -> bool:
    """Whether this process writes files: the only process, or rank 0 of a torchrun job (distributed.py), or any
    process while it runs a job of its own. Reads torch's state only if torch is already imported, so this module
    stays torch-free."""
    if OWN_JOB[0]:
        return True
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
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; the file gets the mode any new file of the user gets
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path) -> None:
    """Give a file, or a folder and everything in it, the mode any new file or folder of the user gets: some
    writers (safetensors) create their files 0600 whatever the umask says."""
    mask = umask()
    for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


def check_runs_dir(run_dir: Path) -> None:
    """The folder a run folder goes in is a folder (or can be made) and may be written; checked before any model
    loads, and again when the run folder is made."""
    existing = next(p for p in [run_dir.parent, *run_dir.absolute().parent.parents] if p.exists())
    if not existing.is_dir():
        raise TunebenchError(f"--runs-dir {run_dir.parent} is not a folder ({existing} is a file); give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TunebenchError(f"--runs-dir {run_dir.parent} is not writable ({existing} does not let this user create "
                             "files); give a writable folder")


LOCK_FILE = ".tunebench.lock"
"""The file in a run folder that a process writing the folder holds an exclusive lock on (fcntl.flock)."""


def claim_run_dir(run_dir: Path, create: bool):
    """Lock `run_dir` for this process (the returned open file holds the lock until closed or the process ends).

    `create`: the folder must not exist yet and is made here (so two processes never share a new folder); else it
    must exist (resume, evaluate). Another process holding the lock is a TunebenchError, as is a folder that exists
    when it is to be created."""
    if create:
        check_runs_dir(run_dir)
        try:
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            run_dir.mkdir()
        except FileExistsError:
            raise TunebenchError(f"run folder {run_dir} already exists; choose another --name (or continue it with "
                                 f"`tunebench compare --resume {run_dir}`)") from None
        except OSError as exc:
            raise TunebenchError(f"cannot create run folder {run_dir}: {exc.strerror}; choose a writable "
                                 "--runs-dir") from None
    try:
        handle = open(run_dir / LOCK_FILE, "a")  # noqa: SIM115 (held open: the lock lasts as long as the file)
    except OSError as exc:
        raise TunebenchError(f"cannot lock run folder {run_dir}: {exc.strerror}; it must be a writable folder") \
            from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise TunebenchError(f"run folder {run_dir} is in use by another tunebench process; wait until it ends, "
                             "or choose another --name") from None
    return handle


def atomic_write_json(path: Path, data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
