"""Training memory: peak RSS of the demo's configuration (SmolLM2-135M, batch 8, the demo's article and summary
lengths, its precision) per method, plain and with `train.activation_checkpointing` / `train.micro_batch_size`,
with the seconds per optimizer step each costs. Every case runs in a fresh process (peak RSS is the process's
high-water mark: model loading and data included, as a user's run sees it), cases interleaved per round.

    .venv/bin/python benchmarks/memory.py [--steps 3] [--rounds 1] [--methods prompt-tuning,lora,last-block]
        [--cases plain,checkpointing,checkpointing+micro2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {"plain": [], "checkpointing": ["train.activation_checkpointing=true"],
         "micro2": ["train.micro_batch_size=2"],
         "checkpointing+micro2": ["train.activation_checkpointing=true", "train.micro_batch_size=2"]}


def child(method: str, case: str, steps: int) -> None:
    """One case in this process: prepare the demo's data and model, train `steps` steps, print a JSON line."""
    import copy

    from tunebench.config import load_config
    from tunebench.methods import METHODS
    from tunebench.runtime import seed_everything
    from tunebench.train import train
    from tunebench.workbench import prepare

    cfg = load_config("demo", overrides=[f"methods=[{method}]", "train.budget=steps", f"train.max_steps={steps}",
                                         "eval.decide=false", *CASES[case]])
    with tempfile.TemporaryDirectory() as folder:
        bench, _ = prepare(cfg, Path(folder), show_progress=False)
        loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        seed_everything(0)
        tuned = METHODS[method].build(copy.deepcopy(bench.base_lm), bench.cfg, bench.tokenizer)
        tick = time.perf_counter()
        result = train(tuned, bench.encoded["train"], [], bench.cfg.train, bench.cfg.method_lr(method),
                       bench.runtime, Path(folder) / "w.safetensors",
                       bench.tokenizer.pad_token_id, show_progress=False)
        seconds = time.perf_counter() - tick
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "loaded_mb": loaded_mb,
                      "s_per_step": seconds / result.steps, "loss": result.train_loss_per_step,
                      "precision": bench.runtime.precision,
                      "tokens_per_batch": result.train_tokens / max(result.steps, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats; medians reported")
    parser.add_argument("--methods", default="prompt-tuning,lora,last-block")
    parser.add_argument("--cases", default="plain,checkpointing,checkpointing+micro2")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.steps)
        return
    cases = args.cases.split(",")
    seen: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for method in args.methods.split(","):
            for case in cases:
                out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--child", method, case],
                                     capture_output=True, text=True, check=True).stdout
                seen.setdefault((method, case), []).append(json.loads(out.strip().splitlines()[-1]))
    first = next(iter(seen.values()))[0]
    print(f"demo configuration, {first['precision']}, {args.steps} steps of batch 8 "
          f"(~{first['tokens_per_batch']:.0f} tokens), medians of {args.rounds} round(s)\n")
    print("| method | case | peak RSS MB | x plain | after prepare MB | s/step | x plain | max loss diff vs plain |")
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        plain = seen.get((method, "plain"))
        for case in cases:
            runs = seen[(method, case)]
            peak = statistics.median(r["peak_mb"] for r in runs)
            step = statistics.median(r["s_per_step"] for r in runs)
            loaded = statistics.median(r["loaded_mb"] for r in runs)
            if plain:
                p_peak = statistics.median(r["peak_mb"] for r in plain)
                p_step = statistics.median(r["s_per_step"] for r in plain)
                diff = max(abs(a - b) for a, b in zip(runs[0]["loss"], plain[0]["loss"], strict=True))
                ratios = f"{peak / p_peak:.2f}x", f"{step / p_step:.2f}x", f"{diff:.2g}"
            else:
                ratios = "-", "-", "-"
            print(f"| {method} | {case} | {peak:,.0f} | {ratios[0]} | {loaded:,.0f} | {step:.2f} | {ratios[1]} | "
                  f"{ratios[2]} |")


if __name__ == "__main__":
    main()
