"""The contract between the methods and everything else: a TunedModel.

A method hands back a TunedModel: the causal LM with everything frozen except what the method trains, plus at
most two things the method may put in front of every prompt. The training loop, validation and generation only
ever talk to a TunedModel, so no code outside a method's own module knows which method is running.

- `prefix`: a module giving (batch, n, hidden) learned input embeddings, prepended to the token embeddings
  (prompt tuning); positions count from the first of them.
- `kv_prefix`: a module giving (batch, n, layers * 2 * kv_width) learned keys and values, in PEFT's prefix-tuning
  layout; they enter every attention layer as a cache of `n` positions (prefix tuning).
- `facts`: numbers the method wants in the results (`params` of its record), e.g. parameters it added.
- `notes`: sentences about what it did for the report, e.g. "this model has no biases: norm weights trained".

Blocks below the first trained one are a frozen trunk: `frozen_depth` below finds them, `replaying` lets a
forward pass take their output from elsewhere, and `trunk_cache.py` runs them once per example instead of once per
step (the contract is here; the cache, which needs the TunedModel, is there).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn
from transformers import StoppingCriteriaList

from tunebench import distributed
from tunebench.errors import TunebenchError
from tunebench.layers import final_norm, transformer_blocks


def frozen_depth(model: TunedModel) -> int:
    """How many leading blocks compute nothing that trains, with nothing trained before them.

    Their output depends on the input tokens only, so it can be computed once and reused. 0 when anything trains
    below or beside the blocks (a learned prompt or key/value prefix, the embedding, an adapter in the first block)
    or the model's blocks cannot be found.
    """
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if not trainable or model.lm.get_input_embeddings().weight.requires_grad:
        return 0
    try:
        blocks = transformer_blocks(model.lm)
    except TunebenchError:
        return 0
    depth = next((i for i, block in enumerate(blocks) if any(p.requires_grad for p in block.parameters())),
                 len(blocks))
    known = {id(p) for module in upper_part(model, blocks, 0) for p in module.parameters()}
    return 0 if trainable - known else depth  # something trains that we cannot place: no shortcut


def upper_part(model: TunedModel, blocks, depth: int) -> list[torch.nn.Module]:
    """The blocks from `depth` up, the final norm and the LM head: what may train above a frozen trunk."""
    lm = model.lm
    return [*blocks[depth:], *(m for m in (final_norm(lm), lm.get_output_embeddings()) if m is not None)]


def keep_trunk_deterministic(model: TunedModel) -> None:
    """After `model.train()`: the frozen trunk back in eval mode (no dropout where nothing trains)."""
    depth = frozen_depth(model)
    if depth:
        model.lm.eval()
        for module in upper_part(model, transformer_blocks(model.lm), depth):
            module.train()


@contextmanager
def replaying(model: TunedModel, states: torch.Tensor | None) -> Iterator[None]:
    """Inside: the frozen blocks pass their input through, and the last one returns `states` instead."""
    if states is None:
        yield
        return
    frozen = list(transformer_blocks(model.lm)[:frozen_depth(model)])

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



def _after_prefix(layer, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
    """A fixed cache layer's update: the prefix, then this forward's keys/values, nothing stored."""
    return torch.cat([layer.keys, key_states], dim=-2), torch.cat([layer.values, value_states], dim=-2)


class LearnedRows(nn.Module):
    """`weight` (n, width): trainable rows, the same for every sequence of a batch."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.weight.unsqueeze(0).expand(batch_size, -1, -1)


