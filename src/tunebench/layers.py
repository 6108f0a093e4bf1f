"""Where the parts of a Hugging Face causal LM are: its stack of blocks and the norm after it.

Found by shape, not by class name, so the same code serves GPT-2 (`transformer.h`, `ln_f`),
Llama/SmolLM2 (`model.layers`, `norm`) and most other decoder-only models.
"""

from __future__ import annotations

from torch import nn

from tunebench.errors import TunebenchError


def transformer_blocks(lm: nn.Module) -> nn.ModuleList:
    """The model's stack of blocks: the ModuleList as long as `num_hidden_layers`."""
    depth = lm.config.num_hidden_layers
    for _, module in lm.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise TunebenchError(f"cannot find the transformer blocks of {type(lm).__name__} for last-block tuning")


def final_norm(lm: nn.Module) -> nn.Module | None:
    """The norm after the last block (GPT-2 `ln_f`, Llama `norm`): a direct child of the base model."""
    for module in lm.base_model.children():
        if "Norm" in type(module).__name__:
            return module
    return None
