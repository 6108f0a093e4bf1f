"""Training throughput: tunebench's loop against transformers `Trainer` (+ PEFT for LoRA and prompt tuning),
same model, examples, batch size, steps, epochs and precision, runs interleaved; plus model FLOPs utilisation
against this machine's matmul peak measured in the same run.

    .venv/bin/python benchmarks/train_throughput.py --steps 4 --batch-size 8 [--epochs 5] [--rounds 2]
        [--methods last-block] [--cache-off-too] [--device cuda] [--precision bf16]

MFU counts the FLOPs tunebench actually executes per training token, over the transformer body (the LM head
and embeddings left out, since tunebench computes the head only at summary positions): forward 2·N, where
the frozen lower blocks count once per example rather than once per epoch when their output is cached
(last-block); backward 2·N for activation gradients when gradients flow to the input (prompt tuning, LoRA),
else 2·(trained blocks); plus 2·(trained parameters) for weight gradients. Peak: fp32 (or bf16) square
matmuls measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path

import torch

from tunebench.config import load_config
from tunebench.data import load_examples, select_splits
from tunebench.data.format import encode_example
from tunebench.data.task import resolve_task
from tunebench.layers import transformer_blocks
from tunebench.methods import METHODS
from tunebench.models import load_model
from tunebench.runtime import matmul_rate, resolve_runtime
from tunebench.train import train


def _in_body(name: str) -> bool:
    return not any(part in name for part in ("embed", "wte", "wpe", "lm_head"))


def flops_per_token(tuned, epochs: int, cached: bool) -> float:
    """FLOPs executed per training token (see the module docstring); the LM head and embeddings are left out."""
    body = sum(p.numel() for n, p in tuned.lm.named_parameters() if _in_body(n))
    trained = sum(p.numel() for n, p in tuned.named_parameters() if p.requires_grad and _in_body(n))
    depth = tuned.frozen_depth()
    trunk = sum(p.numel() for block in transformer_blocks(tuned.lm)[:depth] for p in block.parameters())
    forward = 2 * (body - trunk) + 2 * trunk / (epochs if cached else 1)
    backward = 2 * body if depth == 0 else 2 * (body - trunk)
    return forward + backward + 2 * trained


def run_tunebench(base, cfg, name, examples, args, runtime, pad_id, cache: bool = True):
    tuned = METHODS[name].build(copy.deepcopy(base), cfg, tokenizer=args.tokenizer).to(runtime.device)
    tcfg = copy.deepcopy(cfg.train)
    tcfg.epochs, tcfg.max_steps, tcfg.batch_size, tcfg.warmup_steps = args.epochs, None, args.batch_size, 0
    tcfg.cache_frozen = cache
    with tempfile.TemporaryDirectory() as tmp:  # the frozen-trunk cache is built inside the timed run
        result = train(tuned, examples, [], tcfg, cfg.method_lr(name), runtime, Path(tmp) / "w.safetensors", pad_id,
                       show_progress=False, cache_dir=Path(tmp) / "frozen")
    assert result.steps == args.steps * args.epochs
    cached = bool(result.frozen_cache)
    return result.train_tokens / result.train_time_s, flops_per_token(tuned, args.epochs, cached), cached


def peer_model(base, cfg, name, tokenizer):
    """The same method set up the way PEFT's and Trainer's docs show it."""
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    lm = copy.deepcopy(base)
    if name == "lora":
        tuned = METHODS["lora"].build(copy.deepcopy(base), cfg, tokenizer)  # only to read the same targets
        lo = cfg.method.lora
        return get_peft_model(lm, LoraConfig(task_type=TaskType.CAUSAL_LM, r=lo.r, lora_alpha=lo.alpha,
                                             lora_dropout=lo.dropout,
                                             target_modules=tuned.adapter_config.target_modules))
    if name == "prompt-tuning":
        pt = cfg.method.prompt_tuning
        return get_peft_model(lm, PromptTuningConfig(task_type=TaskType.CAUSAL_LM,
                                                     num_virtual_tokens=pt.num_virtual_tokens,
                                                     prompt_tuning_init=PromptTuningInit.TEXT,
                                                     prompt_tuning_init_text=pt.init_text,
                                                     tokenizer_name_or_path=str(args_tokenizer_dir(tokenizer))))
    return METHODS["last-block"].build(lm, cfg, tokenizer).lm  # same parameters frozen, plain model


def args_tokenizer_dir(tokenizer) -> Path:
    folder = Path(tempfile.mkdtemp())
    tokenizer.save_pretrained(folder)
    return folder


def run_trainer(base, cfg, name, examples, args, runtime, tokenizer):
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model = peer_model(base, cfg, name, tokenizer)
    rows = [{"input_ids": ex.prompt_ids + ex.target_ids,
             "labels": [-100] * len(ex.prompt_ids) + ex.target_ids} for ex in examples]
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch_size,
                                  num_train_epochs=args.epochs,
                                  learning_rate=cfg.method_lr(name), warmup_steps=0, report_to=[],
                                  save_strategy="no", logging_strategy="no", use_cpu=runtime.device == "cpu",
                                  bf16=runtime.precision == "bf16", dataloader_num_workers=0, seed=0)
        trainer = Trainer(model=model, args=targs, train_dataset=rows,
                          data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
        metrics = trainer.train().metrics
    tokens = sum(len(r["input_ids"]) for r in rows) * args.epochs
    return tokens / metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per epoch")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the same steps * batch-size examples")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats; the median is reported")
    parser.add_argument("--methods", default="prompt-tuning,lora,last-block")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="cuda: the current GPU, for tunebench and Trainer alike")
    parser.add_argument("--cache-off-too", action="store_true",
                        help="also run tunebench with train.cache_frozen=false where it has frozen lower blocks")
    args = parser.parse_args()

    cfg = load_config("demo")
    runtime = resolve_runtime(args.precision, device=args.device)
    base, tokenizer = load_model(args.model)
    base.to(runtime.device)
    args.tokenizer = tokenizer
    n = args.steps * args.batch_size  # one epoch of exactly these examples for both
    data_cfg = copy.deepcopy(cfg.data)
    data_cfg.max_train, data_cfg.n_test, data_cfg.n_val = n, 1, 1
    splits = select_splits(load_examples(data_cfg), data_cfg)
    cfg, _ = resolve_task(cfg, splits, tokenizer)  # the demo's summary length is derived from the data (auto)
    d, pairs = cfg.data, splits.train
    examples = [encode_example(tokenizer, ex.id, ex.article, ex.summary, d.separator, d.max_article_tokens,
                               d.max_summary_tokens) for ex in pairs]
    peak = 1e9 * matmul_rate(torch.bfloat16 if runtime.precision == "bf16" else torch.float32, size=2048,
                             device=runtime.device)
    device = torch.cuda.get_device_name(runtime.device) if runtime.device.startswith("cuda") else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"model {args.model}; {n} examples, batch {args.batch_size}, {args.steps} steps x {args.epochs} epochs, "
          f"{runtime.precision}, {device}; measured {runtime.precision} matmul peak {peak / 1e9:.0f} GFLOP/s")
    for name in args.methods.split(","):
        ours, plain, peers, flops, plain_flops, cached = [], [], [], 0.0, 0.0, False
        for _ in range(args.rounds):  # interleaved: A, B, A, B ...
            speed, flops, cached = run_tunebench(base, cfg, name, examples, args, runtime, tokenizer.pad_token_id)
            ours.append(speed)
            if cached and args.cache_off_too:
                speed, plain_flops, _ = run_tunebench(base, cfg, name, examples, args, runtime,
                                                      tokenizer.pad_token_id, cache=False)
                plain.append(speed)
            peers.append(run_trainer(base, cfg, name, examples, args, runtime, tokenizer))
        a, b = statistics.median(ours), statistics.median(peers)
        peer = "Trainer" + ("+PEFT" if name != "last-block" else "")
        print(f"{name:14s} tunebench {a:7.1f} tok/s{' (frozen cache)' if cached else ''} | {peer} {b:7.1f} tok/s "
              f"| ratio {a / b:5.2f}x | tunebench MFU {100 * a * flops / peak:4.1f}%")
        if plain:
            c = statistics.median(plain)
            print(f"{'':14s} tunebench without the cache {c:7.1f} tok/s | ratio to {peer} {c / b:5.2f}x "
                  f"| MFU {100 * c * plain_flops / peak:4.1f}% | the cache alone: {a / c:4.2f}x")


if __name__ == "__main__":
    main()
