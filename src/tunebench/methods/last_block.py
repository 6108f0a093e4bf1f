"""Partial fine-tuning: the last N transformer blocks, the final norm and an *untied* LM head.

Training a head tied to the input embedding would also train the embedding (ANCHORS' 45.7M row);
we untie it first so the embedding stays frozen, and report the parameters the new head adds.
"""

from __future__ import annotations

from torch import nn

from tunebench.config import Config
from tunebench.errors import TunebenchError
from tunebench.layers import final_norm, transformer_blocks
from tunebench.methods.base import TunedModel, freeze


def untie_head(lm: nn.Module) -> int:
    """Give the LM head its own copy of the weights; returns the parameters this adds (0 if untied already)."""
    head, embedding = lm.get_output_embeddings(), lm.get_input_embeddings()
    if head.weight is not embedding.weight:
        return 0
    head.weight = nn.Parameter(embedding.weight.detach().clone())
    lm.config.tie_word_embeddings = False  # so a later tie_weights() call cannot re-tie them
    return head.weight.numel()


def apply(lm: nn.Module, cfg: Config, tokenizer) -> TunedModel:
    lb = cfg.method.last_block
    freeze(lm)
    blocks = transformer_blocks(lm)
    if lb.num_blocks > len(blocks):
        raise TunebenchError(f"method.last_block.num_blocks={lb.num_blocks} but the model has {len(blocks)} blocks")
    trained = list(blocks[-lb.num_blocks:])
    if lb.train_final_norm:
        norm = final_norm(lm)
        if norm is None:
            raise TunebenchError(f"cannot find the final norm of {type(lm).__name__}; "
                                 "set method.last_block.train_final_norm=false")
        trained.append(norm)
    added = 0
    if lb.train_head:
        added = untie_head(lm)
        trained.append(lm.get_output_embeddings())
    for module in trained:
        for param in module.parameters():
            param.requires_grad_(True)
    tuned = TunedModel(lm)
    tuned.extra["head_params_added"] = added
    return tuned


def describe(cfg: Config) -> dict:
    lb = cfg.method.last_block
    return {"num_blocks": lb.num_blocks, "train_final_norm": lb.train_final_norm, "train_head": lb.train_head,
            "head_untied": lb.train_head}
