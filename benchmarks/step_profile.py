"""Where one training step's time goes: consecutive forward+backward steps of one method on the demo's first batch
(wall, user and system seconds each), then torch.profiler's top operators for one step after them, per precision.

    .venv/bin/python benchmarks/step_profile.py [--method lora] [--precisions fp32,bf16] [--steps 5] [--top 10]

The batch is the demo's shape (8 real XSum pairs, the demo's article and summary lengths); no optimizer step, so
every step does the same arithmetic on the same weights.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

from torch.profiler import ProfilerActivity, profile

from tunebench.config import load_config
from tunebench.data import load_examples, select_splits
from tunebench.data.format import encode_example
from tunebench.data.task import resolve_task
from tunebench.methods import METHODS
from tunebench.models import load_model
from tunebench.runtime import matmul_rate, resolve_runtime
from tunebench.train import make_batch, per_example_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--method", default="lora")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()

    cfg = load_config("demo")
    base, tokenizer = load_model(args.model)
    data = copy.deepcopy(cfg.data)
    data.max_train, data.n_test, data.n_val = cfg.train.batch_size, 1, 1
    splits = select_splits(load_examples(data), data)
    cfg, _ = resolve_task(cfg, splits, tokenizer)
    d = cfg.data
    examples = [encode_example(tokenizer, ex.id, ex.article, ex.summary, d.separator, d.max_article_tokens,
                               d.max_summary_tokens) for ex in splits.train]
    batch = make_batch(examples, list(range(len(examples))), tokenizer.pad_token_id, "cpu")
    import torch

    print(f"model {args.model}, method {args.method}, batch {tuple(batch['input_ids'].shape)}, "
          f"{torch.get_num_threads()} threads; matmul peak fp32 {matmul_rate(torch.float32):.0f} GFLOP/s, "
          f"bf16 {matmul_rate(torch.bfloat16):.0f} GFLOP/s")
    for precision in args.precisions.split(","):
        runtime = resolve_runtime(precision, device="cpu")
        tuned = METHODS[args.method].build(copy.deepcopy(base), cfg, tokenizer=tokenizer)

        def step(tuned=tuned, runtime=runtime):
            with runtime.autocast():
                per_row, _ = per_example_loss(tuned, batch)
            per_row.sum().backward()

        for n in range(args.steps):
            wall, cpu = time.perf_counter(), os.times()
            step()
            done = os.times()
            print(f"{precision} step {n}: wall {time.perf_counter() - wall:5.2f} s, user {done.user - cpu.user:5.2f} s,"
                  f" system {done.system - cpu.system:5.2f} s", flush=True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=48))


if __name__ == "__main__":
    main()
