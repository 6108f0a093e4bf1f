"""The loss of the record's model on each reference summary (mean cross-entropy per summary token, given the
article with the methods' prompt): one forward pass per article, no generation. A second signal beside the
generated summaries' overlap: it measures fit to the reference wording, not what the model would write."""

from __future__ import annotations

import math

from tunebench.metrics import Articles, Metric, Score

SCORES = [Score("test_loss", "test loss", "test loss (nats per summary token)", higher_is_better=False, digits=3,
                about="fit to the reference wording, without generation")]


def per_article(batch: Articles) -> list[dict[str, float]]:
    if batch.losses is None:  # a record prompted otherwise (the chat-template baseline): no loss to read
        return [{} for _ in batch.ids]
    return [{"test_loss": total / max(tokens, 1), "target_tokens": tokens} for total, tokens in batch.losses]


def summary(rows: list[dict]) -> dict[str, dict]:
    """The loss per summary token over all articles (token-weighted) and its perplexity, beside the per-article
    mean the paired tests compare."""
    if any("test_loss" not in row for row in rows):
        return {}
    tokens = sum(row["target_tokens"] for row in rows)
    loss = sum(row["test_loss"] * row["target_tokens"] for row in rows) / max(tokens, 1)
    return {"test_loss": {"token_weighted": loss, "perplexity": math.exp(min(loss, 50.0))}}


METRIC = Metric("test_loss", SCORES, per_article, needs_loss=True, summary=summary, extra=["target_tokens"])
