"""The promises every registered method keeps, run over the whole registry: a new method is covered by adding it.

(Gradients and counts: test_methods.py; batched generation: test_generate.py; reloading saved weights:
test_cli.py on the smoke run, which trains every method.)
"""

import copy

import pytest
import torch

from tunebench.config import load_config
from tunebench.data.format import encode_example
from tunebench.methods import METHODS
from tunebench.methods.base import trainable_state
from tunebench.runtime import resolve_runtime, seed_everything
from tunebench.train import per_example_loss, train

PAIRS = [(f"Article number {i} says something about topic {i % 3}.", f"Topic {i % 3}.") for i in range(12)]


class Interrupted(Exception):
    """Stands in for a kill after an epoch's checkpoint steps."""


def _data(tokenizer):
    enc = [encode_example(tokenizer, str(i), a, s, "\nTL;DR:\n", 64, 16) for i, (a, s) in enumerate(PAIRS)]
    return enc[:8], enc[8:]


def _train(base, name, cfg, tokenizer, tmp_path, folder, interrupt_after=None):
    seed_everything(cfg.train.seed)
    tuned = METHODS[name].build(copy.deepcopy(base), cfg, tokenizer)
    train_set, val_set = _data(tokenizer)

    def stop(epoch, _):
        if epoch == interrupt_after:
            raise Interrupted

    result = train(tuned, train_set, val_set, cfg.train, 1e-2, resolve_runtime("fp32"), tmp_path / f"{folder}.st",
                   tokenizer.pad_token_id, show_progress=False, on_epoch_end=stop, state_dir=tmp_path / folder)
    return result, trainable_state(tuned)


@pytest.mark.parametrize("name", list(METHODS))
def test_interrupted_and_resumed_training_equals_uninterrupted(tiny_lm, tokenizer, cfg, tmp_path, name):
    cfg.train.epochs, cfg.train.warmup_steps, cfg.train.checkpoint_every_steps = 3, 1, 1
    base = copy.deepcopy(tiny_lm)
    reference, ref_weights = _train(base, name, cfg, tokenizer, tmp_path, "ref")
    with pytest.raises(Interrupted):
        _train(base, name, cfg, tokenizer, tmp_path, "cut", interrupt_after=2)
    resumed, weights = _train(base, name, cfg, tokenizer, tmp_path, "cut")  # a fresh model, from the checkpoint
    assert resumed.train_loss_per_step == reference.train_loss_per_step
    assert resumed.val_loss_per_epoch == reference.val_loss_per_epoch
    assert weights.keys() == ref_weights.keys()
    for key, tensor in ref_weights.items():
        assert torch.equal(weights[key], tensor), key


def test_a_checkpoint_written_in_parts_resumes_as_one_file_does(tiny_lm, tokenizer, cfg, tmp_path, monkeypatch):
    """The writer writes a checkpoint's tensors in parts of about checkpoint.PART_BYTES (it never holds the whole
    training state at once: under FSDP it gathers it); full fine-tuning's state in 4 KiB parts spans many files,
    and resuming from them gives the uninterrupted run's losses and weights."""
    import json

    from tunebench import checkpoint

    cfg.train.epochs, cfg.train.warmup_steps, cfg.train.checkpoint_every_steps = 3, 1, 1
    base = copy.deepcopy(tiny_lm)
    reference, ref_weights = _train(base, "full", cfg, tokenizer, tmp_path, "ref")
    monkeypatch.setattr(checkpoint, "PART_BYTES", 4096)
    with pytest.raises(Interrupted):
        _train(base, "full", cfg, tokenizer, tmp_path, "cut", interrupt_after=2)
    files = json.loads((tmp_path / "cut" / "state.json").read_text())["files"]
    assert len(files) > 10 and sorted(p.name for p in (tmp_path / "cut").glob("*.safetensors")) == sorted(files)
    resumed, weights = _train(base, "full", cfg, tokenizer, tmp_path, "cut")
    assert resumed.train_loss_per_step == reference.train_loss_per_step
    assert all(torch.equal(weights[key], tensor) for key, tensor in ref_weights.items())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(METHODS))
def test_a_short_run_on_the_real_model_lowers_the_training_loss(name, real_model_and_pairs):
    """Each method's `wide` settings, two steps on 4 real XSum pairs (articles cut to 64 tokens): the loss on
    those pairs goes down."""
    lm, tokenizer, pairs, folder = real_model_and_pairs
    cfg = load_config("wide", overrides=["train.warmup_steps=0", "train.epochs=2", "train.batch_size=4"])
    seed_everything(0)
    tuned = METHODS[name].build(copy.deepcopy(lm), cfg, tokenizer)
    batch_loss = _loss_on(tuned, pairs, tokenizer.pad_token_id)
    before = batch_loss()
    result = train(tuned, pairs, [], cfg.train, cfg.method_lr(name), resolve_runtime("fp32"),
                   folder / f"{name}.st", tokenizer.pad_token_id, show_progress=False)
    after = batch_loss()
    assert result.steps == 2
    assert after < before - 0.05, (name, before, after)


def _loss_on(tuned, pairs, pad_id):
    from tunebench.train import make_batch

    def loss() -> float:
        tuned.eval()
        with torch.no_grad():
            batch = make_batch(pairs, list(range(len(pairs))), pad_id, "cpu")
            total, count = per_example_loss(tuned, batch)
        return float(total.sum() / count.sum())

    return loss


@pytest.fixture(scope="module")
def real_model_and_pairs(tmp_path_factory):
    from tunebench.config import DataConfig
    from tunebench.data import load_examples
    from tunebench.models import load_model

    lm, tokenizer = load_model("embedded:smollm2-135m")
    examples = load_examples(DataConfig()).splits["all"].examples[:4]
    pairs = [encode_example(tokenizer, ex.id, ex.article, ex.summary, "\nTL;DR:\n", 64, 32) for ex in examples]
    return lm, tokenizer, pairs, tmp_path_factory.mktemp("weights")
