"""A deterministic, seeded train/validation/test split whose ids are stored in every run."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tunebench.data.sources import Example
from tunebench.errors import TunebenchError


@dataclass
class Splits:
    train: list[Example]
    val: list[Example]
    test: list[Example]

    def ids(self) -> dict[str, list[str]]:
        return {name: [ex.id for ex in getattr(self, name)] for name in ("train", "val", "test")}

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("train", "val", "test")}


def make_splits(examples: list[Example], n_val: int, n_test: int, seed: int,
                max_train: int | None = None, fraction: float = 1.0) -> Splits:
    """Shuffle with `seed`; test from the front, validation from the back, training pairs in between.

    Taking test and validation from opposite ends keeps each one fixed when the other's size changes.
    """
    if n_val + n_test >= len(examples):
        raise TunebenchError(f"data.n_val ({n_val}) + data.n_test ({n_test}) leave no training pairs out of "
                             f"{len(examples)}; lower them")
    order = sorted(examples, key=lambda ex: ex.id)  # independent of the source's row order
    random.Random(seed).shuffle(order)
    test, val = order[:n_test], order[len(order) - n_val:]
    train = order[n_test:len(order) - n_val]
    train = train[:max(1, round(len(train) * fraction))]
    if max_train is not None:
        train = train[:max_train]
    return Splits(train=train, val=val, test=test)
