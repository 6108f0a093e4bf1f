"""ROUGE with rouge-score: stemming, Lsum on newline-split sentences; Lead-k; paired differences."""

import math

import pytest
from rouge_score import rouge_scorer

from tunebench import metrics
from tunebench.metrics.rouge import score_texts as rouge_per_article
from tunebench.stats import paired_difference
from tunebench.text import lead_k, split_sentences

ARTICLES = ["The council approved the plan on Monday. Residents objected! Work starts in May.",
            "Prices rose 3% in June.\nAnalysts expected less. The bank may act."]
REFERENCES = ["Council approves plan despite objections.", "Inflation rose faster than analysts expected."]


def test_text_against_itself_is_100():
    scores = rouge_per_article(REFERENCES, REFERENCES)
    assert all(s[k] == pytest.approx(100.0) for s in scores for k in s)


def test_lead_k_equals_rouge_score_computed_directly():
    assert lead_k(ARTICLES[0], 2) == "The council approved the plan on Monday.\nResidents objected!"
    assert lead_k(ARTICLES[1], 1) == "Prices rose 3% in June."
    ours = rouge_per_article([lead_k(a, 1) for a in ARTICLES], REFERENCES)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for mine, article, ref in zip(ours, ARTICLES, REFERENCES, strict=True):
        direct = scorer.score(ref, lead_k(article, 1))
        for key in ("rouge1", "rouge2", "rougeL"):
            assert mine[key] == pytest.approx(100 * direct[key].fmeasure)


def test_stemming_is_on():
    assert rouge_per_article(["approves"], ["approved"])[0]["rouge1"] == pytest.approx(100.0)


def test_lsum_splits_sentences_on_newlines():
    assert split_sentences("One here. Two there!\nThree") == ["One here.", "Two there!", "Three"]
    swapped = rouge_per_article(["Second part here. First part there."], ["First part there. Second part here."])[0]
    assert swapped["rougeLsum"] == pytest.approx(100.0) and swapped["rougeL"] < 100


def test_aggregate_and_paired_difference():
    scores = [{"rouge1": v, "rouge2": v, "rougeL": v, "rougeLsum": v} for v in (10.0, 20.0, 30.0, 40.0)]
    agg = metrics.summarize(metrics.chosen(["rouge"]), scores)
    assert agg["rouge1"]["mean"] == 25.0 and agg["rouge1"]["ci95"][0] < 25 < agg["rouge1"]["ci95"][1]
    better = paired_difference([11.0, 21.0, 31.0, 41.0], [10.0, 20.0, 30.0, 40.0])
    assert better["mean"] == pytest.approx(1.0) and better["ci95"] == [pytest.approx(1.0)] * 2
    assert better["p_value"] == pytest.approx(2 / 16)  # exact: 2 of the 16 sign patterns are as extreme
    twelve = paired_difference([v + 1.0 for v in range(12)], [float(v) for v in range(12)])
    assert twelve["p_value"] == pytest.approx(2 / 2**12)
    many = paired_difference([v + 1.0 for v in range(100)], [float(v) for v in range(100)], resamples=999)
    # above 16 articles: the normal approximation of the sign-flip distribution, z = sum(d) / sqrt(sum(d^2)) = 10,
    # with no floor at 1 / (resamples + 1) (sequential, corrected decisions need small p-values)
    assert many["p_value"] == pytest.approx(math.erfc(10 / math.sqrt(2)))
