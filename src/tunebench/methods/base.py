"""What every method produces: a TunedModel, i.e. a causal LM with (optionally) a learned input prefix.

The training loop, validation and generation only ever talk to a TunedModel, so no code outside a
method's own module knows which method is running.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from tunebench.errors import TunebenchError
from tunebench.layers import final_norm, transformer_blocks


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the frozen blocks' output is in hand."""


class UnsupportedTrunk(Exception):
    """The model's blocks return something other than a hidden-states tensor: their output cannot be replayed."""


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

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0,
                trunk_states: torch.Tensor | None = None, select: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for the last `logits_to_keep` positions (0: all). Positions count real tokens only.

        `select`: flat indices into the (batch, logits_to_keep) grid of positions; the LM head then runs only there
        and the result is (len(select), vocab) (a row's short summary wastes no head work).
        `trunk_states`: the output of the first `frozen_depth()` blocks for this batch, computed earlier by
        `trunk_output`; those blocks are then skipped (their result cannot have changed: nothing in them trains).
        """
        embeds, mask = self.embed(input_ids, attention_mask)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
        with self._replaying(trunk_states), self._selecting(select):
            out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids,
                          logits_to_keep=int(logits_to_keep), use_cache=False)
        return out.logits

    @contextmanager
    def _selecting(self, select: torch.Tensor | None) -> Iterator[None]:
        """Inside: the LM head's input is cut to the selected positions. Whatever the model does after its head
        (e.g. logit soft-capping) is elementwise, so it applies unchanged to the selected rows."""
        if select is None:
            yield
            return
        handle = self.lm.get_output_embeddings().register_forward_pre_hook(
            lambda module, args: (args[0].flatten(0, 1).index_select(0, select), *args[1:]))
        try:
            yield
        finally:
            handle.remove()

    def frozen_depth(self) -> int:
        """How many leading blocks compute nothing that trains, with nothing trained before them.

        Their output depends on the input tokens only, so it can be computed once and reused (issue 6). 0 when
        the input side trains (a learned prefix, the embedding) or the model's blocks cannot be found.
        """
        trainable = {id(p) for p in self.parameters() if p.requires_grad}
        if self.prefix is not None or not trainable or self.lm.get_input_embeddings().weight.requires_grad:
            return 0
        try:
            blocks = transformer_blocks(self.lm)
        except TunebenchError:
            return 0
        depth = next((i for i, block in enumerate(blocks) if any(p.requires_grad for p in block.parameters())),
                     len(blocks))
        known = {id(p) for module in self._upper_part(blocks, 0) for p in module.parameters()}
        return 0 if trainable - known else depth  # something trains that we cannot place: no shortcut

    def _upper_part(self, blocks: nn.ModuleList, depth: int) -> list[nn.Module]:
        """The blocks from `depth` up, the final norm and the LM head: what may train above a frozen trunk."""
        return [*blocks[depth:], *(m for m in (final_norm(self.lm), self.lm.get_output_embeddings()) if m is not None)]

    def train(self, mode: bool = True) -> TunedModel:
        """Training mode, except that the frozen lower blocks stay deterministic (no dropout where nothing trains),
        so their output is the same function of the input in every epoch and can be cached."""
        super().train(mode)
        depth = self.frozen_depth() if mode else 0
        if depth:
            self.lm.eval()
            for module in self._upper_part(transformer_blocks(self.lm), depth):
                module.train()
        return self

    @torch.no_grad()
    def trunk_output(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states leaving the frozen blocks (the input of the first trained one); the rest is not run.

        Raises UnsupportedTrunk for models whose blocks return tuples (transformers 5's GPT-2, Llama and most
        decoder-only models return a tensor): `_replaying` could not stand in for them faithfully.
        """
        depth = self.frozen_depth()
        if not depth:
            raise ValueError("this model has no frozen lower blocks to compute once")
        captured: list[torch.Tensor] = []

        def stop(module, args, output):
            if not torch.is_tensor(output):
                raise UnsupportedTrunk(f"{type(module).__name__} returns {type(output).__name__}, not a tensor")
            captured.append(output)
            raise _StopForward

        handle = transformer_blocks(self.lm)[depth - 1].register_forward_hook(stop)
        try:
            self.forward(input_ids, attention_mask, logits_to_keep=1)
        except _StopForward:
            pass
        finally:
            handle.remove()
        return captured[0]

    @contextmanager
    def _replaying(self, states: torch.Tensor | None) -> Iterator[None]:
        """Inside: the frozen blocks pass their input through, and the last one returns `states` instead."""
        if states is None:
            yield
            return
        frozen = list(transformer_blocks(self.lm)[:self.frozen_depth()])

        def skip(hidden_states, *args, **kwargs):
            return hidden_states

        def give(hidden_states, *args, **kwargs):
            return states.to(hidden_states.dtype)

        for block in frozen:
            block.forward = give if block is frozen[-1] else skip  # an instance attribute shadows the method
        try:
            yield
        finally:
            for block in frozen:
                del block.forward

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
