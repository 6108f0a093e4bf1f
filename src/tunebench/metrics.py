"""ROUGE with Google's rouge-score (stemming on; Lsum over newline-separated sentences), Lead-k."""

from __future__ import annotations

import re

import numpy as np
from rouge_score import rouge_scorer

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
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


def rouge_per_article(predictions: list[str], references: list[str]) -> list[dict[str, float]]:
    """F1 x 100 per article for R-1, R-2, R-L and R-Lsum (sentences on separate lines for Lsum)."""
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    scores = []
    for pred, ref in zip(predictions, references, strict=True):
        pred_lines, ref_lines = "\n".join(split_sentences(pred)), "\n".join(split_sentences(ref))
        result = scorer.score(ref_lines, pred_lines)
        scores.append({key: 100.0 * result[key].fmeasure for key in ROUGE_KEYS})
    return scores


def bootstrap_ci(values: list[float], seed: int = 0, resamples: int = 1000) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean over articles."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return (float(data.mean()), float(data.mean())) if len(data) else (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def aggregate(per_article: list[dict[str, float]], seed: int = 0, resamples: int = 1000) -> dict[str, dict]:
    """Mean and 95% bootstrap CI of each ROUGE key."""
    out = {}
    for key in ROUGE_KEYS:
        values = [s[key] for s in per_article]
        low, high = bootstrap_ci(values, seed, resamples)
        out[key] = {"mean": float(np.mean(values)) if values else float("nan"), "ci95": [low, high]}
    return out


EXACT_UP_TO = 16
"""Up to this many articles the permutation test enumerates every sign pattern (2^16 = 65,536)."""


def paired_difference(a: list[float], b: list[float], seed: int = 0, resamples: int = 1000) -> dict[str, float]:
    """Mean of a - b over the same articles, its 95% paired-bootstrap CI, and the two-sided p-value of a paired
    sign-flip permutation test (exact up to EXACT_UP_TO articles, else `resamples` random sign patterns).

    The percentile bootstrap alone is overconfident on a handful of articles (two articles that both favour a
    give an interval that excludes 0); the permutation test's p-value cannot go below 1 / 2^(n-1), so a verdict
    that needs both (verdict.significant) never separates methods on too few articles.
    """
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    n = len(diff)
    observed = abs(diff.mean()) - 1e-12
    if n <= EXACT_UP_TO:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
        p_value = float((np.abs((signs * diff).mean(axis=1)) >= observed).mean())
    else:
        signs = rng.choice([-1.0, 1.0], size=(resamples, n))
        p_value = float(((np.abs((signs * diff).mean(axis=1)) >= observed).sum() + 1) / (resamples + 1))
    return {"mean": float(diff.mean()), "ci95": [float(low), float(high)], "p_value": min(1.0, p_value),
            "p_test": "paired sign-flip permutation"}
