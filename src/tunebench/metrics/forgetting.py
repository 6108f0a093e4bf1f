"""Forgetting: the loss of the record's model on text that is not a summary (each test article's own text, its
next tokens after its first ones; articles no method trained on), per article. The base model's is the zero-shot
record's; a method's forgetting is its loss minus that, paired by article (the report shows it with a paired
interval). One forward pass per article, no generation.

What it measures: how much tuning for summaries changed the model's fit to news text like its input. What it does
not: loss on other domains or tasks (code, dialogue, other languages), or abilities a loss does not see. On the
same text the model is trained to summarise, a method could lower it (it learnt the domain) as well as raise it.
"""

from __future__ import annotations

from tunebench.metrics import Articles, Metric, Score

CONTEXT_TOKENS = 64
"""Tokens of the article given before the scored continuation."""
TARGET_TOKENS = 64
"""Tokens of the continuation scored."""

SCORES = [Score("text_loss", "text loss", "loss on the articles' own text (nats per token)", higher_is_better=False,
                digits=3, descriptive=True, versus_base=True,
                about="fit to general news text; a method's rise over the base model is its forgetting")]


def per_article(batch: Articles) -> list[dict[str, float]]:
    if batch.text_losses is None:  # no model (Lead-k) or another prompt (the chat-template baseline)
        return [{} for _ in batch.ids]
    return [{"text_loss": total / max(tokens, 1)} for total, tokens in batch.text_losses]


METRIC = Metric("forgetting", SCORES, per_article, needs_text_loss=(CONTEXT_TOKENS, TARGET_TOKENS))
