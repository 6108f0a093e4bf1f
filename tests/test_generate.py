"""docs/defects.md #7, #8: batched left-padded KV-cached generation == unbatched greedy decoding, new text only."""

import pytest
import torch

from helpers import greedy_reference
from tunebench.config import EvalConfig
from tunebench.generate import generate_summaries
from tunebench.methods import METHODS, ZERO_SHOT

PROMPTS = ["Short one.\nTL;DR:\n", "A somewhat longer article about the weather today.\nTL;DR:\n",
           "Mid length text here.\nTL;DR:\n", "x\nTL;DR:\n", "Another article of some length, for padding.\nTL;DR:\n"]


class EosAs:
    """The test tokenizer with another token playing EOS (to make one sequence stop early)."""

    def __init__(self, tokenizer, eos_id):
        self._tok, self.eos_token_id, self.pad_token_id = tokenizer, eos_id, tokenizer.pad_token_id

    def decode(self, ids, skip_special_tokens=True):
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)


def _ids(tokenizer):
    return [tokenizer(p)["input_ids"] for p in PROMPTS]


@pytest.mark.parametrize("name", [*METHODS, "zero-shot"])
def test_batched_generation_equals_unbatched_greedy(tiny_lm, tokenizer, cfg, name):
    method = METHODS.get(name, ZERO_SHOT)
    tuned = method.build(tiny_lm, cfg, tokenizer)
    if name != "zero-shot":  # a trained-looking method: move its parameters off their init
        with torch.no_grad():
            for p in tuned.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.05)
    prompts = _ids(tokenizer)
    out = generate_summaries(tuned, tokenizer, prompts, batch_size=3, settings=EvalConfig(max_new_tokens=12))
    for prompt, text, count in zip(prompts, out.texts, out.new_tokens, strict=True):
        expected = greedy_reference(tuned, prompt, 12, tokenizer.eos_token_id)
        assert text == tokenizer.decode(expected, skip_special_tokens=True).strip()
        assert count == min(len(expected) + 1, 12)


def test_each_sequence_stops_at_its_own_eos(tiny_lm, tokenizer, cfg):
    tuned = ZERO_SHOT.build(tiny_lm, cfg, tokenizer)
    prompts = _ids(tokenizer)
    free = [greedy_reference(tuned, p, 10, -1) for p in prompts]
    # a token that sequence 0 emits after step 1 and some other sequence never emits: make it EOS
    stopper = next(t for t in free[0][1:] if any(t not in seq for seq in free[1:]))
    others = [i for i, seq in enumerate(free) if stopper not in seq]
    tok = EosAs(tokenizer, stopper)
    out = generate_summaries(tuned, tok, prompts, batch_size=5, settings=EvalConfig(max_new_tokens=10))
    assert out.texts[0] == tokenizer.decode(free[0][:free[0].index(stopper)], skip_special_tokens=True).strip()
    for i in others:  # not stopped by sequence 0's EOS
        assert out.texts[i] == tokenizer.decode(free[i], skip_special_tokens=True).strip()
        assert out.hit_max[i]
    assert not out.hit_max[0]


def test_output_is_new_text_only(tiny_lm, tokenizer, cfg):
    tuned = ZERO_SHOT.build(tiny_lm, cfg, tokenizer)
    prompts = _ids(tokenizer)
    out = generate_summaries(tuned, tokenizer, prompts, batch_size=2, settings=EvalConfig(max_new_tokens=6))
    for prompt_text, text in zip(PROMPTS, out.texts, strict=True):
        assert "TL;DR" not in text and prompt_text.strip() not in text


@pytest.mark.parametrize("name", ["lora", "dora", "ia3"])
def test_adapters_are_merged_while_generating_and_the_weights_restored_exactly(tiny_lm, tokenizer, cfg, name,
                                                                                monkeypatch):
    from contextlib import nullcontext

    from peft.tuners.tuners_utils import BaseTunerLayer

    import tunebench.generate as generate

    tuned = METHODS[name].build(tiny_lm, cfg, tokenizer)
    with torch.no_grad():  # a trained-looking adapter
        for p in tuned.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    seen = []  # each adapter layer's `merged` flag whenever it runs
    layers = [m for m in tuned.modules() if isinstance(m, BaseTunerLayer)]
    hooks = [m.register_forward_pre_hook(lambda module, args: seen.append(module.merged)) for m in layers]
    settings, prompts = EvalConfig(max_new_tokens=10, cut="none"), _ids(tokenizer)
    merged = generate_summaries(tuned, tokenizer, prompts, batch_size=5, settings=settings)
    assert layers and seen and all(seen)
    after = tuned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit, base weights included
    assert not any(m.merged for m in layers)
    seen.clear()
    monkeypatch.setattr(generate, "adapters_merged", lambda model: nullcontext())
    unmerged = generate_summaries(tuned, tokenizer, prompts, batch_size=5, settings=settings)
    assert seen and not any(seen)
    assert merged.texts == unmerged.texts  # fp32: merging changes only rounding
    for hook in hooks:
        hook.remove()
