"""Several processes, one training loop: torch.distributed under `torchrun`, and one writer.

`torchrun --nproc-per-node N -m tunebench compare ...` starts N processes with RANK / WORLD_SIZE / LOCAL_RANK
set; `setup()` joins them into a process group (NCCL on GPUs, gloo on CPUs) with a timeout on every collective,
so a rank that dies ends the job with an error instead of a hang. A single process (no torchrun) is world size 1
and every helper below is then a no-op, so the loop has no "if distributed" branches.

Data parallelism (deliberately not DDP's wrapper): every rank holds the whole model, takes its share of every
batch, and the trained gradients (with the step's loss and token counts) are summed by one flat all-reduce per
optimizer step. The loss is normalised by the whole batch's target tokens, which every rank knows from the
batch indices, so the summed gradient equals the single-process one; accumulation naturally does no
communication before the last micro-batch; a rank whose share of a short last batch is empty contributes zeros.
DDP would average per-rank means instead (wrong for unequal shares) and needs every rank to run a forward.

Sharded (`train.fsdp=true`): each record's model is built whole on rank 0's host and as empty `meta` modules on
the other ranks, then FSDP2's `fully_shard` on every transformer block and on the whole shards it, filled from
rank 0 (`shard`); parameters, gradients and AdamW state stay sharded through training, evaluation, generation and
checkpoints. FSDP reduces the gradients itself (summed, not averaged: the loss is already normalised by the whole
batch), and every rank runs every forward: a rank with an empty share of a training batch runs one example with
weight 0, a rank with fewer evaluation batches runs a spare one, and generation keeps each decoding step in step
(transformers' `synced_gpus`). Whole tensors are gathered only as they are written (checkpoints, weights).

One writer: rank 0 writes every file (results, checkpoints, weights, reports, plots, predictions); the file
helpers in files.py and the checkpoint code ask `is_writer()`. Other ranks read what it wrote after a barrier.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch

from tunebench.errors import TunebenchError
from tunebench.files import OWN_JOB, is_writer  # noqa: F401  (defined once, torch-free, in files.py)


def world_size() -> int:
    """Processes working together: 1 while this process runs a job of its own (`own_job`)."""
    return torch.distributed.get_world_size() if together() else 1


def rank() -> int:
    return torch.distributed.get_rank() if together() else 0


def together() -> bool:
    return torch.distributed.is_initialized() and not OWN_JOB[0]


def job_rank() -> tuple[int, int]:
    """(this process's rank, number of processes) of the torchrun job, also inside `own_job`."""
    if not torch.distributed.is_initialized():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


@contextmanager
def own_job() -> Iterator[None]:
    """Run a job alone (train.parallel=jobs): inside, this process is a world of one (no collectives, its whole
    batches) and writes the job's own files; outside, it is a rank of the torchrun job again."""
    OWN_JOB[0] = True
    try:
        yield
    finally:
        OWN_JOB[0] = False


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched() -> bool:
    """Started by torchrun (or another launcher that sets WORLD_SIZE) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


_TIMEOUT_S = [1800.0]


def dist_timeout_s() -> float:
    """train.dist_timeout_s of this job (what a collective waits before the job ends)."""
    return _TIMEOUT_S[0]


def setup(timeout_s: float) -> None:
    """Join the process group torchrun describes (once); a no-op for a single process."""
    _TIMEOUT_S[0] = timeout_s
    if not launched() or torch.distributed.is_initialized():
        return
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>` makes a process that seems to hang print where it waits
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_s))


def teardown() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def say(text: str) -> None:
    """Print a line of progress, once (from the writer)."""
    if is_writer():
        line(text)


def line(text: str) -> None:
    """Print `text` and its newline in one write, so that several processes writing to one pipe or terminal (torchrun)
    never join two lines into one (`print` writes the text and the newline separately)."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def barrier() -> None:
    if world_size() > 1:
        torch.distributed.barrier()


@contextmanager
def writer_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. converting the embedded model once), then the others."""
    if not is_writer():
        barrier()
    try:
        yield
    finally:
        if is_writer():
            barrier()


def from_writer(value):
    """Rank 0's `value` on every rank (e.g. a run folder named after rank 0's clock)."""
    if world_size() == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def writer_decides(work):
    """Run `work()` on the writer only (naming or claiming the run folder) and return its value there (None on the
    other ranks); a TunebenchError it raises is raised on every rank with the writer's message."""
    value, error = None, None
    if is_writer():
        try:
            value = work()
        except TunebenchError as exc:
            error = str(exc)
    error = from_writer(error)
    if error:
        raise TunebenchError(error)
    return value


