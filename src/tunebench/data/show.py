"""`tunebench data show`: what the data settings select, before any training."""

from __future__ import annotations

import numpy as np

from tunebench.config import Config
from tunebench.data.sources import load_examples
from tunebench.data.split import select_splits
from tunebench.models import load_tokenizer


def _lengths(tokenizer, texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros(0)
    return np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]])


def _stats(lengths: np.ndarray, limit: int) -> str:
    if not len(lengths):
        return "none"
    return (f"median {np.median(lengths):.0f}, p95 {np.percentile(lengths, 95):.0f} tokens, "
            f"{100 * np.mean(lengths > limit):.0f}% cut at {limit}")


def describe_data(cfg: Config) -> str:
    """A plain-text account: rows kept/skipped per split, token lengths for the model, cost, two examples."""
    d = cfg.data
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    loaded = load_examples(d)
    splits = select_splits(loaded, d)
    out = [f"source {d.source}: article column '{loaded.columns['text']}', summary column "
           f"'{loaded.columns['summary']}', bylines stripped: {'yes' if loaded.strip_bylines else 'no'}"]
    for name, part in loaded.splits.items():
        reasons = ", ".join(f"{n} {reason}" for reason, n in part.skipped.items()) or "none"
        out.append(f"  {name}: {part.rows_in_source} rows in source, {part.rows_read} read, "
                   f"{len(part.examples)} kept; skipped: {reasons}")
    sep = len(tokenizer(d.separator, add_special_tokens=False)["input_ids"])
    for name in ("train", "val", "test"):
        examples = getattr(splits, name)
        articles = _lengths(tokenizer, [ex.article for ex in examples])
        summaries = _lengths(tokenizer, [ex.summary for ex in examples])
        out.append(f"{name}: {len(examples)} pairs")
        out.append(f"  articles: {_stats(articles, d.max_article_tokens)}")
        out.append(f"  summaries: {_stats(summaries, d.max_summary_tokens)}")
        if name == "train":
            tokens = int(np.minimum(articles, d.max_article_tokens).sum() + np.minimum(summaries, d.max_summary_tokens)
                         .sum() + len(examples) * (sep + 1))
            steps = -(-len(examples) // (cfg.train.batch_size * cfg.train.grad_accum_steps))
            out.append(f"  training: {tokens:,} tokens per epoch, {tokens * cfg.train.epochs:,} over "
                       f"{cfg.train.epochs} epoch(s), {steps * cfg.train.epochs:,} optimizer steps per method")
    for ex in splits.train[:2]:
        out += [f"example {ex.id}:", f"  article: {ex.article[:300]!r}", f"  summary: {ex.summary[:200]!r}"]
    return "\n".join(out)
