"""Data: sources of article/summary pairs, seeded splits, tokenisation with label masking."""

from tunebench.data.sources import Example, load_examples
from tunebench.data.split import Splits, make_splits

__all__ = ["Example", "Splits", "load_examples", "make_splits"]