def on_writer(work):
    """Run `work()` on the writer only and return its result there (None on the other ranks); if it raised,
    every rank raises RankFailed (the others would otherwise go on to collectives the writer never joins).
    For a refusal whose message every rank should show, see `writer_decides`."""
    deferred = Deferred()
    result = None
    if is_writer():
        with deferred.guard():
            result = work()
    failed = gather_objects(deferred.error is not None)
    deferred.check(sum(failed), "writing files")
    return result


def share(indices: list[int]) -> list[int]:
    """This rank's part of a batch: every world_size-th example from this rank's offset."""
    return indices[rank()::world_size()]


def all_sum(values: list[torch.Tensor], device: str) -> list[torch.Tensor]:
    """Sum the tensors across ranks in one collective (flattened into one float32 buffer); the same
    tensors back, summed. Single process: returned as they are."""
    if world_size() == 1:
        return values
    flat = torch.cat([v.detach().reshape(-1).to(device=device, dtype=torch.float32) for v in values])
    torch.distributed.all_reduce(flat)
    out, start = [], 0
    for v in values:
        out.append(flat[start:start + v.numel()].view(v.shape).to(v.dtype))
        start += v.numel()
    return out


def shard(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """`model` sharded in place over the ranks, on `device`, with the writer's values (train.fsdp under torchrun).

    Load on rank 0 and broadcast shards: the writer built `model` with real weights (on the host), the other ranks
    built the same modules on the `meta` device (no memory). FSDP2's `fully_shard` goes on every transformer block
    and on the whole (the method's own rows included); each rank then keeps only its shard on `device`, filled from
    the writer's whole tensors (torch.distributed.checkpoint's `set_model_state_dict`, broadcast from rank 0; the
    buffers a state dict leaves out, e.g. rotary frequencies, are broadcast here). No rank ever holds the whole
    model on `device`. Every rank calls this (collectives)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.fsdp import fully_shard

    from tunebench.layers import transformer_blocks

    whole = model.state_dict() if is_writer() else {}  # the writer's tensors, referenced (no copy)
    in_state = set(model.state_dict(keep_vars=True))
    for block in transformer_blocks(model.lm):
        fully_shard(block)
    # said explicitly: FSDP2 would otherwise keep the outermost unit (embeddings, head) whole after each forward
    fully_shard(model, reshard_after_forward=True)
    for module in _fsdp_modules(model):
        module.set_gradient_divide_factor(1.0)  # sum: each rank's loss is already divided by the whole batch
        module.set_force_sum_reduction_for_comms(True)  # a plain SUM, which gloo has (it lacks PREMUL_SUM)
    if is_writer():
        model.to(device)  # the shards only
    else:
        model.to_empty(device=device)
    set_model_state_dict(model, whole, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    for name, buffer in model.named_buffers():
        if name not in in_state:
            torch.distributed.broadcast(buffer, src=0)
    del whole
    # FSDP2 makes the first unit to run a forward the root; generation runs the blocks' forwards from below the
    # whole's (TunedModel.generate), so the whole is made the root now (a private call: torch has no public one;
    # torch is pinned, and tests/test_distributed.py runs a baseline's generation first under train.fsdp)
    model._get_fsdp_state()._lazy_init()
    return model


def skeleton(model: torch.nn.Module, trust_remote_code: bool = False) -> torch.nn.Module:
    """The writer's `model` as modules on the `meta` device on every other rank (its config sent from the writer:
    nothing is read or allocated there); the writer's own model on the writer. Every rank calls this."""
    config, dtype = from_writer((model.config, next(model.parameters()).dtype) if is_writer() else None)
    if is_writer():
        return model
    from tunebench.models import meta_model

    return meta_model(config, dtype, trust_remote_code)


def is_sharded_model(model: torch.nn.Module) -> bool:
    return isinstance(model, torch.nn.Module) and any(is_sharded(p) for p in model.parameters())


