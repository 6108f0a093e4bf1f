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


def test_faithfulness_signals_count_what_the_article_does_not_say():
    """Issue 26: numbers and names a summary adds are counted; a copy of the article adds nothing."""
    from tunebench.metrics.faithfulness import scores_of

    article = "Police in Leeds said 3,500 people attended on Monday. The mayor, Anne Hill, thanked them."
    copied = scores_of(article, article)
    assert copied["new_numbers"] == copied["new_names"] == copied["novel_bigrams"] == 0.0
    assert copied["compression"] == 1.0 and copied["summary_words"] == 15
    invented = scores_of("About 4000 people came, police in Leeds said.", article)
    assert invented["new_numbers"] == 100.0  # 4000 is not in the article (3,500 is)
    assert scores_of("Some 3500 people came.", article)["new_numbers"] == 0.0  # commas ignored
    names = scores_of("Anne Hill and Bob Smith spoke in Leeds.", article)
    assert names["new_names"] == pytest.approx(100 * 2 / 4)  # Hill, Bob?, Smith, Leeds: Bob and Smith are new
    assert scores_of("The mayor thanked them.", article)["novel_bigrams"] == pytest.approx(100 * 1 / 3)
    assert scores_of("No numbers or names here.", article)["new_numbers"] == 0.0
