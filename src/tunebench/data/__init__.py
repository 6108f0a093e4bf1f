"""Data: sources of article/summary pairs, seeded splits, tokenisation with label masking."""

from tunebench.data.sources import Example, LoadedSource, load_examples
from tunebench.data.split import Splits, make_splits, select_splits, test_split

__all__ = ["Example", "LoadedSource", "Splits", "load_examples", "make_splits", "select_splits", "test_split"]
