"""Issue 12: the verdict is drawn from paired tests; ties are called ties; the tests are stored in results.json."""

import numpy as np
import pytest

from tunebench.report import advice, below_zero_shot, comparisons
from tunebench.verdict import add_statistics, minimum_detectable_difference, pareto_front

N = 60


def _record(name, scores, kind="method", train_s=100.0, rss=1000.0, params=1000, lr=1e-3):
    per_article = [{"id": str(i), **{k: float(v) for k in ("rouge1", "rouge2", "rougeLsum")}}
                   for i, v in enumerate(scores)]
    rec = {"name": name, "kind": kind, "status": "SUCCESS", "eval": {"per_article": per_article},
           "phases": {"train": {"peak_rss_mb": rss}}}
    if kind == "method":
        rec.update(train={"train_time_s": train_s, "lr": lr}, params={"trainable": params})
    return rec


def _data(*records):
    return add_statistics({"config": {"eval": {"bootstrap_resamples": 1000}, "data": {"seed": 0}},
                           "records": list(records)})


@pytest.fixture
def base():
    return np.random.default_rng(0).uniform(0, 20, N)


def test_a_clear_winner_is_named(base):
    data = _data(_record("zero-shot", base - 3, kind="baseline"), _record("strong", base + 6),
                 _record("weak", base), _record("weaker", base - 1))
    assert data["verdict"]["best"] == ["strong"] and not data["verdict"]["tied"]
    assert advice(data)[0].startswith("Best quality: strong (significantly better than every other method")


def test_methods_with_equal_scores_are_tied_and_the_cheapest_named(base):
    data = _data(_record("a", base, train_s=50, rss=900, params=10), _record("b", base, train_s=80, rss=800,
                                                                          params=5),
                 _record("c", base, train_s=90, rss=950, params=20), _record("worse", base - 5))
    v = data["verdict"]
    assert v["best"] == ["a", "b", "c"] and v["tied"]
    assert v["pareto"] == ["a", "b"]  # c is slower, hungrier and larger than a
    words = " ".join(advice(data))
    assert words.startswith("Tied for best quality: a, b, c") and "Best quality:" not in words


def test_a_method_inseparable_from_the_winner_is_tied_with_it(base):
    """b is a noisy copy of a: no test separates them, so neither is named the winner."""
    noise = np.random.default_rng(1).normal(0, 8, N)
    data = _data(_record("a", base + 3), _record("b", base + 3 + noise))
    assert data["verdict"]["best"] == ["a", "b"]


def test_paired_tests_are_stored_and_drawn(base):
    data = _data(_record("zero-shot", base, kind="baseline"), _record("m", base + 4))
    stored = data["comparisons"]
    assert {(t["a"], t["b"], t["metric"]) for t in stored} == {("zero-shot", "m", k) for k in
                                                               ("rouge1", "rouge2", "rougeLsum")}
    test = stored[0]
    assert {"mean", "ci95", "p_value", "resamples", "seed", "n_articles"} <= set(test)
    assert test["mean"] == pytest.approx(-4) and test["resamples"] == 1000
    assert comparisons(data) == ["zero-shot vs m: m > zero-shot on R-1 by 4.0 [4.0, 4.0], p = 0.001; m > "
                                 "zero-shot on R-2 by 4.0 [4.0, 4.0], p = 0.001; m > zero-shot on R-Lsum by 4.0 "
                                 "[4.0, 4.0], p = 0.001."]
    assert below_zero_shot(data) == []
    same = _data(_record("zero-shot", base, kind="baseline"), _record("m", base, lr=0.03))
    assert below_zero_shot(same)[0].startswith("m (lr 0.03) did not beat zero-shot on R-2")


def test_minimum_detectable_difference_follows_the_spread_and_the_count():
    rng = np.random.default_rng(2)
    spread = rng.normal(0, 5, N)

    def mde(n, scale):
        return minimum_detectable_difference(_data(_record("a", np.zeros(n)), _record("b", scale * spread[:n])))

    # (1.96 + 0.84) x sd / sqrt(n)
    assert mde(N, 1) == pytest.approx(2.8016 * np.std(spread, ddof=1) / np.sqrt(N), rel=1e-3)
    assert mde(N, 2) == pytest.approx(2 * mde(N, 1))
    assert mde(N // 4, 1) > mde(N, 1)


def test_pareto_front_minimises_every_axis():
    assert pareto_front({"a": (1, 5), "b": (2, 2), "c": (3, 3), "d": (1, 5)}) == ["a", "b", "d"]


def test_one_method_is_not_called_a_winner(base):
    data = _data(_record("zero-shot", base, kind="baseline"), _record("m", base + 4))
    assert advice(data) == ["Only one method was trained (m): compare it with the baselines below."]


def test_two_articles_never_separate_methods():
    """Both articles favour a, so every bootstrap resample does too: the permutation test still says p = 0.5."""
    from tunebench.metrics import paired_difference
    from tunebench.verdict import significant

    test = paired_difference([30.0, 40.0], [10.0, 20.0])
    assert test["ci95"][0] > 0  # the bootstrap alone would call it
    assert test["p_value"] == 0.5 and not significant(test)
    many = paired_difference([30.0 + i % 3 for i in range(40)], [10.0 + i % 5 for i in range(40)])
    assert many["p_value"] < 0.01 and significant(many)


def test_older_results_files_get_their_tests_recomputed(smoke_run, tmp_path):
    """A version 2 file stored bootstrap-only tests: reading it recomputes them from the per-article scores."""
    import json

    from tunebench.results import SCHEMA_VERSION, read_results

    data = json.loads((smoke_run / "results.json").read_text())
    old = [{k: v for k, v in t.items() if k != "p_test"} | {"p_value": 0.0} for t in data["comparisons"]]
    (tmp_path / "results.json").write_text(json.dumps({**data, "schema_version": 2, "comparisons": old}))
    upgraded = read_results(tmp_path)
    assert upgraded["schema_version"] == SCHEMA_VERSION
    assert upgraded["comparisons"] == data["comparisons"]
    assert all(t["p_test"] == "paired sign-flip permutation" for t in upgraded["comparisons"])