class TunedModel(nn.Module):
    """A Hugging Face causal LM plus what a method puts in front of the prompt (see the module docstring)."""

    def __init__(self, lm: nn.Module, prefix: nn.Module | None = None, kv_prefix: nn.Module | None = None):
        super().__init__()
        self.lm = lm
        self.prefix = prefix
        self.kv_prefix = kv_prefix
        self.facts: dict[str, int | str] = {}
        self.notes: list[str] = []

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings (with the learned prompt in front, if any) and the matching attention mask."""
        embeds = self.lm.get_input_embeddings()(input_ids)
        if self.prefix is None:
            return embeds, attention_mask
        prefix = self.prefix(input_ids.shape[0]).to(embeds.dtype)
        ones = attention_mask.new_ones(prefix.shape[:2])
        return torch.cat([prefix, embeds], dim=1), torch.cat([ones, attention_mask], dim=1)

    def prefix_cache(self, batch_size: int, dtype: torch.dtype, fixed: bool = False):
        """The learned keys/values as a cache for `batch_size` sequences (None without a kv prefix). `fixed`: for
        one forward pass (training, scoring): the cache keeps the prefix only, each block's keys/values go after it
        without being stored, so a block recomputed by activation checkpointing finds the cache as it was."""
        if self.kv_prefix is None:
            return None
        from transformers import DynamicCache

        rows = self.kv_prefix(batch_size).to(dtype)
        config = self.lm.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        layers = config.num_hidden_layers
        # PEFT's layout: (batch, n, 2 * layers, heads, head_dim) -> per layer (batch, heads, n, head_dim)
        kv = rows.view(batch_size, rows.shape[1], 2 * layers, heads, -1).permute(2, 0, 3, 1, 4)
        cache = DynamicCache(config=config)
        for layer in range(layers):
            cache.update(kv[2 * layer], kv[2 * layer + 1], layer)
        if fixed:
            for layer in cache.layers:
                layer.update = partial(_after_prefix, layer)  # an instance attribute shadows the method
        return cache

    def prefix_length(self) -> int:
        return 0 if self.kv_prefix is None else self.kv_prefix.weight.shape[0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int = 0,
                trunk_states: torch.Tensor | None = None, select: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for the last `logits_to_keep` positions (0: all). Positions count real tokens only.

        `select`: flat indices into the (batch, logits_to_keep) grid of positions; the LM head then runs only there
        and the result is (len(select), vocab) (a row's short summary wastes no head work).
        `trunk_states`: the output of the frozen trunk for this batch (trunk_cache.py); those blocks are then skipped.
        """
        embeds, mask = self.embed(input_ids, attention_mask)
        cache = self.prefix_cache(input_ids.shape[0], embeds.dtype, fixed=True)
        if cache is not None:
            mask = torch.cat([mask.new_ones(mask.shape[0], self.prefix_length()), mask], dim=1)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)[:, -embeds.shape[1]:]  # left padding shifts nothing
        with replaying(self, trunk_states), self._selecting(select):
            out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, cache=cache,
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
        """How many leading blocks compute nothing that trains, with nothing trained before them (`frozen_depth`)."""
        return frozen_depth(self)

    def train(self, mode: bool = True) -> TunedModel:
        """Training mode, except that a frozen trunk stays deterministic (no dropout where nothing trains), so its
        output is the same function of the input in every epoch and can be cached."""
        super().train(mode)
        if mode:
            keep_trunk_deterministic(self)
        return self

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, generation_config,
                 stopping_criteria: list | None = None) -> torch.Tensor:
        """KV-cached generation from embeddings; returns the new tokens only (no prompt).

        Sharded (train.fsdp): every rank runs each decoding step's forward until every rank is done (transformers'
        `synced_gpus`), with this model's outermost parameters gathered, since generation works below `forward`."""
        with distributed.root_gathered(self):
            return self._generate(input_ids, attention_mask, generation_config, stopping_criteria,
                                  synced=distributed.is_sharded_model(self))

    def _generate(self, input_ids, attention_mask, generation_config, stopping_criteria, synced: bool):
        embeds, mask = self.embed(input_ids, attention_mask)
        extra = {}
        if self.kv_prefix is not None:
            # generate() takes inputs_embeds as the whole sequence, cached part included: stand-ins for the n cached
            # positions go in front (generate drops them) and the mask covers them. Beams share one cache row each.
            rows = input_ids.shape[0] * max(generation_config.num_beams or 1, 1)
            extra["cache"] = self.prefix_cache(rows, embeds.dtype)
            n = self.prefix_length()
            embeds = torch.cat([embeds.new_zeros(embeds.shape[0], n, embeds.shape[2]), embeds], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], n), mask], dim=1)
        if stopping_criteria:
            extra["stopping_criteria"] = StoppingCriteriaList(stopping_criteria)
        return self.lm.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=generation_config,
                                synced_gpus=synced, **extra)


def freeze(module: nn.Module) -> None:
    for param in module.parameters():
        param.requires_grad_(False)


def trainable_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor | None]]:
    """(name, whole tensor on the host) of each tensor a method trains, one at a time; None on ranks other than the
    writer (which writes them): under FSDP every rank takes part in gathering each sharded tensor and the others
    drop it at once, so no rank but the writer holds a whole one."""
    for name, p in model.named_parameters():
        if p.requires_grad:
            whole = distributed.full(p.detach())
            yield name, whole.cpu().clone().contiguous() if distributed.is_writer() else None


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a method trains, by name, whole: what is saved on disk and what the best checkpoint holds (on
    the writer; empty elsewhere)."""
    return {name: tensor for name, tensor in trainable_tensors(model) if tensor is not None}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable tensors back in; the names must match the method's trainable set exactly."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(f"saved weights do not match the method: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, param in params.items():  # a sharded parameter (DTensor) reports its whole shape
        if tuple(state[name].shape) != tuple(param.shape):
            raise ValueError(f"saved tensor {name} has shape {tuple(state[name].shape)} but the method's has "
                             f"{tuple(param.shape)}: the run's settings no longer match its weights")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(distributed.like(state[name].to(param.dtype), param))
