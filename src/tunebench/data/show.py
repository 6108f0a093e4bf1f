"""`tunebench data show`: what the data settings select, before any training."""

from __future__ import annotations

import numpy as np

from tunebench.config import Config, get_setting
from tunebench.data.sources import load_examples
from tunebench.data.split import select_splits
from tunebench.data.task import CUT_SHARE, TASK_KEYS, derive, is_auto, reference_facts, resolve_task
from tunebench.models import load_tokenizer

CNN_MARK = "(CNN)"


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
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.trust_remote_code)
    loaded = load_examples(cfg.data)
    splits = select_splits(loaded, cfg.data)
    pinned = {key: get_setting(cfg, key) for key in TASK_KEYS if key not in is_auto(cfg)}
    cfg, derived = resolve_task(cfg, splits, tokenizer)
    d = cfg.data
    out = [f"source {d.source}: article column '{loaded.columns['text']}', summary column "
           f"'{loaded.columns['summary']}', bylines stripped: {_bylines(loaded, d.strip_bylines)}"]
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
            from tunebench.data.format import encode_example
            from tunebench.train import plan  # the run's own plan: it follows train.budget

            encoded = [encode_example(tokenizer, ex.id, ex.article, ex.summary, d.separator, d.max_article_tokens,
                                      d.max_summary_tokens) for ex in examples]
            budget = plan(encoded, cfg.train) if encoded else {"planned_steps": 0, "epochs": 0}
            out.append(f"  training: {tokens:,} tokens per epoch; the budget ({cfg.train.budget}) gives "
                       f"{budget['planned_steps']:,} optimizer steps per method over {budget['epochs']} epoch(s)"
                       + (" (train.max_seconds may stop it sooner)" if cfg.train.budget == "seconds" else ""))
    out += task_lines(derived, pinned)
    out += warnings(cfg, splits, tokenizer)
    for ex in splits.train[:2]:
        out += [f"example {ex.id}:", f"  article: {ex.article[:300]!r}", f"  summary: {ex.summary[:200]!r}"]
    return "\n".join(out)


def _bylines(loaded, setting: bool | None) -> str:
    """Whether bylines were stripped, and why: auto strips them only for CNN/DailyMail by name or columns."""
    if loaded.strip_bylines:
        return "yes"
    articles = [ex.article for split in loaded.splits.values() for ex in split.examples]
    marked = sum(CNN_MARK in a[:100] or a.startswith("By . ") for a in articles)
    if setting is None and marked:
        return (f"no (data.strip_bylines=auto strips them only for a CNN/DailyMail source by name or columns; "
                f"{marked} of {len(articles)} articles start with a CNN dateline or a Daily Mail byline: "
                "--set data.strip_bylines=true)")
    return "no" + (" (data.strip_bylines=false)" if setting is False else "")


def task_lines(derived: dict, pinned: dict) -> list[str]:
    """The task settings: derived from the data (auto, with why) or set by a preset/config/--set."""
    out = []
    if derived:
        out.append("task settings derived from the training summaries (left at auto):")
        out += [f"  {key}={item['value']!r}: {item['why']}" for key, item in derived.items()]
    if pinned:
        out.append("task settings as set (preset, config or --set; `=auto` derives them from the data): "
                   + ", ".join(f"{key}={value!r}" for key, value in pinned.items()))
    return out


def warnings(cfg: Config, splits, tokenizer) -> list[str]:
    """A setting that cuts most of the data, or does not fit its summaries, with the --set that fixes it."""
    d, out = cfg.data, []
    train = splits.train or splits.test
    articles = _lengths(tokenizer, [ex.article for ex in train])
    summaries = _lengths(tokenizer, [ex.summary for ex in train])
    facts = reference_facts(splits, tokenizer)
    suggest = {key: value for key, (value, _) in derive(facts).items()}
    if len(summaries) and np.mean(summaries > d.max_summary_tokens) > CUT_SHARE:
        out.append(f"warning: data.max_summary_tokens={d.max_summary_tokens} cuts "
                   f"{100 * np.mean(summaries > d.max_summary_tokens):.0f}% of the training summaries (median "
                   f"{np.median(summaries):.0f} tokens): --set data.max_summary_tokens="
                   f"{suggest['data.max_summary_tokens']} eval.max_new_tokens={suggest['eval.max_new_tokens']}")
    elif len(summaries) and cfg.eval.max_new_tokens < np.median(summaries):
        out.append(f"warning: eval.max_new_tokens={cfg.eval.max_new_tokens} is below the median summary "
                   f"({np.median(summaries):.0f} tokens): --set eval.max_new_tokens={suggest['eval.max_new_tokens']}")
    if len(articles) and np.mean(articles > d.max_article_tokens) > CUT_SHARE:
        p95 = int(np.percentile(articles, 95))
        out.append(f"warning: data.max_article_tokens={d.max_article_tokens} cuts "
                   f"{100 * np.mean(articles > d.max_article_tokens):.0f}% of the training articles (median "
                   f"{np.median(articles):.0f} tokens): the methods see only their beginning; --set "
                   f"data.max_article_tokens={min(p95, 1024)} if the model's context and your time allow")
    if cfg.eval.cut != suggest["eval.cut"] and cfg.eval.cut == "first_line":
        out.append(f"warning: eval.cut=first_line keeps one line of each summary, but the training summaries have "
                   f"more (median {facts['lines_median']:.0f} lines): --set "
                   f"eval.cut={suggest['eval.cut']} eval.lead_k={suggest['eval.lead_k']}")
    return out
