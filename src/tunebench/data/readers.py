"""Readers for files of pairs: CSV (a real parser), JSONL, JSON and Parquet. Each returns a list of row dicts.

Rows whose bytes are not valid UTF-8 are kept with the marker key UNDECODABLE, so the caller can skip
and count them instead of failing the whole file.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from tunebench.errors import TunebenchError

UNDECODABLE = "__tunebench_undecodable__"
FORMATS = (".csv", ".jsonl", ".json", ".parquet")


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_csv(path: Path) -> list[dict]:
    """CSV with a header row: multi-line quoted fields, embedded quotes and commas, CRLF, a UTF-8 BOM."""
    csv.field_size_limit(sys.maxsize)  # news articles exceed the default 128 KiB field limit
    rows = []
    delimiter = _delimiter(path)
    # utf-8-sig drops a BOM; newline="" lets the csv module see quoted line breaks (and CRLF) itself
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        # strict: an unterminated quote is an error, not data
        reader = csv.DictReader(handle, strict=True, delimiter=delimiter)
        try:
            if not reader.fieldnames:
                raise TunebenchError(f"{path} is empty: a CSV of pairs needs a header row (e.g. id,article,highlights)")
            for row in reader:
                if None in row:  # more fields than the header has
                    raise TunebenchError(f"{path}: record ending on line {reader.line_num} has more fields than the "
                                         f"header ({len(reader.fieldnames)}); check its quoting")
                if any(_has_surrogates(v or "") for v in row.values()):
                    row = {UNDECODABLE: True}
                rows.append(row)
        except csv.Error as exc:
            raise TunebenchError(f"{path}: cannot parse CSV near line {reader.line_num}: {exc}") from None
    if not rows:
        raise TunebenchError(f"{path} has a header ({', '.join(map(str, reader.fieldnames))[:120]}) but no rows; add "
                             "one row per article/summary pair")
    return rows


def _delimiter(path: Path) -> str:
    """`,` unless the header has none and the start of the file shows another delimiter (`;`, tab, `|`)."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        sample = handle.read(64 * 1024)
    header = sample.split("\n", 1)[0]
    if "," in header or not any(d in header for d in ";\t|"):
        return ","
    try:
        return csv.Sniffer().sniff(sample, delimiters=";\t|").delimiter
    except csv.Error:  # the sniffer cannot tell: the most common of them in the header
        return max(";\t|", key=header.count)


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if _has_surrogates(line):
                rows.append({UNDECODABLE: True})
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                message = f"{path}:{number} is not valid JSON ({exc.msg}); fix or remove that line"
                raise TunebenchError(message) from None
            if not isinstance(row, dict):
                raise TunebenchError(f"{path}:{number} is a JSON {type(row).__name__}, expected an object of columns")
            rows.append(row)
    return rows


def read_json(path: Path) -> list[dict]:
    """A JSON list of objects, or an object holding such a list under `data` or `rows`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TunebenchError(f"{path} is not valid UTF-8 JSON ({exc}); fix the file or convert it to JSONL") from None
    if isinstance(data, dict):
        data = data.get("data", data.get("rows"))
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise TunebenchError(f"{path} must hold a list of objects (or {{\"data\": [...]}}), one per pair")
    return data


def read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq  # pyarrow comes with datasets

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise TunebenchError(f"{path} cannot be read as Parquet: {str(exc).splitlines()[0]}") from None


READERS = {".csv": read_csv, ".jsonl": read_jsonl, ".json": read_json, ".parquet": read_parquet}


SIGNATURES = ((b"\x1f\x8b", "gzip-compressed: decompress it first (gunzip)"),
              (b"PK\x03\x04", "a zip archive: extract the file first"),
              (b"\xff\xfe", "UTF-16 text: save it as UTF-8"), (b"\xfe\xff", "UTF-16 text: save it as UTF-8"),
              (b"BZh", "bzip2-compressed: decompress it first (bunzip2)"),
              (b"\xfd7zXZ", "xz-compressed: decompress it first (unxz)"))
"""Leading bytes of files that are not UTF-8 text, whatever their name says: the message names the encoding."""


def check_text_file(path: Path) -> None:
    """A text format (CSV, JSONL, JSON) that is compressed or UTF-16 is refused with what it is, not with a
    message about its columns."""
    with path.open("rb") as handle:
        head = handle.read(8)
    for signature, what in SIGNATURES:
        if head.startswith(signature):
            raise TunebenchError(f"{path} is {what}")


def read_rows(path: Path) -> list[dict]:
    """Rows of one file, by its extension."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise TunebenchError(f"{path}: unsupported file type '{path.suffix}' (use {', '.join(FORMATS)})")
    if path.suffix.lower() != ".parquet":
        check_text_file(path)
    return reader(path)
