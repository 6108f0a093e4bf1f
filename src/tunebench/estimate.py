"""`tunebench data show --estimate`: how long a comparison will take here, from a few steps measured on this machine.

Meant to take about a minute, not the run's time: each method is built on the real model and takes two optimizer
steps on real batches (the second is timed: the first pays for allocation); decoding is timed once, on the base
model, with one batch of the run's size decoded for 1 and for 8 new tokens, which separates reading the prompts
from each new token; each record's generation is then extrapolated to the tokens it may write, between the 95th
percentile of the reference summaries (a model that ends on its own) and eval.max_new_tokens (one that runs to the
limit), and the report prints that range. The plan (steps per method, batches) comes from the same functions the
run uses. Methods decode at about the base model's speed (adapters are merged; a soft prompt adds its positions).
The peak memory of each method's measured steps is printed too, with a warning when it is near or above what this
machine (or GPU) has.
"""

from __future__ import annotations

import copy
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tunebench.config import Config
from tunebench.generate import generate_summaries
from tunebench.methods import METHODS, ZERO_SHOT
from tunebench.resources import PhaseMonitor, release_free_memory
from tunebench.runtime import seed_everything
from tunebench.train import (
    RankStep,
    batch_order,
    fit_memory,
    make_batch,
    per_example_loss,
    plan,
    setup,
    training_attention,
)
from tunebench.workbench import prepare


