"""docs/defects.md #10 and the training loop: best checkpoint really reloaded, only the method's tensors change."""

import copy

import pytest
import torch

from tunebench import train as train_module
from tunebench.data.format import encode_example
from tunebench.methods import METHODS
from tunebench.methods.base import trainable_state
from tunebench.runtime import resolve_runtime
from tunebench.train import train

PAIRS = [(f"Article number {i} says something about topic {i % 3}.", f"Topic {i % 3}.") for i in range(12)]


def _data(tokenizer):
    enc = [encode_example(tokenizer, str(i), a, s, "\nTL;DR:\n", 64, 16) for i, (a, s) in enumerate(PAIRS)]
    return enc[:8], enc[8:]


def test_best_checkpoint_is_the_best_epoch_not_the_last(tiny_lm, tokenizer, cfg, tmp_path, monkeypatch):
    tuned = METHODS["lora"].build(tiny_lm, cfg, tokenizer)
    train_set, val_set = _data(tokenizer)
    losses = iter([3.0, 1.0, 2.0])  # epoch 2 is best
    monkeypatch.setattr(train_module, "evaluate_loss", lambda *a, **k: next(losses))
    snapshots = {}
    tcfg = copy.deepcopy(cfg.train)
    tcfg.epochs, tcfg.warmup_steps = 3, 0
    result = train(tuned, train_set, val_set, tcfg, 1e-2, resolve_runtime("fp32"), tmp_path / "w.safetensors",
                   tokenizer.pad_token_id, show_progress=False,
                   on_epoch_end=lambda epoch, m: snapshots.__setitem__(epoch, trainable_state(m)))
    assert (result.best_epoch, result.best_step, result.epochs) == (2, 4, 3)
    final = trainable_state(tuned)
    for name, tensor in final.items():
        assert torch.equal(tensor, snapshots[2][name]), name
    assert any(not torch.equal(final[n], snapshots[3][n]) for n in final)


@pytest.mark.parametrize("name", list(METHODS))
def test_training_changes_only_the_method_tensors(tiny_lm, tokenizer, cfg, tmp_path, name):
    embedding_before = tiny_lm.get_input_embeddings().weight.detach().clone()
    tuned = METHODS[name].build(tiny_lm, cfg, tokenizer)
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    train_set, val_set = _data(tokenizer)
    tcfg = copy.deepcopy(cfg.train)
    tcfg.epochs, tcfg.warmup_steps = 2, 0
    result = train(tuned, train_set, val_set, tcfg, 1e-2, resolve_runtime("fp32"), tmp_path / "w.safetensors",
                   tokenizer.pad_token_id, show_progress=False)
    assert result.steps == 4 and len(result.val_loss_per_epoch) == 2 and result.train_tokens > 0
    for n, p in tuned.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[n]), f"{n} was meant to train but did not change"
        else:
            assert torch.equal(p, before[n]), f"{n} is frozen but changed"
    # the input embedding is bit-identical after training, for every method but full fine-tuning (last-block
    # unties the head)
    assert torch.equal(tuned.lm.get_input_embeddings().weight, embedding_before) != (name == "full")
    if name == "prompt-tuning":
        assert torch.isfinite(tuned.prefix.weight).all()


def test_nan_loss_is_detected_within_a_step(tiny_lm, tokenizer, cfg, tmp_path):
    tuned = METHODS["prompt-tuning"].build(tiny_lm, cfg, tokenizer)
    with torch.no_grad():
        tuned.prefix.weight[0, 0] = float("nan")
    train_set, val_set = _data(tokenizer)
    with pytest.raises(FloatingPointError, match="at step 1"):
        train(tuned, train_set, val_set, cfg.train, 1e-3, resolve_runtime("fp32"), tmp_path / "w.safetensors",
              tokenizer.pad_token_id, show_progress=False)


def test_the_recorded_learning_rate_is_the_one_each_step_used(tiny_lm, tokenizer, cfg, tmp_path):
    """A warm-up of 2 steps then linear decay over 4: each step's own rate is recorded (0, 1/2, peak, 1/2), not
    the next step's (the plot then ended one step early, at the final 0 a log axis cannot show)."""
    tuned = METHODS["lora"].build(tiny_lm, cfg, tokenizer)
    train_set, _ = _data(tokenizer)
    tcfg = copy.deepcopy(cfg.train)
    tcfg.epochs, tcfg.warmup_steps, tcfg.batch_size = 1, 2, 2
    result = train(tuned, train_set, [], tcfg, 1e-3, resolve_runtime("fp32"), tmp_path / "w.safetensors",
                   tokenizer.pad_token_id, show_progress=False)
    assert result.steps == 4
    assert result.lr_per_step == pytest.approx([0.0, 5e-4, 1e-3, 5e-4])


