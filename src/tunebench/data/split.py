"""Seeded train/validation/test selection whose ids are stored in every run."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tunebench.config import DataConfig
from tunebench.data.sources import Example, LoadedSource
from tunebench.errors import TunebenchError


@dataclass
class Splits:
    train: list[Example]
    val: list[Example]
    test: list[Example]
    reserve: list[Example] = field(default_factory=list)
    """Further test articles, in the same seeded order the test articles came from, none of them a training or
    validation pair: what sequential evaluation (eval.decide) scores when the first look cannot decide."""

    def ids(self) -> dict[str, list[str]]:
        return {name: [ex.id for ex in getattr(self, name)] for name in ("train", "val", "test")}

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("train", "val", "test")}


def _shuffled(examples: list[Example], seed: int) -> list[Example]:
    order = sorted(examples, key=lambda ex: ex.id)  # independent of the source's row order
    random.Random(seed).shuffle(order)
    return order


def make_splits(examples: list[Example], n_val: int, n_test: int, seed: int, max_train: int | None = None) -> Splits:
    """Shuffle with `seed`; test from the front, validation from the back, training pairs in between.

    Taking test and validation from opposite ends keeps each one fixed when the other's size changes.
    """
    if n_val + n_test >= len(examples):
        raise TunebenchError(f"data.n_val ({n_val}) + data.n_test ({n_test}) leave no training pairs out of "
                             f"{len(examples)}; lower them")
    order = _shuffled(examples, seed)
    test, val = order[:n_test], order[len(order) - n_val:]
    train = order[n_test:len(order) - n_val]
    if max_train is None:
        return Splits(train=train, val=val, test=test)
    return Splits(train=train[:max_train], val=val, test=test, reserve=train[max_train:])


REASONS = {"undecodable bytes": "not UTF-8", "empty article": "with an empty article",
           "empty summary": "with an empty summary", "article too short": "with an article shorter than "
           "data.min_article_words", "duplicate": "duplicates"}
"""A reason a row was skipped (sources.parse_rows), in words for a message."""


def check_rows_kept(loaded: LoadedSource, source: str) -> None:
    """A source whose every row was skipped says so, with the reasons, instead of a count of zero pairs."""
    if any(split.examples for split in loaded.splits.values()):
        return
    read = sum(split.rows_read for split in loaded.splits.values())
    if not read:
        raise TunebenchError(f"data source '{source}' holds no rows; give a file with article/summary pairs")
    skipped: dict[str, int] = {}
    for split in loaded.splits.values():
        for reason, count in split.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
    why = ", ".join(f"{count} {REASONS.get(reason, reason)}" for reason, count in skipped.items())
    raise TunebenchError(f"all {read} rows of data source '{source}' were skipped: {why}; fix the file or its "
                         "data.* settings")


def select_splits(loaded: LoadedSource, cfg: DataConfig) -> Splits:
    """The source's own splits where it has them (a missing validation split is carved from train), else a seeded
    split of all pairs; then the caps."""
    check_rows_kept(loaded, cfg.source)
    parts = {name: split.examples for name, split in loaded.splits.items()}
    if "train" not in parts and ("test" in parts or "val" in parts):
        named = ", ".join(name for name in ("val", "test", "all") if name in parts)
        raise TunebenchError(f"data source '{cfg.source}' has split files ({named}) but no train split; add a "
                             "train* file, or give one file to split")
    if "train" not in parts:
        pool = [ex for name in ("all", "val", "test") for ex in parts.get(name, [])]
        return make_splits(pool, cfg.n_val, cfg.n_test, cfg.seed, cfg.max_train)
    if "test" not in parts:
        raise TunebenchError(f"data source '{cfg.source}' has a train split but no test split; add test* files "
                             "or give one file to split")
    train = _shuffled(parts["train"], cfg.seed)
    if "val" in parts:
        val = _shuffled(parts["val"], cfg.seed)[:cfg.n_val]
    else:
        val, train = train[len(train) - cfg.n_val:] if cfg.n_val else [], train[:len(train) - cfg.n_val]
    if not train:
        raise TunebenchError(f"data source '{cfg.source}' leaves no training pairs; lower data.n_val or add data")
    test = _shuffled(parts["test"], cfg.seed)
    return Splits(train=train[:cfg.max_train] if cfg.max_train is not None else train, val=val,
                  test=test[:cfg.n_test], reserve=test[cfg.n_test:])


def test_split(loaded: LoadedSource, cfg: DataConfig, exclude: set[str] | None = None) -> Splits:
    """Test articles only, to score an already trained method on other data: the source's test split if it has
    one, else all its pairs, without the ids in `exclude` (the pairs a run trained and validated on, when it is
    scored on its own source); a seeded shuffle, the first `n_test`."""
    parts = {name: split.examples for name, split in loaded.splits.items()}
    pool = parts.get("test") or [ex for part in parts.values() for ex in part]
    check_rows_kept(loaded, cfg.source)
    pool = [ex for ex in pool if ex.id not in (exclude or set())]
    if not pool:
        raise TunebenchError(f"data source '{cfg.source}' has no usable article/summary pairs"
                             + (" that the run did not train or validate on" if exclude else ""))
    return Splits(train=[], val=[], test=_shuffled(pool, cfg.seed)[:cfg.n_test])
