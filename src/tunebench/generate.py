"""Batched, left-padded, KV-cached greedy generation that returns only the new text (docs/defects.md #7, #8)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, StoppingCriteria

from tunebench import distributed
from tunebench.config import EvalConfig
from tunebench.data.format import left_pad
from tunebench.methods.base import TunedModel
from tunebench.text import split_sentences


@dataclass
class Generated:
    texts: list[str]
    new_tokens: list[int]
    """Generated tokens per summary (up to and including EOS)."""
    hit_max: list[bool]
    """Whether a summary ran to max_new_tokens without an EOS."""
    tokens: list[list[int]]
    """The generated token ids before EOS, or up to the line break where decoding ended for the cut (`AtCut`)."""


def cut_text(text: str, cut: str, max_sentences: int | None = None) -> str:
    """Where a summary ends: at EOS (already cut), at the first non-empty line, or at the first blank line;
    then, optionally, only its first `max_sentences` sentences."""
    if cut == "first_line":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = lines[0] if lines else ""
    elif cut == "blank_line":
        text = text.strip().split("\n\n", 1)[0]
    text = text.strip()
    if max_sentences is not None:
        text = "\n".join(split_sentences(text)[:max_sentences])
    return text


DECODE_KEYS = ("max_new_tokens", "num_beams", "no_repeat_ngram_size", "length_penalty", "cut", "max_sentences")
"""The EvalConfig fields that decide how summaries are decoded (recorded with every result)."""


def generation_config(tokenizer, settings: EvalConfig) -> GenerationConfig:
    # A fresh config, so a model's own sampling defaults (temperature, top_p...) never leak in.
    extra = {"length_penalty": settings.length_penalty} if settings.num_beams > 1 else {}
    return GenerationConfig(max_new_tokens=settings.max_new_tokens, do_sample=False, num_beams=settings.num_beams,
                            no_repeat_ngram_size=settings.no_repeat_ngram_size, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, **extra)


class AtCut(StoppingCriteria):
    """Ends each greedy sequence as soon as its text is complete for the cut: a first non-empty line ended
    (`first_line`), or a blank line after some text (`blank_line`). What follows would be cut away, so the kept
    text is the same as when decoding on to max_new_tokens, only sooner (zero-shot otherwise runs to the limit
    on every article although only its first line is kept). `stopped[row]` holds how many tokens a row had
    when it was ended here (the rest of its row is padding)."""

    def __init__(self, tokenizer, cut: str, rows: int):
        self.tokenizer, self.marker = tokenizer, "\n" if cut == "first_line" else "\n\n"
        self.stopped: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        # input_ids: the new tokens only (generation starts from embeddings); a row is checked when its last
        # token holds a line break, so most steps decode nothing
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row, last in enumerate(input_ids[:, -1].tolist()):
            if self.stopped[row] is not None:
                done[row] = True
            elif "\n" in self.tokenizer.decode([last]):
                text = self.tokenizer.decode(input_ids[row].tolist(), skip_special_tokens=True)
                if self.marker in text.lstrip():
                    self.stopped[row], done[row] = input_ids.shape[1], True
        return done


def until_eos(tokens: list[int], eos_id: int) -> list[int]:
    """Tokens before the first EOS: each sequence stops on its own EOS, whatever the others do."""
    return tokens[:tokens.index(eos_id)] if eos_id in tokens else tokens


@contextmanager
def adapters_merged(model: torch.nn.Module) -> Iterator[None]:
    """Inside: every PEFT adapter layer (LoRA, DoRA, IA3) is merged into its base weight, as such a model is
    deployed, so its summaries cost what they would in use (PEFT's `merge`; unmerged, the adapter adds two small
    matmuls per layer at every decoding step: LoRA's generation took ~1.5x as long as last-block's in the demo).
    Afterwards PEFT unmerges and the base weights get their exact saved values back (subtracting the update
    again would leave rounding in them). Methods without adapter layers, and sharded models, pass through unchanged."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    # tests pass stand-in models; a sharded model (train.fsdp) is not merged: its weights are pieces on each rank
    modules = model.modules() if isinstance(model, torch.nn.Module) and not distributed.is_sharded_model(model) else []
    layers = [m for m in modules if isinstance(m, BaseTunerLayer) and not m.merged]
    # kept in host memory: on a GPU the merged model's memory is what generation costs
    saved = [{name: p.detach().to("cpu", copy=True) for name, p in m.get_base_layer().named_parameters()}
             for m in layers]
    with torch.no_grad():
        for layer in layers:
            layer.merge()
    try:
        yield
    finally:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Unmerge result can be inaccurate")  # the exact weights follow
            for layer, weights in zip(layers, saved, strict=True):
                layer.unmerge()
                for name, param in layer.get_base_layer().named_parameters():
                    param.copy_(weights[name])


