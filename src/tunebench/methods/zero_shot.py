"""The zero-shot baseline: the base model, untrained, with the same prompt as every method."""

from __future__ import annotations

from torch import nn

from tunebench.config import Config
from tunebench.methods.base import TunedModel, freeze


def apply(lm: nn.Module, cfg: Config, tokenizer) -> TunedModel:
    freeze(lm)
    return TunedModel(lm)


def describe(cfg: Config) -> dict:
    return {}
