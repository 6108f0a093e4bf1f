"""Training with attention dropout on a CPU: PyTorch's SDPA (no fused CPU kernel with dropout: its math kernel)
against transformers' eager attention, which `train.training_attention` switches to there. One forward and backward
of a soft prompt through GPT-2 small's architecture (random weights), each case in a fresh process.

    .venv/bin/python benchmarks/cpu_attention_dropout.py [--batch 8] [--tokens 640] [--precision bf16] [--rounds 2]

Prints each case's peak RSS and seconds, and the ratios eager / SDPA.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def one(implementation: str, batch: int, tokens: int, precision: str) -> dict:
    import torch

    from tunebench.models import load_model

    lm, _ = load_model("random:gpt2")
    lm.config._attn_implementation = implementation
    lm.train().requires_grad_(False)
    ids = torch.randint(0, lm.config.vocab_size - 1, (batch, tokens))
    prompt = torch.nn.Parameter(torch.rand(20, lm.config.n_embd) - 0.5)  # 20 soft tokens, as the seed study's
    tick = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        embeds = torch.cat([prompt.expand(batch, -1, -1), lm.get_input_embeddings()(ids)], dim=1)
        loss = lm(inputs_embeds=embeds, logits_to_keep=129).logits.float().logsumexp(-1).mean()
    loss.backward()
    return {"seconds": time.perf_counter() - tick,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=640, help="article + summary tokens (the seed study: 512 + 128)")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.batch, args.tokens, args.precision)))
        return
    runs: dict[str, list[dict]] = {"sdpa": [], "eager": []}
    for _ in range(args.rounds):
        for implementation in runs:  # interleaved, each in a fresh process (the peak is the process's)
            out = subprocess.run([sys.executable, __file__, "--one", implementation, "--batch", str(args.batch),
                                  "--tokens", str(args.tokens), "--precision", args.precision],
                                 capture_output=True, text=True, check=True).stdout
            runs[implementation].append(json.loads(out.strip().splitlines()[-1]))
    medians = {name: {key: statistics.median(r[key] for r in rows) for key in ("seconds", "peak_rss_mb")}
               for name, rows in runs.items()}
    for name, m in medians.items():
        print(f"{name:6s} forward + backward {m['seconds']:.1f} s, peak RSS {m['peak_rss_mb']:,.0f} MB "
              f"(median of {args.rounds})")
    print(f"eager / sdpa: time x{medians['eager']['seconds'] / medians['sdpa']['seconds']:.2f}, "
          f"peak RSS x{medians['eager']['peak_rss_mb'] / medians['sdpa']['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
