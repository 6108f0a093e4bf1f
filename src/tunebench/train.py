"""One training loop for every method: AdamW, linear warmup/decay, clipping, accumulation, best checkpoint.

Nothing here knows which method runs: a method only decides which parameters require gradients
and what is put in front of the prompt (see methods/base.py). Where the lower blocks of a model are
frozen, their output is computed once and reused every epoch (trunk_cache.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from tunebench import distributed
from tunebench.checkpoint import TensorFile, has_training_state, load_training_state, save_training_state
from tunebench.config import TrainConfig
from tunebench.data.format import Encoded, collate
from tunebench.errors import TunebenchError
from tunebench.files import follow_umask
from tunebench.methods.base import TunedModel, load_trainable_state, trainable_state
from tunebench.runtime import Runtime
from tunebench.track import replay_training
from tunebench.trunk_cache import TrunkStates, build_trunk_states


@dataclass
class TrainResult:
    steps: int = 0
    epochs: int = 0
    best_epoch: int = 0
    best_step: int = 0
    best_val_loss: float = float("nan")
    val_loss_per_epoch: list[float] = field(default_factory=list)
    train_loss_per_step: list[float] = field(default_factory=list)
    lr_per_step: list[float] = field(default_factory=list)
    train_time_s: float = 0.0
    val_time_s: float = 0.0
    train_tokens: int = 0
    """Real (non-padding) tokens processed in training, prompts included."""
    target_tokens: int = 0
    """Tokens the loss was computed on (summary + EOS)."""
    optimizer_state_bytes: int = 0
    """Memory held by AdamW's moment estimates for the trained parameters (this process's shards under FSDP)."""
    parameter_bytes: int = 0
    """Memory held by the model's parameters, trained and frozen (this process's shards under FSDP)."""
    gradient_bytes: int = 0
    """Memory held by the gradients at an optimizer step (this process's shards under FSDP)."""
    frozen_cache: dict = field(default_factory=dict)
    """The frozen-trunk cache, if used: blocks skipped, bytes, where, build time (in train_time_s), reuse."""
    budget: dict = field(default_factory=dict)
    """What was equal for every method (kind, amount) and the plan: steps, steps per epoch, epochs."""
    memory_plan: dict = field(default_factory=dict)
    """With train.memory_limit_mb: the measured candidates and the settings chosen (memory_plan.py)."""

    @property
    def train_tokens_per_s(self) -> float:
        return self.train_tokens / self.train_time_s if self.train_time_s else 0.0

    def rates(self) -> dict[str, float]:
        """Throughput over the training time (validation excluded)."""
        t = self.train_time_s or float("nan")
        return {"train_tokens_per_s": self.train_tokens / t, "target_tokens_per_s": self.target_tokens / t,
                "steps_per_s": self.steps / t}


def per_example_loss(model: TunedModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and target-token count per example, with a per-example causal shift.

    Logits at position t predict the token at t + 1 *of the same row*. Left padding puts every target at the
    end of its row, so the body runs up to the last `logits_to_keep` positions and the LM head (the largest
    single matmul of a small model) only at positions whose next token is a target.
    """
    logits = model(batch["input_ids"], batch["attention_mask"], logits_to_keep=int(batch["logits_to_keep"]),
                   trunk_states=batch.get("trunk_states"), select=batch["target_index"]).float()
    losses = F.cross_entropy(logits, batch["target_ids"], reduction="none")
    per_row = losses.new_zeros(batch["input_ids"].shape[0]).index_add_(0, batch["target_row"], losses)
    return per_row, batch["target_count"]


@dataclass
class Probe:
    """A learning-rate trial: stop after `steps` optimizer steps (the schedule stays the whole budget's, so the
    trial is the first part of the real run) and report the validation loss every `every` steps before that;
    `report` may raise to end the trial early (pruning)."""

    steps: int
    every: int
    report: Callable[[int, float], None]


def plan(train_set: list[Encoded], cfg: TrainConfig) -> dict:
    """Optimizer steps and epochs the budget gives; the same for every method (data order depends on the seed)."""
    micro = math.ceil(len(train_set) / cfg.batch_size)
    per_epoch = math.ceil(micro / cfg.grad_accum_steps)
    if cfg.budget == "steps":
        steps = cfg.max_steps
    elif cfg.budget == "tokens":
        steps, seen, epoch = 0, 0, 0
        while seen < cfg.max_tokens:  # walk the seeded batch order until the token budget is spent
            epoch += 1
            batches = batch_order(train_set, cfg.batch_size, seed=cfg.seed * 1000 + epoch)
            for start in range(0, len(batches), cfg.grad_accum_steps):
                seen += sum(len(train_set[i]) for b in batches[start:start + cfg.grad_accum_steps] for i in b)
                steps += 1
                if seen >= cfg.max_tokens:
                    break
    else:  # epochs; seconds: planned over train.epochs, stopped when the time is up
        steps = per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        steps = min(steps, cfg.max_steps)
    epochs = cfg.epochs if cfg.budget == "seconds" else math.ceil(steps / per_epoch)
    amount = {"epochs": cfg.epochs, "steps": cfg.max_steps, "tokens": cfg.max_tokens, "seconds": cfg.max_seconds}
    return {"kind": cfg.budget, "amount": amount[cfg.budget], "planned_steps": steps, "steps_per_epoch": per_epoch,
            "epochs": epochs}


def batch_order(examples: list[Encoded], batch_size: int, seed: int, shuffle: bool = True) -> list[list[int]]:
    """Seeded length-grouped batches: similar lengths share a batch (little padding), batch order shuffled."""
    indices = list(range(len(examples)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(indices)
    group = batch_size * 32
    batches = []
    for start in range(0, len(indices), group):
        chunk = sorted(indices[start:start + group], key=lambda i: len(examples[i]))
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches


def make_batch(examples: list[Encoded], indices: list[int], pad_id: int, device: str,
               states: TrunkStates | None = None) -> dict[str, torch.Tensor]:
    """A collated batch on the device, with the frozen blocks' cached output when there is a cache."""
    batch = collate([examples[i] for i in indices], pad_id)
    del batch["labels"]  # the loss reads target_index / target_ids
    if states is not None:
        batch["trunk_states"] = states.batch(indices, batch["input_ids"].shape[1])
    if device.startswith("cuda"):  # pinned memory: the copy does not wait for the GPU's queued work
        return {k: v.pin_memory().to(device, non_blocking=True) if v.dim() else v for k, v in batch.items()}
    return {k: v.to(device) if v.dim() else v for k, v in batch.items()}  # scalars stay on the host


@torch.no_grad()
def evaluate_loss(model: TunedModel, examples: list[Encoded], batch_size: int, pad_id: int,
                  runtime: Runtime, states: TrunkStates | None = None) -> float:
    """Mean cross-entropy per target token over a set (no generation); each rank scores its share of every
    batch and the sums are added across ranks, so every rank gets the same value."""
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    deferred = distributed.Deferred()
    for indices in batch_order(examples, batch_size, seed=0, shuffle=False):
        count += sum(len(examples[i].target_ids) for i in indices)
        mine = distributed.share(indices)
        if deferred.error:
            continue
        with deferred.guard():  # an empty share runs one example with weight 0 (as in training)
            batch = make_batch(examples, mine or indices[:1], pad_id, runtime.device, states)
            with runtime.autocast():
                loss_sum, _ = per_example_loss(model, batch)
            total += loss_sum.sum().double().cpu() * (1.0 if mine else 0.0)
    total, failed = distributed.all_sum([total, deferred.flag("cpu")], runtime.device)
    deferred.check(failed, "validation")
    return float(total) / max(count, 1)


@torch.no_grad()
def per_article_loss(model: TunedModel, examples: list[Encoded], batch_size: int, pad_id: int,
                     runtime: Runtime) -> list[tuple[float, int]]:
    """(summed cross-entropy, target tokens) of each example's reference summary, in the examples' order: one
    forward pass per article, no generation. Under torchrun each rank scores its share and every rank gets all."""
    model.eval()
    mine = distributed.share(list(range(len(examples))))
    out: list[tuple[float, int]] = []
    deferred = distributed.Deferred()
    mine_examples = [examples[i] for i in mine]
    batches = batch_order(mine_examples, batch_size, seed=0, shuffle=False)
    # sharded: every rank runs as many forwards as the busiest one (a spare one on its first example, unused)
    spare = distributed.rounds(len(examples), batch_size, distributed.is_sharded_model(model))
    for n in range(max(len(batches), spare or 0)):
        if deferred.error and not spare:
            break
        with deferred.guard():
            own = n < len(batches)
            batch = make_batch(mine_examples, batches[n], pad_id, runtime.device) if own else \
                make_batch(examples, [0], pad_id, runtime.device)
            with runtime.autocast():
                sums, counts = per_example_loss(model, batch)
            if own:
                out += [(mine[i], float(s), int(c)) for i, s, c in zip(batches[n], sums.double().cpu(),
                                                                      counts.cpu(), strict=True)]
    rows = distributed.gather([(s, c) for _, s, c in out], [i for i, _, _ in out], len(examples), deferred)
    return [tuple(row) for row in rows]


Log = Callable[[dict[str, float], int], None]
"""A live tracker's hook: `log({"train/loss": 2.1, "train/lr": 1e-3}, step)`."""


@dataclass
class Training:
    """What the loop works with, made before its first step (torchtune's setup() / train() split)."""

    model: TunedModel
    """The model that trains (sharded in place under FSDP: workbench.fresh_model)."""
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    result: TrainResult
    """Empty, or as the resumed checkpoint left it."""
    start: dict
    """Where the loop begins: epoch, micro-batch within it, best validation loss so far (None: none yet)."""
    train_states: TrunkStates | None
    val_states: TrunkStates | None
    stop_at: int
    """Optimizer steps to run: the plan's, or fewer for a probe."""
    validate: bool
    """Whether each epoch ends with a validation loss (that picks the best epoch)."""

    def optimizer_step(self, max_grad_norm: float) -> float:
        """Clip, step AdamW and the schedule, clear the gradients; returns the learning rate this step used."""
        torch.nn.utils.clip_grad_norm_(self.params, max_grad_norm)
        if not self.result.gradient_bytes:
            self.result.gradient_bytes = sum(distributed.local_bytes(p.grad) for p in self.params if p.grad is not None)
        lr = self.scheduler.get_last_lr()[0]  # before stepping the schedule: the rate of this step, not the next
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lr


def setup(model: TunedModel, train_set: list[Encoded], val_set: list[Encoded], cfg: TrainConfig, lr: float,
          runtime: Runtime, pad_id: int, state_dir: Path | None = None, cache_dir: Path | None = None,
          probe: Probe | None = None) -> Training:
    """Optimizer, schedule over the budget's plan, the resumed state (if `state_dir` holds one), frozen-trunk cache."""
    if cfg.activation_checkpointing:
        checkpoint_activations(model)
    sharded = distributed.is_sharded_model(model)  # train.fsdp under torchrun: FSDP2 reduces the gradients
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel per step instead of ~10 passes over every trained tensor (last-block trains 32M values);
    # not for sharded (DTensor) parameters, which take the foreach kernels
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay,
                                  fused=runtime.device.split(":")[0] in ("cpu", "cuda") and not sharded)
    budget = plan(train_set, cfg)
    total_steps = budget["planned_steps"]
    scheduler = get_linear_schedule_with_warmup(optimizer, min(cfg.warmup_steps, total_steps), total_steps)
    result, start = TrainResult(), {"epoch": 1, "micro": 0, "best": None}
    if state_dir is not None and has_training_state(state_dir):
        start, fields = load_training_state(state_dir, model, optimizer, scheduler)
        result = TrainResult(**fields)
    use_cache = replays_trunk(cfg, budget, model.frozen_depth(), sharded)
    result.frozen_cache, result.budget = {}, budget  # what this run does, not what a resumed checkpoint's run did
    train_states, val_states = _frozen_trunk(model, train_set, val_set, cfg.batch_size, pad_id, runtime,
                                             cache_dir, result) if use_cache else (None, None)
    # the loss after each epoch picks the best one: with one epoch there is none to pick (a search's trial reads it)
    validate = bool(val_set) and (budget["epochs"] > 1 or probe is not None or cfg.validate_one_epoch)
    return Training(model, params, optimizer, scheduler, result, start, train_states, val_states,
                    stop_at=min(total_steps, probe.steps) if probe else total_steps, validate=validate)


def replays_trunk(cfg: TrainConfig, budget: dict, frozen_depth: int, sharded: bool = False) -> bool:
    """Whether training runs a frozen trunk of `frozen_depth` blocks once per example and replays it from the cache
    (train.cache_frozen) instead of once per step. With one epoch nothing would be reused: the cache would only add
    its writes and reads (measured 0.9x). Decided from the settings alone (`budget`: `plan`), so a resumed run takes
    the same path as an uninterrupted one; never for a sharded model."""
    return cfg.cache_frozen and budget["planned_steps"] > budget["steps_per_epoch"] and not sharded and frozen_depth > 0


ATTENTION_DROPOUT = ("attn_pdrop", "attention_dropout", "attention_probs_dropout_prob")
"""Config keys that hold a model's attention dropout (GPT-2's; Llama-style and most others'; BERT-style)."""


@contextmanager
def training_attention(model: TunedModel, device: str) -> Iterator[None]:
    """Inside: on a CPU, a model with attention dropout trains with transformers' eager attention instead of SDPA.

    PyTorch's CPU SDPA has no fused kernel with dropout: it falls back to its unfused math kernel, which keeps the
    attention matrices in fp32 under bf16 autocast. Measured (benchmarks/cpu_attention_dropout.py: GPT-2 small's
    architecture, batch 8 x 660 positions, bf16 autocast, one forward and backward, 2-core AMD EPYC, 2026-12-08,
    medians of 2): SDPA 11.2 GB peak RSS and 30.8 s, eager 8.8 GB and 23.6 s (x0.79 memory, x0.77 time). Evaluation
    and generation (no dropout) keep SDPA: validation inside training switches back (`attention_as_loaded`) and
    the setting is restored on exit. A model without attention dropout (the
    embedded SmolLM2), a GPU, or a model loaded with another attention is left as it is."""
    config = model.lm.config
    dropout = max(float(getattr(config, key, 0.0) or 0.0) for key in ATTENTION_DROPOUT)
    if device.split(":")[0] != "cpu" or dropout == 0.0 or config._attn_implementation != "sdpa":
        yield
        return
    config._attn_implementation, model.training_attention_switched = "eager", True
    try:
        yield
    finally:
        config._attn_implementation, model.training_attention_switched = "sdpa", False


@contextmanager
def attention_as_loaded(model: TunedModel) -> Iterator[None]:
    """Inside `training_attention`: SDPA again for an evaluation pass (validation in eval mode has no dropout)."""
    config = model.lm.config
    if config._attn_implementation != "eager" or not getattr(model, "training_attention_switched", False):
        yield
        return
    config._attn_implementation = "sdpa"
    try:
        yield
    finally:
        config._attn_implementation = "eager"


def checkpoint_activations(model: TunedModel) -> None:
    """train.activation_checkpointing: transformers' per-layer checkpointing (non-reentrant torch.utils.checkpoint)
    on every block; it applies only in training mode with gradients on, so evaluation and generation are unchanged.
    Library code, not our own wrapper: its layers already run the checkpoint around `forward` (FSDP2's hooks stay
    outside) and a frozen trunk replayed from the cache (`replaying`) bypasses it."""
    try:
        model.lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    except ValueError as exc:  # the architecture has no checkpointing layers
        raise TunebenchError(f"train.activation_checkpointing: {exc}; set it false for this model") from None
    # transformers also makes the input embeddings require gradients (what reentrant checkpointing needs): that
    # would run the backward through a frozen trunk (measured: last-block 2.3x slower, 1.8x the memory); the
    # non-reentrant checkpoint needs no such thing
    model.lm.disable_input_require_grads()
    if model.prefix_length():  # a learned key/value prefix: its cache is read-only in training (prefix_cache's
        from transformers.modeling_layers import GradientCheckpointingLayer  # `fixed`): the blocks may keep it

        for module in model.lm.modules():
            if isinstance(module, GradientCheckpointingLayer):
                module._can_checkpoint_with_cache = True
            elif getattr(module, "gradient_checkpointing", False):
                module.gradient_checkpointing = False  # above the blocks it only drops the cache (GPT-2's model)


def fit_memory(run: Training, step: RankStep, train_set: list[Encoded], cfg: TrainConfig, show_progress: bool) -> None:
    """train.memory_limit_mb: measure and choose (memory_plan.py), or take the plan a resumed run started with."""
    from tunebench.memory_plan import describe, plan_memory

    plan = run.result.memory_plan
    if not plan:
        batches = batch_order(train_set, cfg.batch_size, seed=cfg.seed * 1000 + 1)
        plan = run.result.memory_plan = plan_memory(step, batches, [len(ex) for ex in train_set], cfg.memory_limit_mb,
                                                     cfg.activation_checkpointing, cfg.micro_batch_size,
                                                     lambda: checkpoint_activations(run.model))
        if show_progress:
            distributed.say(f"tunebench: {describe(plan)}")
    elif plan["activation_checkpointing"] and not cfg.activation_checkpointing:
        checkpoint_activations(run.model)
    step.micro_batch_size = plan["micro_batch_size"]


def _frozen_trunk(model: TunedModel, train_set: list[Encoded], val_set: list[Encoded], batch_size: int, pad_id: int,
                  runtime: Runtime, cache_dir: Path | None,
                  result: TrainResult) -> tuple[TrunkStates, TrunkStates | None]:
    """The frozen lower blocks' output for every training and validation example, computed once; its time and
    facts go into `result`."""
    if distributed.job_rank()[1] > 1:
        cache_dir = None  # each process keeps its own in memory: files would have several writers
    clock = Clock()
    train_states = build_trunk_states(model, train_set, batch_size, pad_id, runtime, cache_dir)
    result.train_time_s += clock.lap()  # computing the frozen part once is training work
    val_states = build_trunk_states(model, val_set, batch_size, pad_id, runtime, cache_dir)
    result.val_time_s += clock.lap()
    result.frozen_cache = {**train_states.facts, "val_bytes": val_states.facts["bytes"] if val_states else 0}
    return train_states, val_states


class RankStep:
    """The distributed bookkeeping of one optimizer step, so that the loop reads as if there were one process.

    Each rank runs its share of every micro-batch, its loss normalised by the whole batch's target tokens; one
    collective per optimizer step (none before) sums the gradients, the last micro-batch's loss, whether any rank's
    clock says the time budget is spent (so every rank stops at the same step) and whether any rank failed (a
    failure is held until then, so no rank is left waiting in a collective). A single process raises at once.
    """

    def __init__(self, training: Training, train_set: list[Encoded], pad_id: int, runtime: Runtime,
                 grad_accum_steps: int, micro_batch_size: int | None = None):
        self.training, self.train_set, self.pad_id, self.runtime = training, train_set, pad_id, runtime
        self.grad_accum_steps, self.micro_batch_size = grad_accum_steps, micro_batch_size
        self.deferred = distributed.Deferred()  # a failure on one rank, told to all at the step's collective
        self.loss_sum = torch.zeros((), device=runtime.device)

    def backward(self, indices: list[int], count: int, last: bool) -> None:
        """Forward and backward of this rank's share of a micro-batch of `count` target tokens; `last`: the last
        micro-batch of the optimizer step (where sharded training reduces its gradients)."""
        mine = distributed.share(indices)
        # a short last batch may leave a rank nothing: it then runs one example with weight 0 (sharded training
        # needs every rank in every forward; the gradient it adds is zero)
        weight = 1.0 if mine else 0.0
        if self.deferred.error:
            return
        rows = mine or indices[:1]
        size = self.micro_batch_size or len(rows)
        pieces = [rows[start:start + size] for start in range(0, len(rows), size)]
        with self.deferred.guard():
            model = self.training.model
            self.loss_sum = torch.zeros((), device=self.runtime.device)
            for n, piece in enumerate(pieces, start=1):  # train.micro_batch_size: the share in pieces
                batch = make_batch(self.train_set, piece, self.pad_id, self.runtime.device, self.training.train_states)
                with self.runtime.autocast():
                    per_row, _ = per_example_loss(model, batch)
                loss = per_row.sum() * weight
                distributed.sync_gradients(model, last and n == len(pieces))  # sharded: in the step's last backward
                (loss / count / self.grad_accum_steps).backward()
                self.loss_sum = self.loss_sum + loss.detach()

    def reduce(self, count: int, late: bool, step: int) -> tuple[float, bool]:
        """The step's collective: (the last micro-batch's loss per target token, whether any rank is `late`).
        Raises RankFailed on every rank if one failed, FloatingPointError if the loss is not finite."""
        device = self.runtime.device
        if self.deferred.error:
            self.loss_sum = torch.zeros((), device=device)
        loss_sum, late_flag, failed = distributed.sum_gradients(
            self.training.params, [self.loss_sum.detach().float(), torch.tensor(float(late), device=device),
                                   self.deferred.flag(device)], device)
        self.deferred.check(failed, f"training step {step}")
        value = loss_sum.item() / count
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {step}; lower the lr")
        return value, bool(late_flag.item())


class Clock:
    """Seconds between marks: training and validation time are each measured from the last mark."""

    def __init__(self) -> None:
        self.mark = time.perf_counter()

    def restart(self) -> None:
        self.mark = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.mark

    def lap(self) -> float:
        """Seconds since the last mark, and a new mark."""
        now = time.perf_counter()
        seconds, self.mark = now - self.mark, now
        return seconds


def _writer_only(log: Log | None) -> Log:
    """The tracker hook on the writer; a no-op elsewhere and without one, so the loop calls it unconditionally."""
    if log is None or not distributed.is_writer():
        return lambda values, step: None
    return log


def train(model: TunedModel, train_set: list[Encoded], val_set: list[Encoded], cfg: TrainConfig, lr: float,
          runtime: Runtime, checkpoint: Path, pad_id: int, show_progress: bool = True,
          on_epoch_end: Callable[[int, TunedModel], None] | None = None, state_dir: Path | None = None,
          cache_dir: Path | None = None, probe: Probe | None = None, log: Log | None = None) -> TrainResult:
    """Train the parameters that require gradients; keep the best epoch (validation loss) on disk and reload it.

    With `state_dir`, the full training state is saved every `cfg.checkpoint_every_steps` optimizer steps and
    at each epoch end, and training continues from it when it exists (a killed run resumes exactly).
    With `cfg.cache_frozen`, frozen lower blocks run once per example (kept in `cache_dir` if given, else memory).
    `cfg.budget` says when training ends (`plan`); a `probe` ends it earlier, for a learning-rate trial.
    `log`, on the writer, gets `{"train/loss", "train/lr"}` after every optimizer step and `{"val/loss"}` after
    each epoch's validation, with the optimizer step count (from 1).
    """
    with training_attention(model, runtime.device):
        return _train(model, train_set, val_set, cfg, lr, runtime, checkpoint, pad_id, show_progress, on_epoch_end,
                      state_dir, cache_dir, probe, log)


def _train(model: TunedModel, train_set: list[Encoded], val_set: list[Encoded], cfg: TrainConfig, lr: float,
           runtime: Runtime, checkpoint: Path, pad_id: int, show_progress: bool,
           on_epoch_end: Callable[[int, TunedModel], None] | None, state_dir: Path | None, cache_dir: Path | None,
           probe: Probe | None, log: Log | None) -> TrainResult:
    """`train`'s body."""
    run = setup(model, train_set, val_set, cfg, lr, runtime, pad_id, state_dir, cache_dir, probe)
    result, trainee, log = run.result, run.model, _writer_only(log)
    if result.steps:  # resumed: the curves logged before the kill, again (the tracker's record started afresh)
        replay_training(dataclasses.asdict(result), log)
    step = RankStep(run, train_set, pad_id, runtime, cfg.grad_accum_steps, cfg.micro_batch_size)
    if cfg.memory_limit_mb is not None:
        fit_memory(run, step, train_set, cfg, show_progress)
    best = math.inf if run.start["best"] is None else run.start["best"]
    out_of_time = cfg.budget == "seconds" and result.train_time_s >= cfg.max_seconds  # then agreed at each step

    def finished() -> bool:
        return result.steps >= run.stop_at or out_of_time

    def validation_loss() -> float:
        with attention_as_loaded(trainee):  # no dropout: SDPA's fused kernel again
            return evaluate_loss(trainee, val_set, cfg.batch_size, pad_id, runtime, run.val_states)

    def save_state(epoch: int, micro: int) -> None:
        if state_dir is not None:
            mark = {"epoch": epoch, "micro": micro, "best": None if math.isinf(best) else best}
            save_training_state(state_dir, trainee, run.optimizer, run.scheduler, mark, result)

    clock = Clock()
    bar = tqdm(total=result.budget["planned_steps"], initial=result.steps, desc="train", unit="step",
               disable=not show_progress or not distributed.is_writer(), leave=False)
    for epoch in range(run.start["epoch"], result.budget["epochs"] + 1):
        if result.steps and finished():  # at least one step, whatever the clock says
            break
        trainee.train()
        clock.restart()
        batches = batch_order(train_set, cfg.batch_size, seed=cfg.seed * 1000 + epoch)
        skip = run.start["micro"] if epoch == run.start["epoch"] else 0  # batches done before a resume
        for micro, indices in enumerate(batches[skip:], start=skip):
            # the whole batch's target tokens, known on every rank from the indices: the loss of each rank's
            # share is normalised by it, so the gradients summed over ranks are the whole batch's
            count = sum(len(train_set[i].target_ids) for i in indices)
            step_now = not ((micro + 1) % cfg.grad_accum_steps and micro + 1 != len(batches))
            step.backward(indices, count, last=step_now)
            result.train_tokens += sum(len(train_set[i]) for i in indices)  # from the host: no device sync
            result.target_tokens += count
            if not step_now:
                continue
            late = cfg.budget == "seconds" and result.train_time_s + clock.elapsed() >= cfg.max_seconds
            value, late = step.reduce(count, late, result.steps + 1)
            result.lr_per_step.append(run.optimizer_step(cfg.max_grad_norm))
            result.steps += 1
            result.train_loss_per_step.append(value)
            result.train_time_s += clock.lap()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{value:.3f}")
            out_of_time = out_of_time or late
            log({"train/loss": value, "train/lr": result.lr_per_step[-1]}, result.steps)
            clock.restart()  # a tracker's time is not training time
            if finished():
                break
            if probe and result.steps % probe.every == 0:
                val_loss = validation_loss()
                trainee.train()
                result.val_time_s += clock.lap()
                probe.report(result.steps, val_loss)
            if cfg.checkpoint_every_steps and result.steps % cfg.checkpoint_every_steps == 0:
                save_state(epoch, micro + 1)
                clock.restart()  # checkpoint writing is not training time
        result.epochs = epoch
        clock.restart()
        val_loss = validation_loss() if run.validate else math.nan
        result.val_time_s += clock.lap()
        if run.validate:
            result.val_loss_per_epoch.append(val_loss)
            log({"val/loss": val_loss}, result.steps)
        if not run.validate or val_loss < best:  # without validation the last epoch is kept
            # a real copy on disk, not a reference to live tensors (docs/defects.md #10)
            best, result.best_epoch, result.best_step = val_loss, epoch, result.steps
            atomic_save_file(trainable_state(trainee), checkpoint)
        if on_epoch_end is not None:
            on_epoch_end(epoch, trainee)
        save_state(epoch + 1, 0)
    bar.close()
    return _finish(model, run, checkpoint, best)


def _finish(model: TunedModel, run: Training, checkpoint: Path, best: float) -> TrainResult:
    """Every rank loads the best epoch's weights (the writer saved them) into `model`, in evaluation mode."""
    distributed.barrier()  # the writer has saved the best weights: every rank reloads them
    result = run.result
    result.optimizer_state_bytes = sum(distributed.local_bytes(v) for state in run.optimizer.state.values()
                                       for v in state.values() if torch.is_tensor(v))
    result.parameter_bytes = sum(distributed.local_bytes(p) for p in run.model.parameters())
    result.best_val_loss = best if run.validate else math.nan
    load_trainable_state(model, TensorFile(checkpoint))  # tensor by tensor: under FSDP each rank keeps its shards
    model.eval()
    return result


def atomic_save_file(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors via a temp file + rename: a kill never leaves half a weights file."""
    if not distributed.is_writer():
        return
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    follow_umask(tmp)  # safetensors writes 0600
    os.replace(tmp, path)
