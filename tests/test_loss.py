"""docs/defects.md #3: per-example causal shift; one example's loss depends on that example only."""

import torch

from tunebench.data.format import collate, encode_example
from tunebench.methods import METHODS
from tunebench.train import per_example_loss

SEP = "\nTL;DR:\n"
PAIRS = [("First article, fairly long text here.", "One."), ("Second.", "Summary two is longer."),
         ("Third article text.", "Three")]


def _encode(tokenizer, pairs):
    return [encode_example(tokenizer, str(i), a, s, SEP, 64, 32) for i, (a, s) in enumerate(pairs)]


def test_changing_example_i_changes_only_its_loss(tiny_lm, tokenizer, cfg):
    model = METHODS["lora"].build(tiny_lm, cfg, tokenizer).eval()
    batch = _encode(tokenizer, PAIRS)
    before, counts = per_example_loss(model, collate(batch, tokenizer.pad_token_id))
    changed = list(PAIRS)
    changed[1] = (PAIRS[1][0], "Summary 2 is longer!")  # same length in bytes, different tokens
    after, _ = per_example_loss(model, collate(_encode(tokenizer, changed), tokenizer.pad_token_id))
    assert not torch.isclose(before[1], after[1])
    torch.testing.assert_close(before[[0, 2]], after[[0, 2]], rtol=0, atol=1e-5)
    assert counts.tolist() == [len(ex.target_ids) for ex in batch]


def test_loss_in_a_padded_batch_equals_loss_alone_and_hf_reference(tiny_lm, tokenizer, cfg):
    model = METHODS["last-block"].build(tiny_lm, cfg, tokenizer).eval()
    batch = _encode(tokenizer, PAIRS)
    together, _ = per_example_loss(model, collate(batch, tokenizer.pad_token_id))
    for i, ex in enumerate(batch):
        alone, count = per_example_loss(model, collate([ex], tokenizer.pad_token_id))
        torch.testing.assert_close(together[i], alone[0], rtol=1e-4, atol=1e-4)
        # independent reference: transformers' own shifted loss on the unpadded sequence
        ids = torch.tensor([ex.prompt_ids + ex.target_ids])
        labels = torch.full_like(ids, -100)
        labels[0, len(ex.prompt_ids):] = torch.tensor(ex.target_ids)
        with torch.no_grad():
            reference = model.lm(input_ids=ids, labels=labels).loss * len(ex.target_ids)
        torch.testing.assert_close(alone[0], reference, rtol=1e-4, atol=1e-4)
        assert int(count[0]) == len(ex.target_ids)
