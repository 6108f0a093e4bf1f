"""The demo's decoding, as it was and as it is, interleaved in one process so machine noise hits both alike.

Before: test articles in batches of 20, every summary decoded to eval.max_new_tokens, the cut applied to the text
afterwards. Now: all test articles in one batch (the demo's eval.batch_size), each summary ended as soon as the cut
ends it (generate.AtCut). Prints seconds per record for both, the ratio, how many kept texts agree, and the
validation pass a one-epoch run no longer makes.

    .venv/bin/python benchmarks/demo_decoding.py --rounds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from tunebench.config import load_config
from tunebench.generate import cut_text, generate_summaries
from tunebench.methods import ZERO_SHOT
from tunebench.train import evaluate_loss
from tunebench.workbench import chat_prompts, prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved before/now rounds per prompt set")
    parser.add_argument("--old-batch", type=int, default=20, help="the demo's eval.batch_size before")
    args = parser.parse_args()
    cfg = load_config("demo")
    with TemporaryDirectory() as tmp:
        bench, _ = prepare(cfg, Path(tmp), show_progress=False)
    cfg = bench.cfg  # the task settings derived from the data
    rt, tok = bench.runtime, bench.tokenizer
    model = ZERO_SHOT.build(bench.base_lm, cfg, tok)
    old = dataclasses.replace(cfg.eval, cut="eos", batch_size=args.old_batch)
    sets = {"zero-shot": [ex.prompt_ids for ex in bench.encoded["test"]], "zero-shot-chat": chat_prompts(bench)}
    print(f"{rt.device}, {rt.precision}, {len(sets['zero-shot'])} test articles, max_new_tokens "
          f"{cfg.eval.max_new_tokens}, cut {cfg.eval.cut}")
    for name, prompts in sets.items():
        times = {"before": [], "now": []}
        for _ in range(args.rounds):
            tick = time.perf_counter()
            before = generate_summaries(model, tok, prompts, old.batch_size, old, rt.device, rt.autocast())
            times["before"].append(time.perf_counter() - tick)
            tick = time.perf_counter()
            now = generate_summaries(model, tok, prompts, cfg.eval.batch_size, cfg.eval, rt.device, rt.autocast())
            times["now"].append(time.perf_counter() - tick)
        kept = [cut_text(tok.decode(t, skip_special_tokens=True), cfg.eval.cut, cfg.eval.max_sentences)
                for t in before.tokens]
        same = sum(a == b for a, b in zip(kept, now.texts, strict=True))
        b, n = statistics.median(times["before"]), statistics.median(times["now"])
        print(f"{name}: before {b:.1f} s ({sum(before.new_tokens)} tokens), now {n:.1f} s ({sum(now.new_tokens)} "
              f"tokens); now/before {n / b:.2f}; kept text identical for {same}/{len(prompts)}")
    tick = time.perf_counter()
    evaluate_loss(model, bench.encoded["val"], cfg.train.batch_size, tok.pad_token_id, rt)
    print(f"one validation pass ({len(bench.encoded['val'])} pairs), which a one-epoch run now skips: "
          f"{time.perf_counter() - tick:.1f} s per method")


if __name__ == "__main__":
    main()
