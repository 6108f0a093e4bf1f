"""The highest MFU a training step can reach on this machine when the matmuls are free of every other cost: one
transformer block's weight matmuls (forward and the activation gradient, as LoRA and prompt tuning need through the
frozen base model) and its attention (forward and backward), each timed alone at the demo's batch shape, in one run.

    .venv/bin/python benchmarks/attention_ceiling.py [--model embedded:smollm2-135m] [--batch 8] [--seq 290]
        [--precision bf16] [--rounds 5]

MFU as train_throughput.py counts it: the body's weight FLOPs (2 per weight forward, 2 for the activation
gradient) over the time, against square matmuls measured in the same run. That script leaves attention's own FLOPs
out, so attention's time is what the ceiling loses: ceiling = weight FLOPs / (weight-matmul time + attention time)
/ peak; the ceiling with attention's FLOPs counted too (its causal half, as PaLM-style MFU counts them) is printed
beside it. Norms, activations, casts, the LM head, the loss and the optimizer
are left out, so a real step stays below it. Attention is timed in three kernels: PyTorch's CPU flash attention
with the left-padding mask tunebench's batches carry, the same kernel with a plain causal mask (no padding), and
transformers' eager attention (`bmm`, softmax in fp32).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from tunebench.layers import transformer_blocks
from tunebench.models import load_model
from tunebench.runtime import matmul_rate


def timed(step, rounds: int, repeats: int = 3) -> float:
    """Median seconds of one `step()` over `rounds` rounds of `repeats` (one warm-up first)."""
    step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        times.append((time.perf_counter() - start) / repeats)
    return statistics.median(times)


def weight_matmuls(block: torch.nn.Module, x: torch.Tensor):
    """Forward and activation gradient through every Linear of `block` on `x` (frozen weights, as in LoRA), each
    Linear fed an input of its own width; returns (step, FLOPs per step)."""
    linears = [m for m in block.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise SystemExit("this block has no torch.nn.Linear (GPT-2's Conv1D is not counted): use a Llama-style model")
    inputs = [torch.randn(x.shape[0], m.in_features, dtype=x.dtype, requires_grad=True) for m in linears]
    grads = [torch.randn(x.shape[0], m.out_features, dtype=x.dtype) for m in linears]  # dense, as in training
    flops = sum(4 * x.shape[0] * m.in_features * m.out_features for m in linears)

    def step():
        for m, inp, grad in zip(linears, inputs, grads, strict=True):
            torch.autograd.grad(F.linear(inp, m.weight), inp, grad)
    return step, flops


def attention(batch: int, heads: int, seq: int, head_dim: int, dtype: torch.dtype, kind: str):
    q, k, v = (torch.randn(batch, heads, seq, head_dim, dtype=dtype, requires_grad=True) for _ in range(3))
    grad = torch.randn(batch, heads, seq, head_dim, dtype=dtype)
    lengths = torch.linspace(seq * 0.6, seq, batch).long()  # left padding as in a batch of articles of mixed length
    real = torch.arange(seq)[None, :] >= (seq - lengths)[:, None]
    causal = torch.tril(torch.ones(seq, seq, dtype=torch.bool))
    keep = (causal[None] & real[:, None, :])[:, None] | torch.eye(seq, dtype=torch.bool)  # a pad row sees itself
    additive = torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, float("-inf"))

    def step():
        if kind == "flash, padding mask":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        elif kind == "flash, causal":
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # eager: transformers' eager_attention_forward, in short
            scores = (q @ k.transpose(-1, -2)) * head_dim**-0.5 + additive
            out = torch.softmax(scores.float(), dim=-1).to(dtype) @ v
        torch.autograd.grad(out, (q, k, v), grad)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=290, help="tokens per row (the demo's batches: about 290)")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    lm, _ = load_model(args.model)
    config = lm.config
    block = transformer_blocks(lm)[0].to(dtype).requires_grad_(False)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    peak = matmul_rate(dtype)
    tokens = args.batch * args.seq
    matmul_step, flops = weight_matmuls(block, torch.empty(tokens, config.hidden_size, dtype=dtype))
    t_matmul = timed(matmul_step, args.rounds)
    print(f"{torch.get_num_threads()} threads, {args.precision}; square matmul peak {peak:.0f} GFLOP/s; one block of "
          f"{args.model} on {args.batch} x {args.seq} tokens ({heads} heads of {head_dim})")
    print(f"weight matmuls, forward + activation gradient: {t_matmul * 1e3:.1f} ms "
          f"({flops / t_matmul / 1e9:.0f} GFLOP/s, {flops / t_matmul / 1e9 / peak:.0%} of the peak)")
    square = 4 * args.batch * heads * args.seq**2 * head_dim * 3  # QK^T and PV, forward + 2x backward, every pair
    for kind in ("flash, padding mask", "flash, causal", "eager, padding mask"):
        t_attention = timed(attention(args.batch, heads, args.seq, head_dim, dtype, kind), args.rounds)
        ceiling = flops / (t_matmul + t_attention) / 1e9 / peak
        counted = (flops + square / 2) / (t_matmul + t_attention) / 1e9 / peak
        print(f"attention ({kind}), forward + backward: {t_attention * 1e3:.1f} ms "
              f"({square / 2 / t_attention / 1e9:.0f} GFLOP/s counting the causal half, "
              f"{square / t_attention / 1e9:.0f} counting every pair); {t_attention / (t_matmul + t_attention):.0%} "
              f"of matmuls + attention; MFU ceiling {ceiling:.0%} (weight FLOPs), {counted:.0%} (attention's causal "
              "half counted too)")


if __name__ == "__main__":
    main()
