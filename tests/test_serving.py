"""Issue 26: serving cost as deployed — the same fixed decoding job for every record, adapters merged where the
method allows, learned prompt positions counted, nothing left merged afterwards."""

import pytest
import torch

from tunebench.methods import METHODS, ZERO_SHOT
from tunebench.runtime import Runtime
from tunebench.serving import serving_cost

PROMPTS = ["Short one.\nTL;DR:\n", "A somewhat longer article about the weather today.\nTL;DR:\n",
           "Mid length text here.\nTL;DR:\n", "x\nTL;DR:\n", "Another article of some length.\nTL;DR:\n"]


class EosFirst:
    """The test tokenizer with the model's first greedy token playing EOS: a free decoder stops at once."""

    def __init__(self, tokenizer, eos_id):
        self.eos_token_id, self.pad_token_id = eos_id, tokenizer.pad_token_id


def _tuned(name, lm, cfg, tokenizer):
    tuned = METHODS.get(name, ZERO_SHOT).build(lm, cfg, tokenizer)
    with torch.no_grad():  # a trained-looking method: its parameters off their init (LoRA's B is 0 at init)
        for p in tuned.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return tuned


@pytest.mark.parametrize("name", ["zero-shot", "lora", "prompt-tuning", "prefix-tuning", "last-block"])
def test_every_record_does_the_same_work(tiny_lm, tokenizer, cfg, name):
    tuned = _tuned(name, tiny_lm, cfg, tokenizer)
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    first = int(tuned(torch.tensor([prompts[0]]), torch.ones(1, len(prompts[0]), dtype=torch.long))[0, -1].argmax())
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    positions = METHODS[name].settings(cfg).positions_added() if name in METHODS else 0
    out = serving_cost(tuned, EosFirst(tokenizer, first), prompts, 4, 6, Runtime("cpu", "fp32", 1), positions)
    # EOS is the first token the model would write for prompt 0, yet every prompt gets exactly 6 new tokens
    assert out["prompts"] == 4 and out["new_tokens"] == 6
    assert out["prompt_tokens_mean"] == pytest.approx(sum(map(len, prompts[:4])) / 4)
    assert out["positions_added"] == positions and (positions > 0) == (name in ("prompt-tuning", "prefix-tuning"))
    assert out["wall_s"] > out["first_token_s"] > 0
    assert out["tokens_per_s"] == pytest.approx(24 / out["wall_s"], rel=0.02)
    assert out["peak_rss_mb"] > 0 and out["added_rss_mb"] >= 0
    # LoRA is served merged into the weights; the others have no adapter layers to merge
    assert (out["layers_merged"] > 0) == (name == "lora")
    after = tuned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # unmerged exactly: scoring saw the same model


def test_no_serving_job_when_turned_off(tiny_lm, tokenizer, cfg):
    tuned = ZERO_SHOT.build(tiny_lm, cfg, tokenizer)
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    assert serving_cost(tuned, tokenizer, prompts, 0, 8, Runtime("cpu", "fp32", 1)) is None
    assert serving_cost(tuned, tokenizer, [], 4, 8, Runtime("cpu", "fp32", 1)) is None


def test_eos_does_not_shorten_the_job(tiny_lm, tokenizer, cfg):
    """One prompt whose first greedy token is made EOS: a free decoder would write nothing; the job writes 6."""
    tuned = ZERO_SHOT.build(tiny_lm, cfg, tokenizer)
    prompt = tokenizer(PROMPTS[0])["input_ids"]
    first = int(tuned(torch.tensor([prompt]), torch.ones(1, len(prompt), dtype=torch.long))[0, -1].argmax())
    out = serving_cost(tuned, EosFirst(tokenizer, first), [prompt], 1, 6, Runtime("cpu", "fp32", 1))
    assert out["new_tokens"] == 6 and out["tokens_per_s"] > 0
