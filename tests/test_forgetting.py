"""Issue 26: forgetting, the rise of a tuned model's loss on text that is not a summary (the test articles' own
text) over the base model's, per article and paired. Where the truth is known: a method that does not train
(DoRA starts as the base model; lr 1e-12) forgets nothing; full fine-tuning at a high learning rate on summaries
that are one repeated word forgets measurably more than LoRA at its default."""

import csv
import json

import pytest

from tunebench.cli import main
from tunebench.config import DataConfig
from tunebench.data import load_examples
from tunebench.data.format import encode_continuation
from tunebench.models import byte_tokenizer


def test_the_continuation_is_the_articles_next_tokens():
    tokenizer = byte_tokenizer()
    text = "The council approved the plan on Monday after a long debate about housing."
    ids = tokenizer(text)["input_ids"]
    ex = encode_continuation(tokenizer, "a", text, 16, 8)
    assert ex.prompt_ids == ids[:16] and ex.target_ids == ids[16:24]
    short = encode_continuation(tokenizer, "b", "Short text.", 64, 64)
    assert short.prompt_ids + short.target_ids == tokenizer("Short text.")["input_ids"]  # split in half


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("forget")
    pairs = load_examples(DataConfig()).splits["all"].examples[:40]
    with open(folder / "zz.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["article", "summary"])
        writer.writerows([ex.article, "zzzz zzzz zzzz zzzz."] for ex in pairs)
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(folder), "--name", "f", "--quiet", "--set",
                 "methods=[full,lora,dora]", f"data.source={folder / 'zz.csv'}", "eval.baselines=[zero-shot]",
                 "eval.metrics=[rouge,forgetting]", "method.full.lr=1e-2", "method.dora.lr=1e-12",
                 "train.epochs=3"]) == 0
    return json.loads((folder / "f" / "results.json").read_text()), folder / "f"


def _forgetting(data, name):
    test = next(t for t in data["comparisons"] if t["metric"] == "text_loss" and {t["a"], t["b"]} == {name,
                                                                                                  "zero-shot"})
    sign = 1 if test["a"] == name else -1
    return sign * test["mean"], sorted(sign * x for x in test["ci95"])


@pytest.mark.e2e
def test_forgetting_is_zero_without_training_and_larger_for_full_fine_tuning(collapsed):
    data, run = collapsed
    untrained, _ = _forgetting(data, "dora")
    full, (low, _) = _forgetting(data, "full")
    lora, _ = _forgetting(data, "lora")
    assert abs(untrained) < 1e-3
    assert low > 0 and full > lora + 0.1  # the whole model pulled towards one word forgets more than an adapter
    report = (run / "report.md").read_text()
    assert "Change from the base model (zero-shot) in loss on the articles' own text" in report
    assert f"full {full:+.3f}" in report
