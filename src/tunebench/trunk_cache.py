"""Frozen-trunk cache: the hidden states leaving the frozen lower blocks, computed once, reused every epoch.

When only the top of a model trains (last-block tuning), everything below the first trained block is a
fixed function of the input tokens: `TunedModel.train()` keeps it deterministic (no dropout) and nothing
in it has gradients. Its output for each example is computed once, stored (a memory-mapped file when a
folder is given, keyed by the frozen weights, the examples and the precision, else in memory), and fed to
the trained blocks in every later step and epoch, so neither the forward nor the backward pass enters the
frozen part again. Methods that train something at the input (prompt tuning, LoRA on every block) have
`frozen_depth() == 0` and never use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import torch
import transformers

from tunebench.data.format import Encoded, left_pad
from tunebench.files import atomic_write_json
from tunebench.layers import transformer_blocks
from tunebench.methods.base import TunedModel, frozen_depth
from tunebench.runtime import Runtime

CACHE_VERSION = 1
"""Part of every cache key: raise it when what is stored, or how the frozen part is run, changes."""


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the frozen blocks' output is in hand."""


class UnsupportedTrunk(Exception):
    """The model's blocks return something other than a hidden-states tensor: their output cannot be replayed."""


@torch.no_grad()
def trunk_output(model: TunedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states leaving the frozen blocks (the input of the first trained one); the rest is not run.

    Raises UnsupportedTrunk for models whose blocks return tuples (transformers 5's GPT-2, Llama and most
    decoder-only models return a tensor): `replaying` could not stand in for them faithfully.
    """
    depth = frozen_depth(model)
    if not depth:
        raise ValueError("this model has no frozen lower blocks to compute once")
    captured: list[torch.Tensor] = []

    def stop(module, args, output):
        if not torch.is_tensor(output):
            raise UnsupportedTrunk(f"{type(module).__name__} returns {type(output).__name__}, not a tensor")
        captured.append(output)
        raise _StopForward

    handle = transformer_blocks(model.lm)[depth - 1].register_forward_hook(stop)
    try:
        model(input_ids, attention_mask, logits_to_keep=1)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured[0]


@dataclass
class TrunkStates:
    """Per-example hidden states (one row per real token), stored back to back in `store`."""

    store: torch.Tensor
    """(total tokens, hidden size); a memory-mapped file or an in-memory tensor."""
    offsets: list[int]
    lengths: list[int]
    facts: dict = field(default_factory=dict)

    def batch(self, indices: list[int], width: int) -> torch.Tensor:
        """Left-padded (len(indices), width, hidden) states aligned with `collate`'s rows; zeros at padding."""
        out = torch.zeros(len(indices), width, self.store.shape[1], dtype=self.store.dtype)
        for row, i in enumerate(indices):
            n = self.lengths[i]
            out[row, width - n:] = self.store[self.offsets[i]:self.offsets[i] + n]
        return out


def fingerprint(model: TunedModel, examples: list[Encoded], runtime: Runtime, depth: int) -> str:
    """Key of a cache entry: everything the frozen blocks' output depends on.

    That is every frozen tensor outside the trained blocks (weights and buffers such as rotary frequencies,
    with their dtypes and shapes), the model's class and configuration, the token ids of every example, the
    precision and device type, the library versions and this cache's format version.
    """
    digest = hashlib.sha1(usedforsecurity=False)  # a fingerprint, not a security boundary; ~2x blake2b here
    digest.update(f"{CACHE_VERSION}|{depth}|{runtime.precision}|{runtime.device.split(':')[0]}|{torch.__version__}|"
                  f"{transformers.__version__}|{type(model.lm).__name__}|".encode())
    digest.update(model.lm.config.to_json_string().encode())
    trained_blocks = {id(t) for block in transformer_blocks(model.lm)[depth:] for t in
                      [*block.parameters(), *block.buffers()]}
    tensors = [*model.lm.named_parameters(), *model.lm.named_buffers()]
    for name, tensor in tensors:
        if id(tensor) in trained_blocks or tensor.requires_grad:
            continue
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
    for ex in examples:
        digest.update(torch.tensor(ex.prompt_ids + ex.target_ids + [-1], dtype=torch.int64).numpy().tobytes())
    return digest.hexdigest()


def _open(path: Path, count: int, dtype: torch.dtype, writable: bool) -> torch.Tensor:
    if writable:
        with open(path, "wb") as handle:
            handle.truncate(count * torch.empty((), dtype=dtype).element_size())
    return torch.from_file(str(path), shared=writable, size=count, dtype=dtype)


def build_trunk_states(model: TunedModel, examples: list[Encoded], batch_size: int, pad_id: int, runtime: Runtime,
                       folder: Path | None = None) -> TrunkStates | None:
    """Compute (or reuse from `folder`) the frozen blocks' output for every example; None if nothing is frozen.

    Without a folder, or when its disk is too small, the states are kept in memory if they fit in a quarter of
    the available RAM; otherwise the cache is skipped (training then recomputes the frozen part, still correct).
    """
    depth = model.frozen_depth()
    if not depth or not examples:
        return None
    tick = time.perf_counter()
    hidden = model.lm.config.hidden_size  # GPT-2's config maps it to n_embd
    lengths = [len(ex) for ex in examples]
    offsets = [0]
    for n in lengths[:-1]:
        offsets.append(offsets[-1] + n)
    total = sum(lengths)
    dtype = next(model.lm.parameters()).dtype  # the residual stream's dtype (fp32 master weights, also under autocast)
    size = total * hidden * torch.empty((), dtype=dtype).element_size()
    facts = {"frozen_blocks": depth, "bytes": size, "dtype": str(dtype).removeprefix("torch.")}

    entry = None
    if folder is not None:
        entry = folder / fingerprint(model, examples, runtime, depth)
        meta = entry / "meta.json"
        if meta.exists() and json.loads(meta.read_text()).get("count") == total * hidden:
            store = _open(entry / "states.bin", total * hidden, dtype, writable=False).view(total, hidden)
            return TrunkStates(store, offsets, lengths, {**facts, "where": "disk", "reused": True,
                                                          "build_s": time.perf_counter() - tick})
        folder.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(folder).free < 2 * size + 2**30:
            entry = None
    if entry is not None:
        shutil.rmtree(entry, ignore_errors=True)
        entry.mkdir(parents=True)
        store = _open(entry / "states.bin", total * hidden, dtype, writable=True).view(total, hidden)
    elif size < psutil.virtual_memory().available / 4:
        store = torch.empty(total, hidden, dtype=dtype)
    else:
        return None

    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: lengths[i])  # similar lengths together: little padding
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            ids, mask = left_pad([examples[i].prompt_ids + examples[i].target_ids for i in chunk], pad_id)
            with runtime.autocast():
                states = trunk_output(model, ids.to(runtime.device), mask.to(runtime.device)).to("cpu", dtype)
            for row, i in enumerate(chunk):
                store[offsets[i]:offsets[i] + lengths[i]] = states[row, states.shape[1] - lengths[i]:]
    except UnsupportedTrunk:
        if entry is not None:
            shutil.rmtree(entry, ignore_errors=True)
        return None  # such a model trains without the cache: same result, frozen part recomputed
    finally:
        model.train(was_training)
    if entry is not None:
        with open(entry / "states.bin", "rb") as handle:
            os.fsync(handle.fileno())  # the states on disk before the marker that says they are complete
        atomic_write_json(entry / "meta.json", {"count": total * hidden, "examples": len(examples),
                                                "hidden_size": hidden, **facts})
    return TrunkStates(store, offsets, lengths, {**facts, "where": "disk" if entry else "memory", "reused": False,
                                                 "build_s": time.perf_counter() - tick})
