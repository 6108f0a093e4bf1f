"""What a method costs to serve, as it would be deployed: one fixed decoding job per record.

Scoring (workbench.py) already times generation, but there every record decodes different summaries (one stops
at its first line, another runs to the limit), so its seconds mix speed with length. Here every record does the
same work: the same first `eval.serving_prompts` test prompts in one batch, exactly `eval.serving_new_tokens`
greedy tokens each (EOS is suppressed until then, transformers' `min_new_tokens`), with

- adapters merged into the weights where the method allows it (LoRA, DoRA, IA3: PEFT's `merge`; `generate.py`'s
  `adapters_merged`), so they cost what the base model costs;
- learned prompts and key/value prefixes run as they must: their positions in front of every prompt.

Measured: the time to the first token (the prompt's forward pass), the whole job's generated tokens/s, decode
tokens/s after the first token, and memory (peak RSS and what the job added to it; peak CUDA memory on a GPU).
A warm-up pass of one token comes first, so one-time costs (allocations, kernel choice) are not in the figures;
then the job runs REPEATS times and the medians are kept (the first token's time is read in the same pass, when
generation asks its stopping rule after the first token). A shared machine is still noisy: read the figures as ratios
to the base model's (zero-shot), measured the same way in the same run.
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import GenerationConfig, StoppingCriteria

from tunebench.data.format import left_pad
from tunebench.generate import adapters_merged
from tunebench.methods.base import TunedModel
from tunebench.resources import PhaseMonitor
from tunebench.runtime import Runtime

REPEATS = 3
"""Timed passes of the job per record (the median is kept)."""


class _Clock(StoppingCriteria):
    """Stops nothing; notes when the first token is out (generation asks after every token), so one pass gives the
    time to the first token and the whole job's time."""

    def __init__(self, start: float, cuda: bool):
        self.start, self.cuda, self.first_s = start, cuda, None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.first_s is None:
            if self.cuda:
                torch.cuda.synchronize()
            self.first_s = time.perf_counter() - self.start
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _decode(model: TunedModel, ids: torch.Tensor, mask: torch.Tensor, tokenizer, new_tokens: int,
            runtime: Runtime) -> tuple[float, float]:
    """(seconds to the first token, seconds in all) to generate exactly `new_tokens` tokens for every row (greedy,
    EOS suppressed before that)."""
    config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    cuda = runtime.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    clock = _Clock(time.perf_counter(), cuda)
    with runtime.autocast():
        out = model.generate(ids, mask, config, stopping_criteria=[clock])
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - clock.start
    if out.shape[1] != new_tokens:  # a stopping rule of the model's own would make the records' work differ
        raise RuntimeError(f"the serving job generated {out.shape[1]} tokens per prompt, not {new_tokens}")
    return clock.first_s, seconds


@torch.no_grad()
def serving_cost(model: TunedModel, tokenizer, prompts: list[list[int]], n_prompts: int, new_tokens: int,
                 runtime: Runtime, positions_added: int = 0) -> dict | None:
    """The fixed decoding job's figures for one record (None when `n_prompts` is 0 or there are no prompts)."""
    chosen = prompts[:n_prompts]
    if not chosen:
        return None
    model.eval()
    ids, mask = left_pad(chosen, tokenizer.pad_token_id)
    ids, mask = ids.to(runtime.device), mask.to(runtime.device)
    merged = 0
    with adapters_merged(model):
        from peft.tuners.tuners_utils import BaseTunerLayer

        merged = sum(isinstance(m, BaseTunerLayer) and m.merged for m in model.modules())
        _decode(model, ids, mask, tokenizer, 1, runtime)  # warm-up
        with PhaseMonitor(interval_s=0.05) as whole:
            passes = [_decode(model, ids, mask, tokenizer, new_tokens, runtime) for _ in range(REPEATS)]
    first_s = statistics.median(first for first, _ in passes)
    wall_s = statistics.median(wall for _, wall in passes)
    rows = len(chosen)
    phase = whole.as_dict()
    out = {"prompts": rows, "repeats": REPEATS, "new_tokens": new_tokens,
           "prompt_tokens_mean": sum(map(len, chosen)) / rows,
           "positions_added": positions_added, "layers_merged": merged,
           "first_token_s": round(first_s, 4), "wall_s": round(wall_s, 4),
           "tokens_per_s": rows * new_tokens / wall_s,
           "decode_tokens_per_s": rows * (new_tokens - 1) / (wall_s - first_s) if wall_s > first_s and
           new_tokens > 1 else None,
           "peak_rss_mb": phase["peak_rss_mb"],
           "added_rss_mb": round(max(phase["peak_rss_mb"] - phase["start_rss_mb"], 0.0), 1)}
    if "peak_cuda_allocated_mb" in phase:
        out["peak_cuda_allocated_mb"] = phase["peak_cuda_allocated_mb"]
    return out
