"""Sentences of a text and the Lead-k baseline (the first k sentences of the article)."""

from __future__ import annotations

import re

# A small regex splitter instead of nltk's punkt, which would need a download at run time.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Sentences of a text: newlines always split; '.', '!' or '?' followed by a capital also split."""
    sentences = []
    for line in text.splitlines():
        sentences.extend(s.strip() for s in _SENTENCE_END.split(line.strip()) if s.strip())
    return sentences


def lead_k(article: str, k: int) -> str:
    """The first k sentences of an article, one per line."""
    return "\n".join(split_sentences(article)[:k])
