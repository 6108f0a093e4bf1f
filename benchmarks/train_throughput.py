"""Training throughput: tunebench's loop against transformers `Trainer` (+ PEFT for LoRA and prompt tuning),
same model, examples, batch size, steps and precision, runs interleaved; plus model FLOPs utilisation
against this machine's matmul peak measured in the same run.

    .venv/bin/python benchmarks/train_throughput.py --steps 4 --batch-size 8 [--rounds 2] [--device cuda]

MFU's model FLOPs per token: 2·N forward over the transformer body (LM head left out, since tunebench
computes it only at summary positions), plus 2·N backward for activation gradients when gradients flow
to the input (prompt tuning, LoRA), or backward through the trained block only for last-block, plus
4·(trained parameters) for their weight gradients. Peak: the best of fp32 (or bf16) square matmuls.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tunebench.config import load_config
from tunebench.data import load_examples, select_splits
from tunebench.data.format import encode_example
from tunebench.methods import METHODS
from tunebench.methods.last_block import transformer_blocks
from tunebench.models import load_model
from tunebench.runtime import resolve_runtime
from tunebench.train import train


def matmul_peak_flops(dtype: torch.dtype, device: str, size: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    for _ in range(2):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def _in_body(name: str) -> bool:
    return not any(part in name for part in ("embed", "wte", "wpe", "lm_head"))


def flops_per_token(lm, tuned, method: str) -> float:
    """Model FLOPs per training token (see the module docstring); the LM head and embeddings are left out."""
    body = sum(p.numel() for n, p in lm.named_parameters() if _in_body(n))
    trained = sum(p.numel() for n, p in tuned.named_parameters() if p.requires_grad and _in_body(n))
    if method == "last-block":
        block = sum(p.numel() for p in transformer_blocks(lm)[-1].parameters())
        return 2 * body + 2 * block + 4 * trained
    return 4 * body + 4 * trained


def run_tunebench(base, cfg, name, examples, args, runtime, pad_id):
    tuned = METHODS[name].apply(copy.deepcopy(base), cfg, tokenizer=args.tokenizer).to(runtime.device)
    tcfg = copy.deepcopy(cfg.train)
    tcfg.epochs, tcfg.max_steps, tcfg.batch_size, tcfg.warmup_steps = 1, args.steps, args.batch_size, 0
    with tempfile.TemporaryDirectory() as tmp:
        result = train(tuned, examples, [], tcfg, cfg.method_lr(name), runtime, Path(tmp) / "w.safetensors", pad_id,
                       show_progress=False)
    return result.train_tokens / result.train_time_s, flops_per_token(base, tuned, name)


def peer_model(base, cfg, name, tokenizer):
    """The same method set up the way PEFT's and Trainer's docs show it."""
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    lm = copy.deepcopy(base)
    if name == "lora":
        tuned = METHODS["lora"].apply(copy.deepcopy(base), cfg, tokenizer)  # only to read the same targets
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
    return METHODS["last-block"].apply(lm, cfg, tokenizer).lm  # same parameters frozen, plain model


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
        targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                                  learning_rate=cfg.method_lr(name), warmup_steps=0, report_to=[],
                                  save_strategy="no", logging_strategy="no", use_cpu=runtime.device == "cpu",
                                  bf16=runtime.precision == "bf16", dataloader_num_workers=0, seed=0)
        trainer = Trainer(model=model, args=targs, train_dataset=rows,
                          data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
        metrics = trainer.train().metrics
    tokens = sum(len(r["input_ids"]) for r in rows)
    return tokens / metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats; the median is reported")
    parser.add_argument("--methods", default="prompt-tuning,lora,last-block")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    cfg = load_config("demo")
    runtime = resolve_runtime(args.precision)
    base, tokenizer = load_model(args.model)
    args.tokenizer = tokenizer
    n = args.steps * args.batch_size  # one epoch of exactly these examples for both
    d = cfg.data
    data_cfg = copy.deepcopy(d)
    data_cfg.max_train, data_cfg.n_test, data_cfg.n_val = n, 1, 1
    pairs = select_splits(load_examples(data_cfg), data_cfg).train
    examples = [encode_example(tokenizer, ex.id, ex.article, ex.summary, d.separator, d.max_article_tokens,
                               d.max_summary_tokens) for ex in pairs]
    peak = matmul_peak_flops(torch.bfloat16 if runtime.precision == "bf16" else torch.float32, runtime.device)
    device = torch.cuda.get_device_name() if runtime.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model {args.model}; {n} examples, batch {args.batch_size}, {args.steps} steps, {runtime.precision}, "
          f"{device}; measured {runtime.precision} matmul peak {peak / 1e9:.0f} GFLOP/s")
    for name in args.methods.split(","):
        ours, peers, flops = [], [], 0.0
        for _ in range(args.rounds):  # interleaved: A, B, A, B ...
            speed, flops = run_tunebench(base, cfg, name, examples, args, runtime, tokenizer.pad_token_id)
            ours.append(speed)
            peers.append(run_trainer(base, cfg, name, examples, args, runtime, tokenizer))
        a, b = statistics.median(ours), statistics.median(peers)
        mfu = a * flops / peak
        print(f"{name:14s} tunebench {a:7.1f} tok/s | Trainer{'+PEFT' if name != 'last-block' else ''} "
              f"{b:7.1f} tok/s | ratio {a / b:5.2f}x | tunebench MFU {100 * mfu:4.1f}%")


if __name__ == "__main__":
    main()
