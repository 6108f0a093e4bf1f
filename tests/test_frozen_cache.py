"""Issue 6: the frozen lower blocks of last-block tuning run once per example, not once per step, and the
weights trained with that cache equal those trained without it."""

import copy

import pytest
import torch

from tunebench.data.format import encode_example
from tunebench.layers import transformer_blocks
from tunebench.methods import METHODS
from tunebench.runtime import resolve_runtime
from tunebench.train import train
from tunebench.trunk_cache import build_trunk_states, fingerprint

PAIRS = [(f"Article {i} on topic {i % 3}. " * (1 + i % 4), f"Topic {i % 3}.") for i in range(12)]
RUNTIME = resolve_runtime("fp32")


def _data(tokenizer):
    enc = [encode_example(tokenizer, str(i), a, s, "\nTL;DR:\n", 64, 16) for i, (a, s) in enumerate(PAIRS)]
    return enc[:8], enc[8:]


def _count_calls(block):
    """Counts real computations of a block: its first sub-layer runs only when the block's own forward does."""
    calls = []
    next(block.children()).register_forward_hook(lambda *_: calls.append(1))
    return calls


def _train(lm, cfg, tokenizer, tmp_path, cache: bool, epochs: int = 3):
    torch.manual_seed(1)  # the trained block's dropout draws the same masks in both runs
    tuned = METHODS["last-block"].build(copy.deepcopy(lm), cfg, tokenizer)
    frozen_calls = _count_calls(transformer_blocks(tuned.lm)[0])
    tcfg = copy.deepcopy(cfg.train)
    tcfg.epochs, tcfg.warmup_steps, tcfg.cache_frozen = epochs, 0, cache
    train_set, val_set = _data(tokenizer)
    result = train(tuned, train_set, val_set, tcfg, 1e-2, RUNTIME, tmp_path / f"w{cache}.safetensors",
                   tokenizer.pad_token_id, show_progress=False, cache_dir=tmp_path / "frozen" if cache else None)
    return tuned, result, len(frozen_calls)


def test_cached_training_gives_the_same_weights_and_skips_the_frozen_blocks(tiny_lm, cfg, tokenizer, tmp_path):
    plain, plain_result, plain_calls = _train(tiny_lm, cfg, tokenizer, tmp_path, cache=False)
    cached, cached_result, cached_calls = _train(tiny_lm, cfg, tokenizer, tmp_path, cache=True)
    trained = {n: p for n, p in cached.named_parameters() if p.requires_grad}
    assert trained and {n for n, p in plain.named_parameters() if p.requires_grad} == set(trained)
    for name, param in plain.named_parameters():
        torch.testing.assert_close(trained.get(name, dict(cached.named_parameters())[name]), param,
                                   rtol=1e-5, atol=1e-6, msg=name)
    assert cached_result.val_loss_per_epoch == pytest.approx(plain_result.val_loss_per_epoch, rel=1e-5)
    assert cached_result.train_loss_per_step == pytest.approx(plain_result.train_loss_per_step, rel=1e-5)
    # without the cache the frozen block runs at every training and validation step of every epoch;
    # with it, once per example batch while building (2 train batches + 1 val batch at batch size 4)
    assert plain_calls == 3 * (2 + 1)
    assert cached_calls == 2 + 1
    assert cached_result.frozen_cache["frozen_blocks"] == 1 and not cached_result.frozen_cache["reused"]
    assert plain_result.frozen_cache == {}


def test_frozen_part_has_no_dropout_in_training_mode(tokenizer, cfg, _tiny_models):
    lm = copy.deepcopy(_tiny_models["gpt2-tiny"])  # GPT-2 has dropout in every block and after the embeddings
    tuned = METHODS["last-block"].build(lm, cfg, tokenizer).train()
    blocks = transformer_blocks(tuned.lm)
    dropouts = lambda m: [d for d in m.modules() if isinstance(d, torch.nn.Dropout)]  # noqa: E731
    assert dropouts(blocks[0]) and not any(d.training for d in dropouts(blocks[0]))
    assert not tuned.lm.transformer.drop.training
    assert all(d.training for d in dropouts(blocks[1]))
    lora = METHODS["lora"].build(copy.deepcopy(_tiny_models["gpt2-tiny"]), cfg, tokenizer).train()
    assert all(d.training for d in dropouts(lora.lm))  # other methods keep the model's usual training mode


