"""What every method produces: a TunedModel, i.e. a causal LM with (optionally) a learned input prefix.

The training loop, validation and generation only ever talk to a TunedModel, so no code outside a
method's own module knows which method is running.
"""

from __future__ import annotations

import torch
from torch import nn


class TunedModel(nn.Module):
    """A Hugging Face causal LM plus an optional module that prepends learned input embeddings."""

    def __init__(self, lm: nn.Module, prefix: nn.Module | None = None):
        super().__init__()
        self.lm = lm
        self.prefix = prefix
        self.extra: dict[str, int] = {}  # method facts for the report, e.g. parameters an untied head adds

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings (with the learned prefix in front, if any) and the matching attention mask."""
        embeds = self.lm.get_input_embeddings()(input_ids)
        if self.prefix is None:
            return embeds, attention_mask
        prefix = self.prefix(input_ids.shape[0]).to(embeds.dtype)
        ones = attention_mask.new_ones(prefix.shape[:2])
        return torch.cat([prefix, embeds], dim=1), torch.cat([ones, attention_mask], dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0) -> torch.Tensor:
        """Logits for the last `logits_to_keep` positions (0: all). Positions count real tokens only."""
        embeds, mask = self.embed(input_ids, attention_mask)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids,
                      logits_to_keep=int(logits_to_keep), use_cache=False)
        return out.logits

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, generation_config) -> torch.Tensor:
        """KV-cached generation from embeddings; returns the new tokens only (no prompt)."""
        embeds, mask = self.embed(input_ids, attention_mask)
        return self.lm.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=generation_config)


def freeze(module: nn.Module) -> None:
    for param in module.parameters():
        param.requires_grad_(False)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a method trains, by name: what is saved on disk and what the best checkpoint holds."""
    return {name: p.detach().cpu().clone().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable tensors back in; the names must match the method's trainable set exactly."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(f"saved weights do not match the method: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(state[name].to(param.dtype))
