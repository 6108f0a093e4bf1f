"""Faithfulness signals computable offline, per article: what a summary says that its article does not, and how
much it rewrites. Descriptive, not a verdict: they cannot decide the verdict (eval.decide_on refuses them).

- `new_numbers`: share (%) of the summary's numbers that do not occur in the article (commas and a trailing period
  ignored; "3.5" and "3,500" must appear as written). 0 when the summary has no number.
- `new_names`: share (%) of the summary's capitalised words, other than a sentence's first word, that do not occur
  in the article (case-sensitive). 0 when it has none. A name the article spells differently counts as new.
- `novel_bigrams`: share (%) of the summary's word pairs (lower-cased) not in the article: abstractiveness. High
  is neither good nor bad: XSum's references are highly abstractive, Lead-k's are 0.
- `summary_words`, `compression` (article words / summary words; words as separated by spaces).

What they can show: a method that invents numbers or names its article never mentions, or that copies instead of
summarising. What they cannot: whether a paraphrase is true, whether a name is a synonym of one in the article, or
anything a model-based checker (NLI, QA) would find; they need no model and no network.
"""

from __future__ import annotations

import re

from tunebench.metrics import Articles, Metric, Score
from tunebench.text import split_sentences

SCORES = [
    Score("new_numbers", "new numbers %", "numbers not in the article (% of the summary's)", higher_is_better=False,
          descriptive=True, about="numbers the article does not contain"),
    Score("new_names", "new names %", "capitalised names not in the article (% of the summary's)",
          higher_is_better=False, descriptive=True, about="names the article does not contain"),
    Score("novel_bigrams", "novel 2-grams %", "word pairs not in the article (%)", descriptive=True,
          about="how much the summary rewrites rather than copies"),
    Score("summary_words", "words", "summary length in words", descriptive=True, about="summary length"),
    Score("compression", "compression", "article words per summary word", descriptive=True,
          about="how much shorter than its article"),
]
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z][\w'’-]*")


def _numbers(text: str) -> list[str]:
    return [n.replace(",", "") for n in _NUMBER.findall(text)]


def _names(summary: str) -> list[str]:
    """Capitalised words that are not the first word of a sentence."""
    out = []
    for sentence in split_sentences(summary):
        words = _WORD.findall(sentence)
        out += [w for w in words[1:] if w[0].isupper()]
    return out


def _share(found: list[str], present) -> float:
    return 100.0 * sum(1 for x in found if not present(x)) / len(found) if found else 0.0


def scores_of(summary: str, article: str) -> dict[str, float]:
    numbers = set(_numbers(article))
    article_words = _WORD.findall(article)
    names = set(article_words)
    words = [w.lower() for w in _WORD.findall(summary)]
    lowered = [w.lower() for w in article_words]
    article_pairs = set(zip(lowered, lowered[1:], strict=False))
    pairs = list(zip(words, words[1:], strict=False))
    return {"new_numbers": _share(_numbers(summary), numbers.__contains__),
            "new_names": _share(_names(summary), names.__contains__),
            "novel_bigrams": _share(pairs, article_pairs.__contains__),
            "summary_words": float(len(summary.split())),
            "compression": len(article.split()) / max(len(summary.split()), 1)}


def per_article(batch: Articles) -> list[dict[str, float]]:
    return [scores_of(p, a) for p, a in zip(batch.predictions, batch.articles, strict=True)]


METRIC = Metric("faithfulness", SCORES, per_article)