def _say(text: str) -> None:
    print(f"tunebench: estimating: {text}", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _timed(fn) -> float:
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def _decode_rates(bench, tuned, prompts: list[list[int]], size: int | None = None) -> tuple[float, float]:
    """(seconds to read one batch of prompts, seconds per new token of that batch), from one batch of `size`
    (default eval.batch_size) decoded for 1 and for 8 new tokens, with no early stop."""
    size = size or bench.cfg.eval.batch_size
    batch, rt = prompts[:size], bench.runtime

    def decode(tokens: int) -> float:
        settings = replace(bench.cfg.eval, max_new_tokens=tokens, cut="eos")
        return _timed(lambda: generate_summaries(tuned, bench.tokenizer, batch, size, settings, rt.device,
                                                 rt.autocast()))

    decode(1)  # warm-up
    one, eight = decode(1), decode(8)
    return one, max(eight - one, 0.0) / 7


def _generation_range(bench, rates: tuple[float, float], n_prompts: int, tokens: tuple[float, float],
                      reads_loss: bool) -> tuple[float, float]:
    """(low, high) seconds for one record's generation over `n_prompts`: batches x (reading the prompts + tokens x
    per token), plus one more read of the prompts where a metric needs the loss on the references."""
    read, per_token = rates
    batches = math.ceil(n_prompts / bench.cfg.eval.batch_size) if n_prompts else 0
    extra = read * batches if reads_loss else 0.0
    return tuple(batches * (read + t * per_token) + extra for t in tokens)


def _serving_s(bench, rates: tuple[float, float]) -> float:
    """Seconds of one record's fixed serving job (serving.py): a one-token warm-up and REPEATS passes of
    eval.serving_new_tokens, from the rates measured on the job's own batch (its first eval.serving_prompts test
    prompts)."""
    from tunebench.serving import REPEATS

    if not bench.cfg.eval.serving_prompts:
        return 0.0
    read, per_token = rates
    return read * (1 + REPEATS) + REPEATS * bench.cfg.eval.serving_new_tokens * per_token


def _method_s(bench, method) -> dict[str, float]:
    """Training, validation and generation seconds of one method, extrapolated from measured steps, and the peak memory
    of those steps. The steps are the training loop's own (train.setup, RankStep): activation checkpointing,
    micro-batches, train.memory_limit_mb's choice, the fused optimizer and the attention kernel as the run has them;
    not the frozen-trunk cache, which a run with more than one epoch uses (for a method with a frozen trunk the time
    is then an upper bound)."""
    cfg, rt, train_set, val_set = bench.cfg, bench.runtime, bench.encoded["train"], bench.encoded["val"]
    release_free_memory()  # the methods measured before do not count in this one's peak
    seed_everything(cfg.train.seed)
    tuned = method.build(copy.deepcopy(bench.base_lm), cfg, bench.tokenizer).to(rt.device)
    pad = bench.tokenizer.pad_token_id
    settings = replace(cfg.train, cache_frozen=False)
    with training_attention(tuned, rt.device):
        run = setup(tuned, train_set, [], settings, cfg.method_lr(method.name), rt, pad)
        step = RankStep(run, train_set, pad, rt, settings.grad_accum_steps, settings.micro_batch_size)
        if settings.memory_limit_mb is not None:  # its probes (some over the limit) are not the steps' peak
            fit_memory(run, step, train_set, settings, show_progress=False)
        release_free_memory()
    with PhaseMonitor(interval_s=0.01) as memory, training_attention(tuned, rt.device):
        batches = batch_order(train_set, settings.batch_size, seed=settings.seed)

        def one_step(indices: list[int]) -> None:  # one micro-batch and an optimizer step
            count = sum(len(train_set[i].target_ids) for i in indices)
            step.backward(indices, count, last=True)
            step.reduce(count, False, 1)
            run.optimizer_step(settings.max_grad_norm)

        tuned.train()
        lengths = [len(ex) for ex in train_set]  # first the epoch's heaviest batch (most padded tokens), for the
        one_step(max(batches, key=lambda b: len(b) * max(lengths[i] for i in b)))  # peak; it pays the allocations
        step_s = _timed(lambda: one_step(batches[min(1, len(batches) - 1)]))
    on_gpu = rt.device.startswith("cuda")
    peak_mb = memory.peak_cuda_allocated_mb if on_gpu else memory.peak_rss_mb
    budget = plan(train_set, cfg.train)
    train_s = step_s * budget["planned_steps"] * cfg.train.grad_accum_steps
    if cfg.train.budget == "seconds":
        train_s = min(train_s, cfg.train.max_seconds)
    validate = val_set and (budget["epochs"] > 1 or cfg.train.validate_one_epoch)
    val_s = 0.0
    if validate:
        tuned.eval()
        val_batches = batch_order(val_set, cfg.train.batch_size, seed=0, shuffle=False)
        with torch.no_grad():
            forward_s = _timed(lambda: per_example_loss(tuned, make_batch(val_set, val_batches[0], pad, rt.device)))
        val_s = forward_s * len(val_batches) * budget["epochs"]
    return {"train": train_s, "validation": val_s, "step": step_s, "steps": budget["planned_steps"],
            "peak_mb": peak_mb or 0.0}


def estimate_run(cfg: Config) -> str:
    """Lines estimating each record's time and the total, measured on this machine."""
    started = time.perf_counter()
    _say("loading the data and the model")
    with tempfile.TemporaryDirectory() as tmp:
        tick = time.perf_counter()
        bench, _ = prepare(cfg, Path(tmp), show_progress=False)
        prepare_s = time.perf_counter() - tick
    cfg = bench.cfg  # task settings derived from the data
    test = bench.encoded["test"]
    references = [len(ex.target_ids) for ex in test] or [1]
    tokens = (min(float(np.percentile(references, 95)), cfg.eval.max_new_tokens), float(cfg.eval.max_new_tokens))
    _say("decoding one batch for 1 and 8 new tokens")
    zero = ZERO_SHOT.build(bench.base_lm, cfg, bench.tokenizer)
    rates = _decode_rates(bench, zero, [ex.prompt_ids for ex in test])
    out = [f"estimated time of `compare` here ({bench.runtime.device}, {bench.runtime.precision}), from measured "
           f"steps: loading {prepare_s:.0f} s; decoding {rates[1]:.2f} s per new token per batch of "
           f"{min(cfg.eval.batch_size, len(test))}, generation ranges from {tokens[0]:.0f} new tokens per summary "
           f"(the references' 95th percentile) to {tokens[1]:.0f} (eval.max_new_tokens)"]
    low = high = prepare_s
    if cfg.eval.serving_prompts:  # the serving job's batch is its own (a few prompts), not eval.batch_size
        serving_batch = [ex.prompt_ids for ex in test[:cfg.eval.serving_prompts]]
        serving = _serving_s(bench, _decode_rates(bench, zero, serving_batch, len(serving_batch)))
    else:
        serving = 0.0
    serving_words = f", serving job {serving:.0f} s" if serving else ""
    loss = any(m.needs_loss or m.needs_text_loss for m in bench.metrics)
    for name in cfg.eval.baselines:
        if name == "zero-shot" or (name == "zero-shot-chat" and getattr(bench.tokenizer, "chat_template", None)):
            lo, hi = _generation_range(bench, rates, len(test), tokens, loss and name == "zero-shot")
            low, high = low + lo + serving, high + hi + serving
            out.append(f"  {name}: generation {lo:.0f}-{hi:.0f} s{serving_words}")
    peaks = {}
    for name in cfg.methods:
        _say(f"{name}: two training steps")
        t = _method_s(bench, METHODS[name])
        lo, hi = _generation_range(bench, rates, len(test), tokens, loss)
        fixed = t["train"] + t["validation"] + serving
        low, high = low + fixed + lo, high + fixed + hi
        peaks[name] = t["peak_mb"]
        out.append(f"  {name}: training {t['train']:.0f} s ({t['steps']} steps x {t['step']:.1f} s, peak memory "
                   f"{t['peak_mb']:,.0f} MB), validation {t['validation']:.0f} s, generation {lo:.0f}-{hi:.0f} s"
                   f"{serving_words}")
    extra = " (a learning-rate search adds its trials: not estimated)" if cfg.search.enabled else ""
    out.append(f"  total: about {_duration(high)} with one seed (at least {_duration(low)}){extra}")
    if cfg.eval.decide and cfg.methods:
        out.append(f"  then, only while the verdict is open: more test articles for the tied records, at most "
                   f"{cfg.eval.decide_seconds / 60:.1f} min (eval.decide_seconds)")
    out.append(f"  (this estimate took {time.perf_counter() - started:.0f} s; a real run on this machine is "
               "usually within the range above, more if other programs compete for the cores)")
    out += _memory_warning(bench, peaks)
    return "\n".join(out)


def _memory_warning(bench, peaks: dict[str, float]) -> list[str]:
    """A line when a method's measured training steps peaked above what this machine (or GPU) has, with the
    settings that lower it."""
    if not peaks:
        return []
    name = max(peaks, key=peaks.get)
    if bench.runtime.device.startswith("cuda"):
        have, what = torch.cuda.get_device_properties(torch.device(bench.runtime.device)).total_memory / 2**20, "GPU"
    else:
        import psutil

        have, what = psutil.virtual_memory().total / 2**20, "machine"
    if peaks[name] <= 0.9 * have:
        return []
    train = bench.cfg.train
    fixes = ([] if train.activation_checkpointing else ["train.activation_checkpointing=true"]) + \
        ([] if train.memory_limit_mb is not None else [f"train.memory_limit_mb={int(0.8 * have)}"]) or \
        ["a lower train.memory_limit_mb or data.max_article_tokens"]
    return [f"warning: {name}'s training steps peaked at {peaks[name]:,.0f} MB, near or above this {what}'s "
            f"{have:,.0f} MB: the run would swap or fail; --set {' or '.join(fixes)} (memory_plan.py chooses "
            "checkpointing and micro-batches that fit)"]
