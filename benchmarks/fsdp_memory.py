"""Per-process memory of full fine-tuning in one process and sharded over two (`train.fsdp=true` under `torchrun`).

    .venv/bin/python benchmarks/fsdp_memory.py [--hidden 768] [--layers 12]

A random Llama-style model of the given size (byte tokenizer, no download) is fully fine-tuned on the `smoke`
preset's data in fp32, once as one process and once as two `torchrun` processes with FSDP (one thread each).
Printed per process: the training phase's peak RSS and the bytes of parameters, gradients and AdamW moments it
holds (its shards). The writer (rank 0) also keeps the whole base model on its host to copy each record from;
the other ranks hold only their shards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from parallel_jobs import save_model  # noqa: E402  (the same random model as the other torchrun benchmark)


def run(model: Path, runs: Path, name: str, two: bool) -> dict:
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] if two \
        else [sys.executable]
    command = [*head, "-m", "tunebench", "compare", "--preset", "smoke", "--quiet", "--runs-dir", str(runs),
               "--name", name, "--set", f"model.name={model}", "methods=[full]", "eval.baselines=[]",
               "data.n_test=2", "eval.serving_prompts=0", "train.threads=1", "train.epochs=1",
               *(["train.fsdp=true"] if two else [])]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    results = json.loads((runs / name / "results.json").read_text())
    return next(r for r in results["records"] if r["name"] == "full")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, runs = Path(tmp) / "model", Path(tmp) / "runs"
        save_model(model, args.hidden, args.layers)
        one, two = run(model, runs, "one", False), run(model, runs, "two", True)
    mb = 2 ** 20
    print(f"random Llama hidden {args.hidden}, {args.layers} layers, {one['params']['total'] / 1e6:.1f}M parameters; "
          "full fine-tuning, fp32, smoke data, 1 epoch")
    print(f"{'':34s} {'peak RSS MB':>12s} {'params MB':>10s} {'grads MB':>9s} {'AdamW MB':>9s}")
    held = [one["train"][k] / mb for k in ("parameter_bytes", "gradient_bytes", "optimizer_state_bytes")]
    print(f"{'1 process':34s} {one['phases']['train']['peak_rss_mb']:12.0f} {held[0]:10.1f} {held[1]:9.1f} "
          f"{held[2]:9.1f}")
    for rank, figures in enumerate(two["phases"]["train"]["ranks"]):
        shares = two["train"]  # the writer's shards; FSDP gives every rank an equal share (dim 0 in N chunks)
        print(f"{f'2 processes (FSDP), rank {rank}':34s} {figures['peak_rss_mb']:12.0f} "
              f"{shares['parameter_bytes'] / mb:10.1f} {shares['gradient_bytes'] / mb:9.1f} "
              f"{shares['optimizer_state_bytes'] / mb:9.1f}")
    peaks = [r["peak_rss_mb"] / one["phases"]["train"]["peak_rss_mb"] for r in two["phases"]["train"]["ranks"]]
    print("peak RSS per process / one process's: " + ", ".join(f"rank {n} x{r:.2f}" for n, r in enumerate(peaks)))


if __name__ == "__main__":
    main()