@torch.no_grad()
def generate_summaries(model: TunedModel, tokenizer, prompts: list[list[int]], batch_size: int,
                       settings: EvalConfig, device: str = "cpu",
                       autocast: AbstractContextManager | None = None, progress=None) -> Generated:
    """Summaries for tokenised prompts (greedy unless `settings.num_beams` > 1), in the prompts' order.

    Prompts are sorted by length so batches carry little padding; each batch is left-padded and
    decoded with a KV cache; only tokens after the prompt are decoded.
    """
    if not prompts:
        return Generated([], [], [], [])
    model.eval()
    config = generation_config(tokenizer, settings)
    max_new_tokens = settings.max_new_tokens
    # under torchrun each rank decodes every world_size-th prompt (by length, so the shares cost alike); the
    # results are gathered back into the prompts' order on every rank
    order_all = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    order = distributed.share(order_all)
    texts, counts, hit = [""] * len(prompts), [0] * len(prompts), [False] * len(prompts)
    token_ids: list[list[int]] = [[] for _ in prompts]
    deferred = distributed.Deferred()  # one rank failing is raised on every rank at the gather below
    starts = list(range(0, len(order), batch_size))
    # sharded (train.fsdp): every rank runs as many batches as the busiest one (a spare one on the shortest prompt,
    # unused) and generate() keeps every decoding step's forward in step across ranks (TunedModel.generate)
    spare = distributed.rounds(len(prompts), batch_size, distributed.is_sharded_model(model))
    with adapters_merged(model):  # once for all batches
        for n in range(max(len(starts), spare or 0)):
            if n >= len(starts):
                ids, mask = left_pad([prompts[order_all[0]]], tokenizer.pad_token_id)
                with autocast or nullcontext():
                    model.generate(ids.to(device), mask.to(device), config)
                continue
            if deferred.error:
                break
            chunk = order[starts[n]:starts[n] + batch_size]
            with deferred.guard():
                ids, mask = left_pad([prompts[i] for i in chunk], tokenizer.pad_token_id)
                # greedy only: with beams a criterion would end hypotheses, not summaries
                at_cut = AtCut(tokenizer, settings.cut, len(chunk)) \
                    if settings.cut in ("first_line", "blank_line") and settings.num_beams == 1 else None
                with autocast or nullcontext():
                    out = model.generate(ids.to(device), mask.to(device), config,
                                         **({"stopping_criteria": [at_cut]} if at_cut else {}))
                for row, index in enumerate(chunk):
                    stopped = at_cut.stopped[row] if at_cut else None
                    tokens = until_eos(out[row, :stopped].tolist(), tokenizer.eos_token_id)
                    token_ids[index] = tokens
                    texts[index] = cut_text(tokenizer.decode(tokens, skip_special_tokens=True), settings.cut,
                                            settings.max_sentences)
                    counts[index] = stopped or min(len(tokens) + 1, max_new_tokens)  # + 1: the EOS
                    hit[index] = stopped is None and len(tokens) >= max_new_tokens
            if progress is not None:
                progress.update(len(chunk))
    rows = distributed.gather([(texts[i], counts[i], hit[i], token_ids[i]) for i in order], order, len(prompts),
                              deferred)
    return Generated(*(list(column) for column in zip(*rows, strict=True)))
