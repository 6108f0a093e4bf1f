"""`tunebench data show --estimate`: how long a comparison will take here, from steps measured on this machine.

Each method is built on the real model and takes two optimizer steps on real batches (the second is timed: the
first pays for allocation), a validation forward, and one batch of generation; the plan (steps per method,
batches) comes from the same functions the run uses. The estimate is only as good as one batch is typical:
generation time depends on where each summary ends.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from pathlib import Path

import torch

from tunebench.config import Config
from tunebench.generate import generate_summaries
from tunebench.methods import METHODS, ZERO_SHOT
from tunebench.runtime import seed_everything
from tunebench.train import batch_order, make_batch, per_example_loss, plan
from tunebench.workbench import chat_prompts, prepare


def _timed(fn) -> float:
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def _generation_s(bench, tuned, prompts: list[list[int]]) -> float:
    """Seconds to decode all `prompts`, from one timed batch of eval.batch_size."""
    size = bench.cfg.eval.batch_size
    if not prompts:
        return 0.0
    rt = bench.runtime
    batch = prompts[:size]
    once = _timed(lambda: generate_summaries(tuned, bench.tokenizer, batch, size, bench.cfg.eval, rt.device,
                                             rt.autocast()))
    return once * math.ceil(len(prompts) / size)


def _method_s(bench, method) -> dict[str, float]:
    """Training, validation and generation seconds of one method, extrapolated from measured steps."""
    cfg, rt, train_set, val_set = bench.cfg, bench.runtime, bench.encoded["train"], bench.encoded["val"]
    seed_everything(cfg.train.seed)
    tuned = method.build(copy.deepcopy(bench.base_lm), cfg, bench.tokenizer).to(rt.device)
    params = [p for p in tuned.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.method_lr(method.name))
    batches = batch_order(train_set, cfg.train.batch_size, seed=cfg.train.seed)
    pad = bench.tokenizer.pad_token_id

    def step(indices: list[int]) -> None:
        batch = make_batch(train_set, indices, pad, rt.device)
        with rt.autocast():
            loss, _ = per_example_loss(tuned, batch)
        loss.sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    tuned.train()
    step(batches[0])
    step_s = _timed(lambda: step(batches[min(1, len(batches) - 1)]))
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
    gen_s = _generation_s(bench, tuned, [ex.prompt_ids for ex in bench.encoded["test"]])
    return {"train": train_s, "validation": val_s, "generation": gen_s, "step": step_s,
            "steps": budget["planned_steps"]}


def estimate_run(cfg: Config) -> str:
    """Lines estimating each record's time and the total, measured on this machine."""
    with tempfile.TemporaryDirectory() as tmp:
        tick = time.perf_counter()
        bench, _ = prepare(cfg, Path(tmp), show_progress=False)
        prepare_s = time.perf_counter() - tick
    cfg = bench.cfg  # task settings derived from the data
    out = [f"estimated time of `compare` here ({bench.runtime.device}, {bench.runtime.precision}), from measured "
           f"steps: loading {prepare_s:.0f} s"]
    total = prepare_s
    test_prompts = [ex.prompt_ids for ex in bench.encoded["test"]]
    zero = ZERO_SHOT.build(bench.base_lm, cfg, bench.tokenizer)
    for name in cfg.eval.baselines:
        if name == "zero-shot":
            seconds = _generation_s(bench, zero, test_prompts)
        elif name == "zero-shot-chat" and getattr(bench.tokenizer, "chat_template", None):
            seconds = _generation_s(bench, zero, chat_prompts(bench))
        else:
            continue
        total += seconds
        out.append(f"  {name}: generation {seconds:.0f} s")
    for name in cfg.methods:
        t = _method_s(bench, METHODS[name])
        seconds = t["train"] + t["validation"] + t["generation"]
        total += seconds
        out.append(f"  {name}: training {t['train']:.0f} s ({t['steps']} steps x {t['step']:.1f} s), validation "
                   f"{t['validation']:.0f} s, generation {t['generation']:.0f} s")
    extra = " (a learning-rate search adds its trials: not estimated)" if cfg.search.enabled else ""
    out.append(f"  total: about {total / 60:.1f} min with one seed{extra}")
    if cfg.eval.decide and cfg.methods:
        out.append(f"  then, only while the verdict is open: more test articles for the tied records, at most "
                   f"{cfg.eval.decide_seconds / 60:.1f} min (eval.decide_seconds)")
    return "\n".join(out)
