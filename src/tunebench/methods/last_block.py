"""Partial fine-tuning: the last N transformer blocks, the final norm and an *untied* LM head.

Training a head tied to the input embedding would also train the embedding (GPT-2's 45.7M count);
we untie it first so the embedding stays frozen, and report the parameters the new head adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunebench.errors import require_at_least
from tunebench.methods import MethodSettings


@dataclass
class Settings(MethodSettings):
    lr_range: list[float] = field(default_factory=lambda: [1e-5, 1e-3])
    num_blocks: int = 1
    """How many of the top transformer blocks train."""
    train_final_norm: bool = True
    """Train the norm after the last block."""
    train_head: bool = True
    """Train the LM head; a tied head is untied first so the input embedding stays frozen."""

    def check(self, key: str) -> None:
        require_at_least(f"{key}.num_blocks", self.num_blocks, 1)


def untie_head(lm) -> int:
    """Give the LM head its own copy of the weights; returns the parameters this adds (0 if untied already)."""
    from torch import nn

    head, embedding = lm.get_output_embeddings(), lm.get_input_embeddings()
    if head.weight is not embedding.weight:
        return 0
    head.weight = nn.Parameter(embedding.weight.detach().clone())
    lm.config.tie_word_embeddings = False  # so a later tie_weights() call cannot re-tie them
    return head.weight.numel()


def check(lm, settings: Settings) -> None:
    """The model has at least `num_blocks` blocks, and a final norm if it is to train."""
    from tunebench.errors import TunebenchError
    from tunebench.layers import final_norm, transformer_blocks

    blocks = transformer_blocks(lm)
    if settings.num_blocks > len(blocks):
        raise TunebenchError(f"method.last_block.num_blocks={settings.num_blocks} but the model has {len(blocks)} "
                             f"blocks; set it to at most {len(blocks)}")
    if settings.train_final_norm and final_norm(lm) is None:
        raise TunebenchError(f"cannot find the final norm of {type(lm).__name__}; "
                             "set method.last_block.train_final_norm=false")


def apply(lm, settings: Settings, tokenizer):
    from tunebench.layers import final_norm, transformer_blocks
    from tunebench.methods.base import TunedModel, freeze

    check(lm, settings)
    freeze(lm)
    trained = list(transformer_blocks(lm)[-settings.num_blocks:])
    if settings.train_final_norm:
        trained.append(final_norm(lm))
    added = untie_head(lm) if settings.train_head else 0
    if settings.train_head:
        trained.append(lm.get_output_embeddings())
    for module in trained:
        for param in module.parameters():
            param.requires_grad_(True)
    tuned = TunedModel(lm)
    tuned.facts["head_params_added"] = added
    if added:
        tuned.notes.append(f"the LM head was untied from the input embedding (which stays frozen); the trained head "
                           f"adds {added:,} parameters to the model.")
    return tuned
