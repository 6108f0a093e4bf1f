"""Text cleaning: CNN/DailyMail bylines, whitespace, one summary sentence per line."""

from __future__ import annotations

import re

# "LONDON, England (CNN) -- ", "(CNN)  -- ", "(CNN)"
_CNN_DATELINE = re.compile(r"^[^()\n]{0,80}?\(CNN\)\s*(?:--\s*)?")
# "By . Daily Mail Reporter . PUBLISHED: . 12:01 EST, 1 May 2013 . | . UPDATED: . 12:30 EST, 1 May 2013 . "
_DAILY_MAIL_BYLINE = re.compile(
    r"^(?:By \. [^.]{1,80}\. )?(?:(?:PUBLISHED|UPDATED): \. [^.]{1,60}\. (?:\| \. )?)+|^By \. [^.]{1,80}\. "
    r"|^Last updated at [^.]{1,60}\. ")


def strip_byline(article: str) -> str:
    """Remove a CNN dateline or a Daily Mail byline/timestamp block at the start of an article."""
    previous = None
    while previous != article:  # the patterns can follow one another
        previous = article
        article = _CNN_DATELINE.sub("", article, count=1)
        article = _DAILY_MAIL_BYLINE.sub("", article, count=1).lstrip()
    return article


def clean_article(text: str, strip_bylines: bool) -> str:
    text = text.replace("\r\n", "\n").strip()
    return strip_byline(text).strip() if strip_bylines else text


def clean_summary(text: str) -> str:
    """Existing line breaks kept, one sentence (highlight) per line, blank lines and padding dropped."""
    return "\n".join(line.strip() for line in text.replace("\r\n", "\n").splitlines() if line.strip())


def is_cnn_dailymail(source: str, columns: dict[str, str | None]) -> bool:
    """Byline stripping is on by default for CNN/DailyMail: by name, or by its article/highlights columns."""
    return "cnn" in source.lower() or (columns.get("text"), columns.get("summary")) == ("article", "highlights")
