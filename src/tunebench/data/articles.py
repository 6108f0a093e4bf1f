"""Articles to summarize (`tunebench summarize`): one article as text, standard input, or a table of them."""

from __future__ import annotations

import sys
from pathlib import Path

from tunebench.data.readers import FORMATS, UNDECODABLE, read_rows
from tunebench.data.sources import ID_COLUMNS, TEXT_COLUMNS
from tunebench.errors import TunebenchError, require_file


def read_articles(file: str, column: str | None = None) -> tuple[list[str], list[str], bool]:
    """(ids, articles, whether the input is a table) from `file`: `-` for standard input, a text file holding one
    article, or a CSV/JSONL/JSON/Parquet file of articles in `column` (default: the first of TEXT_COLUMNS it has).
    Checked before any model loads: bad input is a one-line TunebenchError."""
    if file == "-":
        text = sys.stdin.read()
        if not text.strip():
            raise TunebenchError("standard input is empty; give the article's text")
        return ["-"], [text], False
    path = Path(file)
    require_file(path, "input file", "give a text file, a CSV/JSONL of articles or - for stdin")
    if path.suffix.lower() not in FORMATS:  # one article of plain text; a table holds one article per row
        return [path.name], [_read_text(path)], False
    rows = read_rows(path)
    columns = list(dict.fromkeys(key for row in rows[:50] for key in row if key != UNDECODABLE))
    name = column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if name is None or name not in columns:
        raise TunebenchError(f"{path} has no column {'`' + column + '`' if column else 'of articles'} "
                             f"(its columns: {', '.join(map(str, columns)) or 'none'}); name it with --column")
    id_column = next((c for c in ID_COLUMNS if c in columns), None)
    ids, articles = [], []
    for index, row in enumerate(rows):
        if UNDECODABLE in row:
            raise TunebenchError(f"{path} row {index + 1} is not UTF-8; re-save the file as UTF-8")
        article = row.get(name)
        if not isinstance(article, str) or not article.strip():
            raise TunebenchError(f"{path} row {index + 1}: the article (column `{name}`) is empty or not text; "
                                 "remove the row or fill it")
        ids.append(str(row.get(id_column)) if id_column and row.get(id_column) not in (None, "") else str(index))
        articles.append(article)
    if not articles:
        raise TunebenchError(f"{path} holds no articles")
    return ids, articles, True


def _read_text(path: Path) -> str:
    """One article of UTF-8 text, not empty, not binary."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TunebenchError(f"{path} is not UTF-8 text; give the article as UTF-8 text") from None
    if not text.strip():
        raise TunebenchError(f"{path} is empty; give non-empty text to summarize")
    if "\0" in text:
        raise TunebenchError(f"{path} holds NUL bytes: it looks binary, not an article; give the article as text")
    return text