@pytest.mark.parametrize("name", ["prompt-tuning", "lora", "last-block"])
def test_frozen_depth_only_where_nothing_below_trains(tiny_lm, cfg, tokenizer, name):
    tuned = METHODS[name].build(tiny_lm, cfg, tokenizer)
    depth = tuned.frozen_depth()
    assert depth == (len(transformer_blocks(tiny_lm)) - cfg.method.last_block.num_blocks if name == "last-block"
                     else 0)
    if name == "last-block":
        tuned.lm.get_input_embeddings().weight.requires_grad_(True)  # a trained input side: nothing to cache
        assert tuned.frozen_depth() == 0


def test_cache_on_disk_is_reused_and_keyed_by_weights_and_data(tiny_lm, cfg, tokenizer, tmp_path):
    tuned = METHODS["last-block"].build(tiny_lm, cfg, tokenizer)
    train_set, _ = _data(tokenizer)
    pad = tokenizer.pad_token_id
    first = build_trunk_states(tuned, train_set, 3, pad, RUNTIME, tmp_path)
    again = build_trunk_states(tuned, train_set, 5, pad, RUNTIME, tmp_path)
    memory = build_trunk_states(tuned, train_set, 8, pad, RUNTIME, None)
    assert (first.facts["where"], again.facts["reused"], memory.facts["where"]) == ("disk", True, "memory")
    torch.testing.assert_close(again.store, first.store)
    torch.testing.assert_close(memory.store, first.store, rtol=1e-4, atol=1e-4)  # other batch shapes
    key = fingerprint(tuned, train_set, RUNTIME, 1)
    assert fingerprint(tuned, train_set[:-1], RUNTIME, 1) != key
    with torch.no_grad():
        tuned.lm.get_input_embeddings().weight[0, 0] += 1.0
    assert fingerprint(tuned, train_set, RUNTIME, 1) != key
    assert build_trunk_states(METHODS["lora"].build(copy.deepcopy(tiny_lm), cfg, tokenizer), train_set, 4, pad,
                              RUNTIME, tmp_path) is None


def test_one_epoch_reuses_nothing_so_builds_no_cache(tiny_lm, cfg, tokenizer, tmp_path):
    _, result, calls = _train(tiny_lm, cfg, tokenizer, tmp_path, cache=True, epochs=1)
    # the frozen blocks run once per training step (2), and not for validation: one epoch has no best to pick
    assert result.frozen_cache == {} and calls == 2 and result.val_loss_per_epoch == []
    assert not (tmp_path / "frozen").exists()


def test_key_covers_scalar_buffers_and_blocks_that_return_tuples_train_uncached(tiny_lm, cfg, tokenizer, tmp_path):
    tuned = METHODS["last-block"].build(tiny_lm, cfg, tokenizer)
    train_set, _ = _data(tokenizer)
    tuned.lm.base_model.register_buffer("scale", torch.tensor(2.0))  # a 0-dim buffer, as Gemma's embed_scale
    key = fingerprint(tuned, train_set, RUNTIME, 1)
    next(b for n, b in tuned.lm.named_buffers() if n.endswith("scale")).fill_(3.0)
    assert fingerprint(tuned, train_set, RUNTIME, 1) != key
    block = transformer_blocks(tuned.lm)[0]
    original = block.forward
    block.forward = lambda *args, **kwargs: (original(*args, **kwargs),)  # an older-style block output
    tuned.train()
    assert build_trunk_states(tuned, train_set, 4, tokenizer.pad_token_id, RUNTIME, tmp_path) is None
    assert tuned.training and not any(tmp_path.iterdir())  # mode restored, no half-built entry left
