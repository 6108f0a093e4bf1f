"""tunebench: fine-tune causal LMs for summarization with several methods under one budget, and compare."""

__version__ = "0.1.0"
