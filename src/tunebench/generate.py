"""Batched, left-padded, KV-cached greedy generation that returns only the new text (ANCHORS #7, #8)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from tunebench.data.format import left_pad
from tunebench.methods.base import TunedModel


@dataclass
class Generated:
    texts: list[str]
    new_tokens: list[int]
    """Generated tokens per summary (up to and including EOS)."""
    hit_max: list[bool]
    """Whether a summary ran to max_new_tokens without an EOS."""


def cut_text(text: str, cut: str) -> str:
    """Where a summary ends: at EOS (already cut), at the first non-empty line, or at the first blank line."""
    if cut == "first_line":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[0] if lines else ""
    if cut == "blank_line":
        return text.strip().split("\n\n", 1)[0].strip()
    return text.strip()


def generation_config(tokenizer, max_new_tokens: int) -> GenerationConfig:
    # A fresh config, so a model's own sampling defaults (temperature, top_p...) never leak in.
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def until_eos(tokens: list[int], eos_id: int) -> list[int]:
    """Tokens before the first EOS: each sequence stops on its own EOS, whatever the others do."""
    return tokens[:tokens.index(eos_id)] if eos_id in tokens else tokens


@torch.no_grad()
def generate_summaries(model: TunedModel, tokenizer, prompts: list[list[int]], batch_size: int,
                       max_new_tokens: int, cut: str = "eos", device: str = "cpu",
                       autocast: AbstractContextManager | None = None, progress=None) -> Generated:
    """Greedy summaries for tokenised prompts, in the prompts' order.

    Prompts are sorted by length so batches carry little padding; each batch is left-padded and
    decoded with a KV cache; only tokens after the prompt are decoded.
    """
    model.eval()
    config = generation_config(tokenizer, max_new_tokens)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts, counts, hit = [""] * len(prompts), [0] * len(prompts), [False] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = left_pad([prompts[i] for i in chunk], tokenizer.pad_token_id)
        with autocast or nullcontext():
            out = model.generate(ids.to(device), mask.to(device), config)
        for row, index in enumerate(chunk):
            tokens = until_eos(out[row].tolist(), tokenizer.eos_token_id)
            texts[index] = cut_text(tokenizer.decode(tokens, skip_special_tokens=True), cut)
            counts[index] = min(len(tokens) + 1, max_new_tokens)
            hit[index] = len(tokens) >= max_new_tokens
        if progress is not None:
            progress.update(len(chunk))
    return Generated(texts, counts, hit)
