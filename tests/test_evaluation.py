"""Issue 4: intervals that cover at the nominal rate, sanity checks of the scoring, repeats, decoding settings."""

import json

import numpy as np
import pytest
import torch

from tunebench.cli import main
from tunebench.config import EvalConfig, load_config
from tunebench.data.format import encode_prompt
from tunebench.generate import cut_text, generate_summaries
from tunebench.methods import METHODS, ZERO_SHOT
from tunebench.metrics.rouge import score_texts as rouge_per_article
from tunebench.stats import bootstrap_ci
from tunebench.text import lead_k


def test_bootstrap_interval_covers_the_true_mean_at_about_95_percent():
    rng = np.random.default_rng(0)
    trials, hits = 300, 0
    for trial in range(trials):
        sample = rng.gamma(2.0, 5.0, size=60)  # skewed, like per-article ROUGE; true mean 10
        low, high = bootstrap_ci(list(sample), seed=trial, resamples=500)
        hits += low <= 10.0 <= high
    assert 0.90 <= hits / trials <= 0.98


class CopyModel:
    """A deliberately broken 'summarizer' that writes out its whole prompt article."""

    def __init__(self, prompts, eos_id):
        self.prompts, self.eos_id = prompts, eos_id

    def eval(self):
        return self

    def generate(self, ids, mask, config):
        rows = []
        for row, row_mask in zip(ids.tolist(), mask.tolist(), strict=True):
            real = [t for t, m in zip(row, row_mask, strict=True) if m]
            article = next(p for p in self.prompts if p == real)[:-len(self.separator)]
            rows.append(article + [self.eos_id])
        width = max(len(r) for r in rows)
        return torch.tensor([r + [self.eos_id] * (width - len(r)) for r in rows])


def test_a_model_that_copies_the_article_scores_what_lead_all_scores(tokenizer):
    articles = ["The council met on Monday. It approved the park. Residents cheered loudly.",
                "Prices rose in June. Analysts had expected a fall. The bank may now act."]
    references = ["Council approves park.", "Prices rose unexpectedly in June."]
    separator = "\nTL;DR:\n"
    prompts = [encode_prompt(tokenizer, a, separator, 500) for a in articles]
    model = CopyModel(prompts, tokenizer.eos_token_id)
    model.separator = tokenizer(separator, add_special_tokens=False)["input_ids"]
    out = generate_summaries(model, tokenizer, prompts, 2, EvalConfig(max_new_tokens=500))
    copied = rouge_per_article(out.texts, references)
    lead_all = rouge_per_article([lead_k(a, 100) for a in articles], references)
    for mine, lead in zip(copied, lead_all, strict=True):
        for key in mine:
            assert mine[key] == pytest.approx(lead[key])


def test_cut_settings():
    text = "First sentence here. Second one!\nThird line.\n\nAfter a blank line."
    assert cut_text(text, "first_line") == "First sentence here. Second one!"
    assert cut_text(text, "blank_line") == "First sentence here. Second one!\nThird line."
    assert cut_text(text, "eos", max_sentences=2) == "First sentence here.\nSecond one!"


@pytest.mark.parametrize("name", [*METHODS, "zero-shot"])
def test_beam_search_and_no_repeat_run_and_respect_the_limit(tiny_lm, tokenizer, cfg, name):
    """For every method (a key/value prefix must be given to each beam): within the limit, no repeated bigram, and
    a batch decodes as each prompt alone."""
    tuned = METHODS.get(name, ZERO_SHOT).build(tiny_lm, cfg, tokenizer)
    prompts = [tokenizer(p)["input_ids"] for p in ("One article.\nTL;DR:\n", "A longer article text.\nTL;DR:\n")]
    settings = EvalConfig(max_new_tokens=8, num_beams=3, no_repeat_ngram_size=2, length_penalty=1.2)
    out = generate_summaries(tuned, tokenizer, prompts, 2, settings)
    assert len(out.texts) == 2 and all(n <= 8 for n in out.new_tokens)
    for ids in out.tokens:
        bigrams = list(zip(ids, ids[1:], strict=False))
        assert len(bigrams) == len(set(bigrams))
    alone = [generate_summaries(tuned, tokenizer, [p], 1, settings).tokens[0] for p in prompts]
    assert out.tokens == alone


def test_settings_validation():
    with pytest.raises(Exception, match="eval.num_beams"):
        load_config("smoke", overrides=["eval.num_beams=0"])


@pytest.mark.e2e
def test_repeats_over_seeds(tmp_path, capsys):
    args = ["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "r", "--quiet", "--seeds", "0,1",
            "--set", "methods=[lora]", "eval.baselines=[zero-shot]"]
    assert main(args) == 0
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [r["name"] for r in data["records"]] == ["zero-shot", "lora@seed0", "lora@seed1"]
    assert [r["seed"] for r in data["records"][1:]] == [0, 1] and data["seeds"] == [0, 1]
    assert data["records"][1]["train"]["train_loss_per_step"] != data["records"][2]["train"]["train_loss_per_step"]
    report = (tmp_path / "r" / "report.md").read_text()
    values = [data["records"][i]["eval"]["scores"]["rouge1"]["mean"] for i in (1, 2)]
    assert f"| lora | 2 (0, 1) | {np.mean(values):.1f} ± {np.std(values, ddof=1):.1f} |" in report
    assert (tmp_path / "r" / "lora@seed1" / "weights.safetensors").is_file()
    assert main(["evaluate", str(tmp_path / "r" / "lora@seed1"), "--quiet"]) == 0
    again = json.loads((tmp_path / "r" / "results.json").read_text())["records"][2]
    assert again["eval"]["per_article"] == data["records"][2]["eval"]["per_article"]
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "x", "--seeds", "0,a"]) == 2
    assert "--seeds '0,a'" in capsys.readouterr().err