@contextmanager
def root_gathered(model: torch.nn.Module) -> Iterator[None]:
    """Inside: the parameters of a sharded model's outermost unit (embeddings, head, a method's own rows) are
    whole on every rank, for work that calls into the model outside its `forward` (generation); the blocks gather
    their own in their forward. A model that is not sharded passes through."""
    if not is_sharded_model(model):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def rounds(total: int, batch_size: int, sharded: bool) -> int | None:
    """Batches every rank runs over its share of `total` items when `sharded` (the busiest rank's count: each
    forward of a sharded model needs every rank); None otherwise (each rank runs its own)."""
    if not sharded:
        return None
    return -(-len(range(0, total, world_size())) // batch_size)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of `tensor` this process holds: its shard if sharded, else the tensor."""
    return tensor.to_local() if is_sharded(tensor) else tensor


def local_bytes(tensor: torch.Tensor) -> int:
    """Bytes this process holds of `tensor`."""
    part = local(tensor)
    return part.numel() * part.element_size()


def _fsdp_modules(model: torch.nn.Module) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def sync_gradients(model: torch.nn.Module, now: bool) -> None:
    """Sharded: reduce gradients in this backward only when `now` (the last micro-batch of a step)."""
    for module in _fsdp_modules(model):
        module.set_requires_gradient_sync(now, recurse=False)


def is_sharded(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a sharded one (a collective: every rank calls it), else the tensor."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


def like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`value` (whole) laid out as `param`: sharded the same way if `param` is sharded."""
    if not is_sharded(param):
        return value
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value.to(param.device), param.device_mesh, param.placements)


def sum_gradients(params: list[torch.Tensor], extras: list[torch.Tensor], device: str) -> list[torch.Tensor]:
    """Sum the gradients of `params` across ranks in place (a rank without one adds zeros), and `extras` with them
    in the same collective; returns the summed extras. Single process: nothing changes."""
    if world_size() == 1 or any(is_sharded(p) for p in params):  # sharded: FSDP reduced them in backward
        return all_sum(extras, device)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    summed = all_sum([*grads, *extras], device)
    for param, grad in zip(params, summed, strict=False):
        param.grad = grad
    return summed[len(params):]


class RankFailed(RuntimeError):
    """A rank failed while the others waited for it: raised on every rank at the same collective, so the method
    is recorded FAILED once and every rank goes on to the next one together."""


class Deferred:
    """An exception on this rank, held (not raised) until the next collective tells every rank about it.

    Under torchrun a rank that raised inside a step (e.g. out of memory on its GPU) would leave the others waiting
    in that step's all-reduce; instead it skips its remaining work, adds its flag to the collective, and then every
    rank raises RankFailed. A single process raises at once, as without this.
    """

    def __init__(self):
        self.error: Exception | None = None

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if world_size() == 1:
                raise
            self.error = exc
            print(f"tunebench: process {rank()} failed; the others are told at the next collective:\n"
                  f"{traceback.format_exc()}", file=sys.stderr, flush=True)

    def flag(self, device: str) -> torch.Tensor:
        return torch.tensor(float(self.error is not None), device=device)

    def check(self, failed: torch.Tensor | float | int, what: str = "") -> None:
        """Raise on every rank when `failed` (the flags summed over ranks) says some rank failed."""
        count = int(failed.item() if torch.is_tensor(failed) else failed)
        if count:
            mine = f"; here: {type(self.error).__name__}: {self.error}" if self.error else ""
            raise RankFailed(f"{count} of {world_size()} processes failed{' in ' + what if what else ''}{mine}")


def gather(items: list, positions: list[int], total: int, deferred: Deferred | None = None) -> list:
    """Every rank's `items` (which belong at `positions` of a list of `total`) put together, in order; with
    `deferred`, a failure of any rank is raised on every rank instead."""
    parts = gather_objects((positions, items, deferred is not None and deferred.error is not None))
    if deferred is not None:
        deferred.check(sum(failed for _, _, failed in parts), "generation")
    whole: list = [None] * total
    for where, what, _ in parts:
        for position, item in zip(where, what, strict=True):
            whole[position] = item
    return whole


def gather_objects(item) -> list:
    """One object from every rank, in rank order (single process: a list of one)."""
    if world_size() == 1:
        return [item]
    parts: list = [None] * world_size()
    torch.distributed.all_gather_object(parts, item)
    return parts
