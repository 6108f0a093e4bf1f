"""Issue 28: memory a laptop can spare. `train.micro_batch_size` (the batch in pieces) and
`train.activation_checkpointing` (blocks recomputed in the backward) change what is held, not what is learned:
every method trains to the same losses (fp32, within 1e-5) and weights (within 1e-4) with them as without, prefix
tuning (whose prompt lives in the attention cache, which a recomputed block must find unchanged) included;
checkpointing really recomputes the blocks gradients pass through, and only those. Peak memory is measured by
benchmarks/memory.py."""

import copy

import pytest
import torch

from tunebench.data.format import encode_example
from tunebench.errors import TunebenchError
from tunebench.layers import transformer_blocks
from tunebench.methods import METHODS
from tunebench.methods.base import trainable_state
from tunebench.runtime import resolve_runtime
from tunebench.train import train

PAIRS = [(f"Article number {i} says something about topic {i % 3} and more.", f"Topic {i % 3}.") for i in range(11)]
TOLERANCE = 1e-5


def _train(lm, tokenizer, cfg, tmp_path, name, **settings):
    """(training result, trained tensors) of `name` on 8 pairs (batch 4, 2 epochs, 1 validation pair short of a
    full batch) with `settings` on train."""
    enc = [encode_example(tokenizer, str(i), a, s, "\nTL;DR:\n", 64, 16) for i, (a, s) in enumerate(PAIRS)]
    torch.manual_seed(0)
    tuned = METHODS[name].build(copy.deepcopy(lm), cfg, tokenizer)
    tcfg = copy.deepcopy(cfg.train)
    tcfg.epochs, tcfg.warmup_steps, tcfg.batch_size = 2, 0, 4
    for key, value in settings.items():
        setattr(tcfg, key, value)
    result = train(tuned, enc[:8], enc[8:], tcfg, 1e-2, resolve_runtime("fp32"), tmp_path / f"{name}.safetensors",
                   tokenizer.pad_token_id, show_progress=False)
    return result, trainable_state(tuned), tuned


def _same(a, b) -> None:
    (ra, wa), (rb, wb) = a, b
    assert ra.steps == rb.steps
    assert max(abs(x - y) for x, y in zip(ra.train_loss_per_step, rb.train_loss_per_step, strict=True)) <= TOLERANCE
    assert max(abs(x - y) for x, y in zip(ra.val_loss_per_epoch, rb.val_loss_per_epoch, strict=True)) <= TOLERANCE
    # AdamW divides each gradient by its own running size, so where a gradient is ~0 the summation order's noise
    # becomes a step of up to lr (1e-2 here): weights within 1e-4 (seen: 1.1e-5 in one element of 16,384 with one
    # thread). GPT-2's fused query/key/value bias is left out: the key part's gradient is zero in exact arithmetic
    # (softmax ignores a constant added to a row of scores), so its values are that noise in either run.
    noise = [k for k in wa if k.endswith("attn.c_attn.bias")]
    assert wa.keys() == wb.keys() and all((wa[k] - wb[k]).abs().max() <= 1e-4 for k in wa if k not in noise)


@pytest.mark.parametrize("name", [n for n in METHODS if n != "zero-shot"])
def test_micro_batches_and_checkpointing_learn_what_the_whole_batch_learns(tiny_lm, tokenizer, cfg, tmp_path, name):
    plain = _train(tiny_lm, tokenizer, cfg, tmp_path, name)[:2]
    # checkpointing replays the dropout masks (torch.utils.checkpoint keeps the random state): equal with dropout
    _same(plain, _train(tiny_lm, tokenizer, cfg, tmp_path, name, activation_checkpointing=True)[:2])
    # pieces draw their own dropout masks (as processes do under torchrun): equal only without dropout
    for module in tiny_lm.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    plain = _train(tiny_lm, tokenizer, cfg, tmp_path, name)[:2]
    _same(plain, _train(tiny_lm, tokenizer, cfg, tmp_path, name, micro_batch_size=3)[:2])  # pieces of 3 and 1


