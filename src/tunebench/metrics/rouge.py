"""ROUGE-1/2/L/Lsum, F1 x 100, with Google's rouge-score (stemming on; Lsum over sentences on separate lines), as
the summarization literature reports them; and the published ROUGE figures shown beside measured rows."""

from __future__ import annotations

from tunebench.metrics import Articles, Metric, Score
from tunebench.text import split_sentences

SCORES = [
    Score("rouge1", "R-1", "ROUGE-1 F1 x 100", about="word overlap with the reference summary"),
    Score("rouge2", "R-2", "ROUGE-2 F1 x 100", about="overlap of word pairs with the reference summary"),
    Score("rougeL", "R-L", "ROUGE-L F1 x 100", pairwise=False,
          about="longest common word sequence with the reference, over the whole summary"),
    Score("rougeLsum", "R-Lsum", "ROUGE-Lsum F1 x 100",
          about="longest common word sequences sentence by sentence (papers' 'R-L')"),
]
KEYS = [s.key for s in SCORES]


def per_article(batch: Articles) -> list[dict[str, float]]:
    """F1 x 100 per article for each key (sentences on separate lines for Lsum)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(KEYS, use_stemmer=True)
    out = []
    for pred, ref in zip(batch.predictions, batch.references, strict=True):
        result = scorer.score("\n".join(split_sentences(ref)), "\n".join(split_sentences(pred)))
        out.append({key: 100.0 * result[key].fmeasure for key in KEYS})
    return out


def score_texts(predictions: list[str], references: list[str]) -> list[dict[str, float]]:
    """ROUGE per pair of texts, outside a run."""
    return per_article(Articles([str(i) for i in range(len(predictions))], predictions, references,
                                [""] * len(predictions)))


def published(source: str) -> list[dict]:
    """Published ROUGE figures for a data source (matched by name), labelled as published, with their papers.
    "R-L" in papers is usually ROUGE-Lsum."""
    lowered = source.lower()
    key = "cnn_dailymail" if "cnn" in lowered or "dailymail" in lowered else "xsum" if "xsum" in lowered else None
    return [{"system": system, "scores": {"rouge1": r1, "rouge2": r2, "rougeLsum": rl}, "source": paper}
            for system, r1, r2, rl, paper in PUBLISHED.get(key, [])]


# dataset -> rows of (system, R-1, R-2, R-Lsum, source)
PUBLISHED: dict[str, list[tuple[str, float, float, float, str]]] = {
    "cnn_dailymail": [
        ("GPT-2 1.5B zero-shot, TL;DR:", 29.34, 8.27, 26.58, "Radford et al. 2019, Table 4"),
        ("GPT-2 small, decoder-only, full FT (512/128)", 37.26, 15.83, 34.47, "Rothe et al., TACL 2020, Table 5"),
        ("Lead-3", 40.34, 17.70, 36.57, "See et al. 2017"),
        ("BART-large", 44.16, 21.28, 40.90, "Lewis et al. 2020"),
    ],
    "xsum": [
        ("Lead-1", 16.30, 1.60, 11.95, "Narayan et al. 2018, Table 4"),
        ("BART-large", 45.14, 22.27, 37.25, "Lewis et al. 2020"),
    ],
}

METRIC = Metric("rouge", SCORES, per_article, published=published)
