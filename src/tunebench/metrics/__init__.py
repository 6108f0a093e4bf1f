"""The metric registry: what a record is scored on, per test article. Imports no torch.

A metric is one module that defines `METRIC = Metric(...)`: its scores (each a key with its label, direction and
format), and a function from the test articles (predictions, references, articles, and the per-article loss on
the reference when the metric asks for it) to one dict of scores per article. `eval.metrics` names the metrics a
run computes: a name is a module of this package (`rouge`, `test_loss`) or any importable module (`my_metrics`,
`pkg.words`), so a metric of your own is one file on the Python path and one setting, no other edit.

Everything downstream reads the scores' descriptions, not names: scoring (workbench.py) calls the metrics and
aggregates their means with bootstrap intervals; results.json stores the descriptions (`metrics`) beside the
scores, so the report, plots, paired tests, verdict (`eval.decide_on` names one score key), trackers and model
card draw any metric, also one whose module is not importable where the report is drawn.

A metric module keeps its top level light (its heavy imports inside its function): reading a configuration
imports it to check `eval.decide_on`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tunebench.errors import TunebenchError
from tunebench.stats import bootstrap_ci

DEFAULT_METRICS = ["rouge", "test_loss", "faithfulness", "forgetting"]


@dataclass(frozen=True)
class Score:
    """One number per article, and how to show and compare it."""

    key: str
    """Its key in results.json (per-article rows, eval.scores, comparisons) and in `eval.decide_on`."""
    label: str
    """Short label for tables and plots ("R-1")."""
    title: str
    """Longer name for plot axes and the model card ("ROUGE-1 F1 x 100")."""
    higher_is_better: bool = True
    digits: int = 1
    """Decimals shown."""
    pairwise: bool = True
    """Compared between every pair of records in the report's table of differences (the verdict's deciding score
    always is)."""
    about: str = ""
    """One sentence for the report: what it measures, what it cannot show."""
    descriptive: bool = False
    """Describes the summaries (length, copying): compared pairwise as 'higher'/'lower', never 'better', shown in
    a table of its own, and never decides the verdict."""
    versus_base: bool = False
    """Read as a change from the base model (the baseline that has this score: the untrained model with the methods'
    prompt): the report shows each method minus it, paired, e.g. forgetting."""

    def describe(self, metric: str) -> dict:
        return {**dataclasses.asdict(self), "metric": metric}


@dataclass(frozen=True)
class Articles:
    """What a metric reads: the test articles of one record, in one order."""

    ids: list[str]
    predictions: list[str]
    references: list[str]
    articles: list[str]
    losses: list[tuple[float, int]] | None = None
    """(summed cross-entropy, target tokens) of each reference summary under the record's model, when some metric
    `needs_loss` and the record has the methods' prompt (a baseline that generates no text from it has none)."""
    text_losses: list[tuple[float, int]] | None = None
    """The same on each article's own text (its continuation after its first tokens), when some metric
    `needs_text_loss`: how well the record's model still models general text."""


@dataclass(frozen=True)
class Metric:
    name: str
    scores: list[Score]
    per_article: Callable[[Articles], list[dict[str, float]]]
    """One dict per article: its scores (keys of `scores`) and any extra per-article figures (e.g. token counts);
    an empty dict where the metric cannot score the record (then the record has no such score)."""
    needs_loss: bool = False
    """The per-article loss on the reference summary must be computed (one forward pass per article)."""
    needs_text_loss: tuple[int, int] | None = None
    """(context tokens, scored tokens): the per-article loss on the article's own text must be computed, on the
    scored tokens that follow the article's first context tokens (one forward pass per article)."""
    summary: Callable[[list[dict]], dict[str, dict]] | None = None
    """Extra record-level figures per score key beside the mean and interval (e.g. token-weighted loss)."""
    extra: list[str] = field(default_factory=list)
    """Per-article keys that are not scores (kept in the rows, never compared)."""
    published: Callable[[str], list[dict]] | None = None
    """Published figures of these scores for a data source (by its name): rows of {system, scores, source},
    shown beside measured rows and labelled as published."""


def load(name: str) -> Metric:
    """The metric named `name`: `tunebench.metrics.<name>`, else the module `name` itself; one-line errors."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise TunebenchError(f"eval.metrics: '{name}' is not a metric name (a module of tunebench.metrics, e.g. "
                             f"{', '.join(DEFAULT_METRICS)}, or an importable module of your own)")
    for module_name in (f"tunebench.metrics.{name}", name):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                continue  # not this one: try the next place
            raise TunebenchError(f"eval.metrics: the metric module {module_name} needs {exc.name}, which is not "
                                 "installed") from None
        metric = getattr(module, "METRIC", None)
        if not isinstance(metric, Metric):
            raise TunebenchError(f"eval.metrics: module {module_name} defines no METRIC = Metric(...); see "
                                 "docs/metrics.md")
        return metric
    raise TunebenchError(f"eval.metrics: no metric '{name}' (built in: {', '.join(DEFAULT_METRICS)}; a metric of "
                         "your own must be an importable module on the Python path)")


def chosen(names: list[str]) -> list[Metric]:
    """The metrics of `eval.metrics`, loaded and checked: no score key defined twice."""
    metrics = [load(name) for name in names]
    seen: dict[str, str] = {}
    for metric in metrics:
        for s in metric.scores:
            if s.key in seen:
                raise TunebenchError(f"eval.metrics: score '{s.key}' is defined by both {seen[s.key]} and "
                                     f"{metric.name}; list only one of them")
            seen[s.key] = metric.name
    return metrics


def catalogue(metrics: list[Metric]) -> dict[str, dict]:
    """The scores' descriptions as stored in results.json (`metrics`), by key, in the metrics' order."""
    return {s.key: s.describe(m.name) for m in metrics for s in m.scores}


def published(metrics: list[Metric], source: str) -> list[dict]:
    """The published figures every chosen metric knows for the data source (stored in results.json)."""
    return [row for m in metrics if m.published for row in m.published(source)]


def score_articles(metrics: list[Metric], articles: Articles) -> list[dict]:
    """Every metric's scores per article, merged into one row per article with its id."""
    rows = [{"id": i} for i in articles.ids]
    for metric in metrics:
        values = metric.per_article(articles)
        if len(values) != len(rows):
            raise ValueError(f"metric {metric.name} returned {len(values)} rows for {len(rows)} articles")
        for row, v in zip(rows, values, strict=True):
            row.update(v)
    return rows


def summarize(metrics: list[Metric], rows: list[dict], seed: int = 0, resamples: int = 1000) -> dict[str, dict]:
    """Per score: the mean over articles and its 95% bootstrap interval (scores some article lacks left out),
    with the metric's own extra figures."""
    out = {}
    for metric in metrics:
        extra = metric.summary(rows) if metric.summary and rows else {}
        for s in metric.scores:
            if not rows or any(row.get(s.key) is None for row in rows):
                continue
            values = [row[s.key] for row in rows]
            low, high = bootstrap_ci(values, seed, resamples)
            out[s.key] = {"mean": float(np.mean(values)), "ci95": [low, high], **extra.get(s.key, {})}
    return out
