"""Issue 22: sequential evaluation keeps the false-separation rate at 5% over all looks, finds true differences
that one look misses, and scores again only the records an open question involves."""

from types import SimpleNamespace

import numpy as np
import pytest

from tunebench import metrics
from tunebench.config import load_config, to_dict
from tunebench.data.sources import Example
from tunebench.looks import sequential_evaluation
from tunebench.results import ResultsFile
from tunebench.sequential import critical_z, nominal_p
from tunebench.verdict import decide

SIZES = [40, 80, 120, 160, 200]  # the demo's plan: first look 40 articles, cap 5x
RUNS = 2000
SD = 8.0  # per-article ROUGE noise of each method


def test_one_look_is_the_plain_test_and_five_looks_spend_alpha_exactly():
    assert critical_z((1.0,), 0.05)[0] == pytest.approx(1.95996, abs=1e-4)
    assert nominal_p((40,), 0.05) == (0.05,)
    fractions = tuple(n / 200 for n in SIZES)
    bounds = np.array(critical_z(fractions, 0.05))
    assert np.all(bounds > 1.96) and np.all(np.diff(bounds) < 0)  # Pocock-type: nearly flat, above 1.96
    rng = np.random.default_rng(0)  # Brownian paths at the looks: crossing rate = alpha
    paths = np.cumsum(rng.normal(size=(200_000, 5)) * np.sqrt(0.2), axis=1) / np.sqrt(fractions)
    assert (np.abs(paths) >= bounds).any(axis=1).mean() == pytest.approx(0.05, abs=0.002)


def _simulate(delta: float, naive: bool = False, seed: int = 0, runs: int = RUNS) -> tuple[float, float]:
    """Share of runs in which the two methods were separated before or at the cap, and the share a single look at
    the first 40 articles separates (p < 0.05), for a true mean difference `delta`. Each run is decided by the real
    verdict code (`decide`) at each look, as compare does; `naive` tests p < 0.05 at every look instead."""
    rng = np.random.default_rng(seed)
    ids = [str(i) for i in range(SIZES[-1])]
    batches = [ids[a:b] for a, b in zip([0, *SIZES[:-1]], SIZES, strict=True)]
    separated = first_look = 0
    for _ in range(runs):
        base = rng.uniform(5, 40, SIZES[-1])
        a = base + rng.normal(0, SD, SIZES[-1]) + delta
        b = base + rng.normal(0, SD, SIZES[-1])
        for look, n in enumerate(SIZES, start=1):
            data = {"config": {"eval": {"decide_on": "rouge1"}},
                    "looks": {"sizes": [n] if naive else SIZES, "ids": [ids[:n]] if naive else batches[:look]},
                    "records": [_rec("a", a[:n]), _rec("b", b[:n])]}
            state = decide(data)
            if look == 1:
                first_look += naive_first(a[:n] - b[:n])
            if not state["open"]:
                separated += 1
                break
    return separated / runs, first_look / runs


def naive_first(diff: np.ndarray) -> bool:
    from tunebench.stats import sign_flip_p

    return sign_flip_p(diff) < 0.05


def _row(article_id: str, score: float) -> dict:
    return {"id": article_id, **{key: float(score) for key in ("rouge1", "rouge2", "rougeL", "rougeLsum")}}


def _rec(name: str, scores, kind: str = "method") -> dict:
    rec = {"name": name, "kind": kind, "status": "SUCCESS",
           "eval": {"per_article": [_row(str(i), s) for i, s in enumerate(scores)]}}
    if kind == "method":
        rec.update(train={"train_time_s": 1.0}, params={"trainable": 1})
    return rec


MC_ERROR = 3 * np.sqrt(0.05 * 0.95 / RUNS)


def test_no_true_difference_is_separated_at_most_5_percent_of_the_time_over_all_looks():
    rate, _ = _simulate(0.0)
    assert rate <= 0.05 + MC_ERROR
    assert rate > 0.02  # the boundaries spend the error they are allowed, not far less


def test_naive_repeated_testing_fails_the_same_check():
    rate, _ = _simulate(0.0, naive=True)
    assert rate > 0.05 + MC_ERROR  # p < 0.05 at each of 5 looks separates equal methods ~14% of the time


def test_a_difference_one_look_mostly_misses_is_found_before_the_cap():
    delta = 3.2  # per-article sd of the difference 8 * sqrt(2): a single test at 40 articles has ~45% power
    rate, first = _simulate(delta, runs=1000, seed=1)
    assert first < 0.5
    assert rate >= 0.8


