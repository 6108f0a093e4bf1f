"""The zero-shot baseline: the base model, untrained, with the same prompt as every method."""

from __future__ import annotations


def apply(lm, settings, tokenizer):
    from tunebench.methods.base import TunedModel, freeze

    freeze(lm)
    return TunedModel(lm)