@pytest.mark.parametrize("name", ["lora", "prefix-tuning", "last-block"])
def test_checkpointing_recomputes_the_trained_blocks_only(tiny_lm, tokenizer, cfg, tmp_path, name):
    """Without checkpointing a block runs once per forward; with it, a block that gradients pass through runs once
    more per step (its recompute in the backward). A frozen block below everything trained (last-block's trunk)
    is not recomputed: no gradient passes through it."""
    def calls(**settings) -> list[int]:
        lm = copy.deepcopy(tiny_lm)
        blocks = transformer_blocks(lm)
        count = [0] * len(blocks)
        for i, block in enumerate(blocks):
            # a module inside the block: the recompute calls the block's forward itself, past the block's own hooks
            block.mlp.register_forward_pre_hook(lambda *_, i=i: count.__setitem__(i, count[i] + 1))
        _train(lm, tokenizer, cfg, tmp_path, name, cache_frozen=False, **settings)
        return count

    plain, checkpointed = calls(), calls(activation_checkpointing=True)
    steps = 4  # 8 pairs, batch 4, 2 epochs; validation runs no backward
    extra = [b - a for a, b in zip(plain, checkpointed, strict=True)]
    assert extra == ([0] * (len(plain) - 1) + [steps] if name == "last-block" else [steps] * len(plain))


def test_a_memory_limit_that_everything_fits_trains_as_given(tiny_lm, tokenizer, cfg, tmp_path):
    """The measured step leaves nothing behind: the same losses and weights as a run without a limit."""
    result, weights, _ = _train(tiny_lm, tokenizer, cfg, tmp_path, "lora", memory_limit_mb=1e9)
    assert result.memory_plan["tried"][0]["peak_mb"] > 0 and len(result.memory_plan["tried"]) == 1
    assert (result.memory_plan["activation_checkpointing"], result.memory_plan["micro_batch_size"]) == (False, None)
    _same(_train(tiny_lm, tokenizer, cfg, tmp_path, "lora")[:2], (result, weights))


def test_a_memory_limit_picks_the_first_setting_that_fits_and_trains_with_it(tiny_lm, tokenizer, cfg, tmp_path,
                                                                             monkeypatch):
    """Peaks as if measured 5000, 3000, 2000 MB (as given, checkpointing, micro-batches of 2): a 2500 MB limit
    trains with checkpointing and micro-batches of 2, exactly as a run with those settings written out."""
    from tunebench import memory_plan
    from tunebench.resources import PhaseMonitor

    peaks = iter([5000.0, 3000.0, 2000.0])

    class Measured(PhaseMonitor):
        def __exit__(self, *exc):
            super().__exit__(*exc)
            self.peak_rss_mb = next(peaks)

    monkeypatch.setattr(memory_plan, "PhaseMonitor", Measured)
    result, weights, _ = _train(tiny_lm, tokenizer, cfg, tmp_path, "lora", memory_limit_mb=2500)
    plan = result.memory_plan
    assert [(t["activation_checkpointing"], t["micro_batch_size"]) for t in plan["tried"]] == \
        [(False, None), (True, None), (True, 2)]
    assert (plan["activation_checkpointing"], plan["micro_batch_size"], plan["peak_mb"]) == (True, 2, 2000.0)
    _same(_train(tiny_lm, tokenizer, cfg, tmp_path, "lora", activation_checkpointing=True, micro_batch_size=2)[:2],
          (result, weights))


def test_a_memory_limit_nothing_fits_is_refused_in_one_line(tiny_lm, tokenizer, cfg, tmp_path):
    with pytest.raises(TunebenchError, match=r"train.memory_limit_mb=1: even activation checkpointing with "
                                             r"micro-batches of 1 peaked at [\d,]+ MB in a measured step; raise"):
        _train(tiny_lm, tokenizer, cfg, tmp_path, "lora", memory_limit_mb=1)
