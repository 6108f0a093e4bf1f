"""`train.memory_limit_mb`: the fastest way to train that fits a stated memory, chosen from measured steps.

Before the first step, one forward and backward of the epoch's largest batch (most padded tokens) runs under each
candidate, fastest first: the settings as given; then activation checkpointing; then checkpointing with
micro-batches halved down to 1. The first whose peak fits the limit trains; the measurement leaves nothing behind
(gradients dropped, random state restored, memory handed back), so a run with a limit trains as the same run with
the chosen settings written out. The peak is the process's RSS (sampled every 5 ms) on a CPU, CUDA's allocated
peak on a GPU; under torchrun the largest over the processes. The choice, with every measurement, goes into the
training record and is kept by a resumed run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from tunebench import distributed
from tunebench.errors import TunebenchError
from tunebench.resources import PhaseMonitor, release_free_memory


def candidates(checkpointing: bool, micro: int | None, share: int) -> list[tuple[bool, int | None]]:
    """(activation checkpointing, micro-batch size) to try, fastest first; `share`: rows per process and batch."""
    out = [(checkpointing, micro), (True, micro)]
    size = min(micro or share, share)
    while size > 1:
        size = math.ceil(size / 2)
        out.append((True, size))
    return list(dict.fromkeys(out))


def describe(plan: dict) -> str:
    """What a plan chose and measured, in the words the progress line and the report's notes use."""
    tried = ", ".join(f"{t['peak_mb']:,.0f} MB" for t in plan["tried"])
    return (f"train.memory_limit_mb={plan['limit_mb']:g} chose activation checkpointing "
            f"{'on' if plan['activation_checkpointing'] else 'off'} and micro-batches of "
            f"{plan['micro_batch_size'] or 'the whole batch'} (measured step peak {plan['peak_mb']:,.0f} MB; "
            f"tried: {tried})")


def plan_memory(step, batches: list[list[int]], lengths: list[int], limit_mb: float, checkpointing: bool,
                micro: int | None, enable_checkpointing: Callable[[], None]) -> dict:
    """Measure the candidates on `step` (train.RankStep) with the largest of `batches` and return the plan:
    {"limit_mb", "tried": [...], "activation_checkpointing", "micro_batch_size", "peak_mb"}.
    `enable_checkpointing()` turns checkpointing on in the model (once a candidate needs it, it stays on)."""
    heaviest = max(batches, key=lambda b: len(b) * max(lengths[i] for i in b))
    share = math.ceil(len(heaviest) / distributed.world_size())
    on_gpu = step.runtime.device.startswith("cuda")
    tried, enabled = [], checkpointing  # as set: already on in the model
    for ckpt, size in candidates(checkpointing, micro, share):
        if ckpt and not enabled:
            enable_checkpointing()
            enabled = True
        cpu_rng = torch.get_rng_state()
        gpu_rng = torch.cuda.get_rng_state() if on_gpu else None
        step.micro_batch_size = size
        release_free_memory()
        with PhaseMonitor(interval_s=0.005) as monitor:
            step.backward(heaviest, 1, last=True)  # the loss's scale does not change what is held
        for param in step.training.params:
            param.grad = None
        torch.set_rng_state(cpu_rng)
        if gpu_rng is not None:
            torch.cuda.set_rng_state(gpu_rng)
        mine = monitor.peak_cuda_allocated_mb if on_gpu else monitor.peak_rss_mb
        peak = max(distributed.gather_objects(mine))
        tried.append({"activation_checkpointing": ckpt, "micro_batch_size": size, "peak_mb": round(peak, 1)})
        if peak <= limit_mb:
            break
    release_free_memory()
    if peak > limit_mb:
        least = min(t["peak_mb"] for t in tried)
        raise TunebenchError(f"train.memory_limit_mb={limit_mb:g}: even activation checkpointing with micro-batches "
                             f"of 1 peaked at {least:,.0f} MB in a measured step; raise the limit, or lower "
                             "data.max_article_tokens or the model's size")
    return {"limit_mb": limit_mb, "tried": tried, **tried[-1]}
