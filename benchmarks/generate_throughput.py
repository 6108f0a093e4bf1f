"""Generation throughput: tunebench's batched KV-cached evaluation against (1) a plain per-example
`model.generate` loop and (2) the original study's loop (no KV cache: the whole sequence is re-run for every
new token), on the same model, prompts and greedy settings, in one run. The outputs are checked equal.

    .venv/bin/python benchmarks/generate_throughput.py --n 16 --max-new-tokens 32 [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from tunebench.config import DataConfig, EvalConfig, load_config
from tunebench.data import load_examples, select_splits
from tunebench.data.format import encode_prompt
from tunebench.generate import generate_summaries, until_eos
from tunebench.methods import ZERO_SHOT
from tunebench.models import load_model


@torch.no_grad()
def per_example_generate(lm, tokenizer, prompts, max_new_tokens, device):
    out = []
    for prompt in prompts:
        ids = torch.tensor([prompt], device=device)
        new = lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                          num_beams=1, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        out.append(until_eos(new[0, len(prompt):].tolist(), tokenizer.eos_token_id))
    return out


@torch.no_grad()
def no_cache_loop(lm, tokenizer, prompts, max_new_tokens, device):
    """The original study's decoding, one example at a time: no KV cache, full recompute per token."""
    out = []
    for prompt in prompts:
        ids, new = list(prompt), []
        for _ in range(max_new_tokens):
            logits = lm(input_ids=torch.tensor([ids], device=device), use_cache=False).logits
            token = int(logits[0, -1].argmax())
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
            ids.append(token)
        out.append(new)
    return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--n", type=int, default=16, help="test articles")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-no-cache", action="store_true", help="skip the slow original loop")
    args = parser.parse_args()

    cfg = load_config("demo")
    data_cfg = DataConfig(n_test=args.n, n_val=0)
    test = select_splits(load_examples(data_cfg), data_cfg).test
    lm, tokenizer = load_model(args.model)
    lm.to(args.device)
    tuned = ZERO_SHOT.build(lm, cfg, tokenizer)
    prompts = [encode_prompt(tokenizer, ex.article, cfg.data.separator, cfg.data.max_article_tokens) for ex in test]
    settings = EvalConfig(max_new_tokens=args.max_new_tokens, cut="eos")

    ours, t_ours = timed(lambda: generate_summaries(tuned, tokenizer, prompts, args.batch_size, settings,
                                                    args.device).tokens)
    plain, t_plain = timed(lambda: per_example_generate(lm, tokenizer, prompts, args.max_new_tokens, args.device))
    rows = [("tunebench (batched, KV cache)", ours, t_ours), ("per-example model.generate", plain, t_plain)]
    if not args.skip_no_cache:
        original, t_orig = timed(lambda: no_cache_loop(lm, tokenizer, prompts, args.max_new_tokens, args.device))
        rows.append(("original loop (no KV cache)", original, t_orig))
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model {args.model}, {len(prompts)} prompts, <= {args.max_new_tokens} new tokens, greedy, {device}")
    for name, tokens, seconds in rows:
        n_tokens = sum(len(t) for t in tokens)
        same = sum(a == b for a, b in zip(tokens, ours, strict=True))
        print(f"{name:32s} {len(prompts) / seconds:7.2f} summaries/s {n_tokens / seconds:8.1f} new tokens/s "
              f"{seconds:7.1f} s  identical to tunebench: {same}/{len(prompts)}")
    for name, _, seconds in rows[1:]:
        print(f"speed-up of tunebench over {name}: {seconds / t_ours:.2f}x")


if __name__ == "__main__":
    main()
