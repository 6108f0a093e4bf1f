"""Where a run's numbers came from, beside the package versions and code commit results.environment() records:
the sha256 of the model's weight files (or its Hub revision) and of the data file(s) (or the Hub dataset's
revision). `report A B` names a difference in them (results.differences)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tunebench.models import WEIGHT_SUFFIXES, base_model_path

CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hub_revision(repo: str, filename: str, repo_type: str = "model") -> str | None:
    """The commit of a Hub repo as cached locally (the snapshot folder a file resolves to), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, filename, repo_type=repo_type)
    except Exception:
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def model_provenance(spec: str) -> dict:
    """sha256 of every weight file of a local (or converted, or random test) model; a Hub id's cached revision."""
    where = base_model_path(spec)
    folder = Path(where)
    if not folder.is_dir():
        return {"hub_id": where, "revision": hub_revision(where, "config.json")}
    return {"path": str(folder), "sha256": {p.name: sha256_file(p) for p in sorted(folder.iterdir())
                                            if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)}}


def data_provenance(path: Path | None, source: str) -> dict:
    """sha256 of the data file(s) read (a folder: each file in it); a Hub dataset's cached revision."""
    if path is None:
        if source.startswith("hf:"):
            repo = source[3:].split(":", 1)[0]
            return {"hub_id": repo, "revision": hub_revision(repo, "README.md", "dataset")}
        return {}
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return {"sha256": {p.name: sha256_file(p) for p in files}}
