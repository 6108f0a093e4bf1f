"""DoRA (Liu et al. 2024) through PEFT: LoRA's low-rank direction update plus a learned magnitude per output
of every target layer (`use_dora`). Its settings are LoRA's."""

from __future__ import annotations

from dataclasses import dataclass

from tunebench.methods import lora


@dataclass
class Settings(lora.Settings):
    """LoRA's settings; the magnitude vectors start at the norms of the frozen weights' columns."""


def check(lm, settings: Settings) -> None:
    """The targets match at least one layer of one kind (Linear or Conv1D)."""
    lora.peft_config(lm, settings, "method.dora", use_dora=True)


def apply(lm, settings: Settings, tokenizer):
    from tunebench.methods.adapters import inject

    return inject(lm, lora.peft_config(lm, settings, "method.dora", use_dora=True))


export = lora.export
merge = lora.merge