def test_the_log_hook_gets_every_step_and_every_validated_epoch(tiny_lm, tokenizer, cfg, tmp_path):
    """A live tracker's hook: one train/loss (and its rate) per optimizer step, one val/loss per validated epoch."""
    tuned = METHODS["lora"].build(tiny_lm, cfg, tokenizer)
    train_set, val_set = _data(tokenizer)
    tcfg = copy.deepcopy(cfg.train)
    tcfg.epochs, tcfg.warmup_steps = 3, 1
    points = []
    result = train(tuned, train_set, val_set, tcfg, 1e-2, resolve_runtime("fp32"), tmp_path / "w.safetensors",
                   tokenizer.pad_token_id, show_progress=False, log=lambda values, step: points.append((step, values)))
    steps = [(step, values) for step, values in points if "train/loss" in values]
    assert [step for step, _ in steps] == list(range(1, result.steps + 1))
    assert [values["train/loss"] for _, values in steps] == result.train_loss_per_step
    assert [values["train/lr"] for _, values in steps] == result.lr_per_step
    epochs = [(step, values) for step, values in points if "val/loss" in values]
    per_epoch = result.steps // result.epochs
    assert [step for step, _ in epochs] == [per_epoch * e for e in range(1, result.epochs + 1)]
    assert [values["val/loss"] for _, values in epochs] == result.val_loss_per_epoch
    assert len(points) == len(steps) + len(epochs)


def test_the_log_hook_gets_no_validation_when_none_runs(tiny_lm, tokenizer, cfg, tmp_path):
    tuned = METHODS["lora"].build(tiny_lm, cfg, tokenizer)
    train_set, _ = _data(tokenizer)
    points = []
    result = train(tuned, train_set, [], cfg.train, 1e-3, resolve_runtime("fp32"), tmp_path / "w.safetensors",
                   tokenizer.pad_token_id, show_progress=False, log=lambda values, step: points.append((step, values)))
    assert [set(values) for _, values in points] == [{"train/loss", "train/lr"}] * result.steps


def test_attention_dropout_trains_with_eager_attention_on_a_cpu_and_evaluation_keeps_sdpa(tiny_lm, tokenizer, cfg,
                                                                                             tmp_path):
    """train.training_attention: PyTorch's CPU SDPA has no fused kernel with dropout (its math kernel keeps fp32
    attention matrices: benchmarks/cpu_attention_dropout.py), so a model with attention dropout (GPT-2) trains with
    transformers' eager attention on a CPU; the training steps' forwards see it, validation between epochs and
    evaluation afterwards have SDPA. A model without attention dropout (the tiny Llama, like SmolLM2) keeps SDPA in
    training too."""
    tuned = METHODS["lora"].build(tiny_lm, cfg, tokenizer)
    has_dropout = tiny_lm.config.model_type == "gpt2"
    assert (getattr(tiny_lm.config, "attn_pdrop", 0.0) > 0) == has_dropout
    seen, validating = [], []

    def hook(module, args):  # what each forward of an attention module runs, in training and in validation
        (seen if module.training else validating).append(tuned.lm.config._attn_implementation)

    block = next(m for m in tuned.lm.modules() if type(m).__name__.endswith("Attention"))
    block.register_forward_pre_hook(hook)
    train_set, val_set = _data(tokenizer)
    tcfg = copy.deepcopy(cfg.train)
    tcfg.epochs, tcfg.warmup_steps = 2, 0  # two epochs: validated after each
    train(tuned, train_set, val_set, tcfg, 1e-2, resolve_runtime("fp32"), tmp_path / "w.safetensors",
          tokenizer.pad_token_id, show_progress=False)
    assert seen and set(seen) == {"eager" if has_dropout else "sdpa"}, seen
    assert validating and set(validating) == {"sdpa"}, validating  # no dropout there: the fused kernel
    assert tuned.lm.config._attn_implementation == "sdpa"  # restored: evaluation and generation run SDPA
