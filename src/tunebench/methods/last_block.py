"""Partial fine-tuning: the last N transformer blocks, the final norm and an *untied* LM head.

Training a head tied to the input embedding would also train the embedding (ANCHORS' 45.7M row);
we untie it first so the embedding stays frozen, and report the parameters the new head adds.
"""

from __future__ import annotations

from torch import nn

from tunebench.config import Config
from tunebench.errors import TunebenchError
from tunebench.methods.base import TunedModel, freeze


def transformer_blocks(lm: nn.Module) -> nn.ModuleList:
    """The model's stack of blocks: the ModuleList as long as `num_hidden_layers`."""
    depth = lm.config.num_hidden_layers
    for _, module in lm.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise TunebenchError(f"cannot find the transformer blocks of {type(lm).__name__} for last-block tuning")


def final_norm(lm: nn.Module) -> nn.Module:
    """The norm after the last block (GPT-2 `ln_f`, Llama `norm`): a direct child of the base model."""
    for module in lm.base_model.children():
        if "Norm" in type(module).__name__:
            return module
    raise TunebenchError(f"cannot find the final norm of {type(lm).__name__}; "
                         "set method.last_block.train_final_norm=false")


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
        trained.append(final_norm(lm))
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
