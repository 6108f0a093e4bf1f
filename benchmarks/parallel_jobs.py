"""Wall time of one `compare` run four ways on this machine: one process with one thread, one process with two,
`torchrun` with two one-thread processes sharing every batch (`train.parallel=data`) and the same splitting the
records (`train.parallel=jobs`); each whole command timed from outside (start-up included), runs interleaved.

    .venv/bin/python benchmarks/parallel_jobs.py [--rounds 1] [--hidden 256] [--layers 4] [--epochs 2]
        [--methods lora,prompt-tuning,last-block,full] [--cases one1,one2,data,jobs]

The model is a random Llama-style model of the given size with the byte tokenizer (no download), the run the
`smoke` preset with the given methods (in that order; the jobs mode takes them largest first whatever the order)
and the lead-1 baseline. `--cases` picks some of the four ways (ratios are printed when `one1` is among them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "1 process, 1 thread": ([], ["train.threads=1"]),
    "1 process, 2 threads": ([], ["train.threads=2"]),
    "torchrun 2 x 1 thread, data parallel": (["torchrun"], ["train.threads=1", "train.parallel=data"]),
    "torchrun 2 x 1 thread, jobs split": (["torchrun"], ["train.threads=1", "train.parallel=jobs"]),
}
KEYS = dict(zip(("one1", "one2", "data", "jobs"), CASES, strict=True))


def save_model(folder: Path, hidden: int, layers: int) -> None:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tunebench.models import byte_tokenizer

    tokenizer = byte_tokenizer()
    vocab = len(tokenizer)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=None, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def command(case: str, model: Path, runs: Path, name: str, epochs: int, methods: str) -> list[str]:
    launcher, extra = CASES[case]
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] if launcher \
        else [sys.executable]
    return [*head, "-m", "tunebench", "compare", "--preset", "smoke", "--quiet", "--runs-dir", str(runs),
            "--name", name, "--set", f"model.name={model}", f"methods=[{methods}]",
            "eval.baselines=[lead]", f"train.epochs={epochs}", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--methods", default="lora,prompt-tuning,last-block,full")
    parser.add_argument("--cases", default=",".join(KEYS))
    args = parser.parse_args()
    cases = [KEYS[key] for key in args.cases.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model, runs = Path(tmp) / "model", Path(tmp) / "runs"
        save_model(model, args.hidden, args.layers)
        times: dict[str, list[float]] = {case: [] for case in cases}
        for round_ in range(args.rounds):  # interleaved: every case once per round
            for n, case in enumerate(cases):
                start = time.perf_counter()
                done = subprocess.run(command(case, model, runs, f"r{round_}-{n}", args.epochs,
                                                     args.methods), capture_output=True,
                                      text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                times[case].append(time.perf_counter() - start)
                if done.returncode:
                    raise SystemExit(f"{case} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    base = statistics.median(times[KEYS["one1"]]) if KEYS["one1"] in times else None
    print(f"random Llama hidden {args.hidden}, {args.layers} layers; smoke, methods {args.methods} + lead-1, "
          f"{args.epochs} epochs; {args.rounds} round(s), median wall s")
    for case, values in times.items():
        wall = statistics.median(values)
        print(f"{case:40s} {wall:7.1f} s" + (f"   x{wall / base:4.2f} of 1 process, 1 thread" if base else ""))


if __name__ == "__main__":
    main()