def _bench(tmp_path, reserve: list[Example]):
    cfg = load_config("smoke", overrides=["eval.decide=true", "eval.decide_seconds=1000"])
    return SimpleNamespace(cfg=cfg, splits=SimpleNamespace(reserve=reserve), run_dir=tmp_path,
                           metrics=metrics.chosen(cfg.eval.metrics))


def _results(tmp_path, records: dict[str, tuple[str, callable]], n0: int, sizes: list[int]) -> ResultsFile:
    results = ResultsFile(tmp_path / "results.json", {
        "config": to_dict(load_config("smoke")),
        "looks": {"sizes": sizes, "ids": [[str(i) for i in range(n0)]], "taken": [], "seconds": 0.0,
                  "stopped": None}})
    for name, (kind, score) in records.items():
        rec = _rec(name, [score(i) for i in range(n0)], kind)
        rec["phases"] = {"generation": {"wall_s": 0.01 * n0}}
        if kind == "method":
            rec["phases"]["train"] = {"wall_s": 1.0, "peak_rss_mb": 100.0}
        results.data["records"].append(rec)
    results.save()
    return results


def test_only_the_records_an_open_question_involves_are_scored_again(tmp_path):
    """lead is far below a and b at the first look (decided); a and b are equal: only they get more articles, up
    to the cap, and the verdict says it cannot tell, with what deciding would cost."""
    noise = np.random.default_rng(3).normal(0, 5, 200)
    score = {"lead-1": ("baseline", lambda i: 1.0), "a": ("method", lambda i: 30.0 + noise[i]),
             "b": ("method", lambda i: 30.0 - noise[i] * 0.9 + 0.05)}
    results = _results(tmp_path, score, 40, SIZES)
    scored = []

    def rescore(rec, examples):
        scored.append((rec["name"], len(examples)))
        return [_row(ex.id, score[rec["name"]][1](int(ex.id))) for ex in examples]

    reserve = [Example(str(i), "x", "y") for i in range(40, 200)]
    sequential_evaluation(_bench(tmp_path, reserve), results, rescore)
    assert scored == [("a", 40), ("b", 40)] * 4
    data = results.data
    assert [t["records"] for t in data["looks"]["taken"]] == [["a", "b"]] * 4
    assert data["looks"]["stopped"].startswith("cap")
    counts = {r["name"]: len(r["eval"]["per_article"]) for r in data["records"]}
    assert counts == {"lead-1": 40, "a": 200, "b": 200}
    v = data["verdict"]
    assert v["action"] == "undecided" and v["contenders"] == ["a", "b"] and v["looks_taken"] == 5
    assert v["cost_to_decide"]["records"] == ["a", "b"]


def test_looks_stop_when_the_verdict_is_decided(tmp_path):
    """a is above b by a margin the first look cannot confirm (5 articles' worth of noise) but later looks do."""
    noise = np.random.default_rng(4).normal(0, 6, 200)
    score = {"zero-shot": ("baseline", lambda i: 2.0), "a": ("method", lambda i: 24.0 + noise[i]),
             "b": ("method", lambda i: 21.0 + noise[(i + 7) % 200])}
    results = _results(tmp_path, score, 40, SIZES)

    def rescore(rec, examples):
        return [_row(ex.id, score[rec["name"]][1](int(ex.id))) for ex in examples]

    sequential_evaluation(_bench(tmp_path, [Example(str(i), "x", "y") for i in range(40, 200)]), results, rescore)
    data = results.data
    assert data["looks"]["stopped"] == "decided" and 1 < len(data["looks"]["ids"]) < 5
    assert data["verdict"]["action"] == "pick" and data["verdict"]["pick"] == "a"
    assert data["verdict"]["out"] == {"b": "below a"}


def test_a_look_that_would_pass_the_time_budget_is_not_started(tmp_path):
    score = {"a": ("method", lambda i: 20.0 + (i % 4)), "b": ("method", lambda i: 20.0 + ((i + 2) % 4))}
    results = _results(tmp_path, score, 40, SIZES)
    bench = _bench(tmp_path, [Example(str(i), "x", "y") for i in range(40, 200)])
    bench.cfg.eval.decide_seconds = 0.5  # a look of 40 articles x 2 records at 0.01 s each would take 0.8 s
    sequential_evaluation(bench, results, lambda rec, examples: pytest.fail("no look should start"))
    assert results.data["looks"]["stopped"].startswith("time")
