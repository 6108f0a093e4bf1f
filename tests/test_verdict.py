"""Issues 12 and 22: the verdict is drawn from paired tests corrected for looks and multiplicity; it is an action;
it never recommends a method a baseline beats or that does not beat the baselines; the tests are in results.json."""

import numpy as np
import pytest

from tunebench import metrics
from tunebench.report.sections import advice, comparisons
from tunebench.verdict import add_statistics, minimum_detectable_difference, pareto_front

N = 60
KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
DESCRIBED = metrics.catalogue(metrics.chosen(["rouge"]))


def _record(name, scores, kind="method", train_s=100.0, rss=1000.0, params=1000, lr=1e-3, cpu_s=None, ids=None):
    ids = ids if ids is not None else [str(i) for i in range(len(scores))]
    per_article = [{"id": i, **{k: float(v) for k in KEYS}} for i, v in zip(ids, scores, strict=True)]
    rec = {"name": name, "kind": kind, "status": "SUCCESS", "eval": {"per_article": per_article},
           "phases": {"train": {"peak_rss_mb": rss, **({"cpu_s": cpu_s} if cpu_s else {})},
                      "generation": {"wall_s": 0.5 * len(scores)}}}
    if kind == "method":
        rec.update(train={"train_time_s": train_s, "lr": lr}, params={"trainable": params})
    return rec


def _data(*records, **eval_settings):
    return add_statistics({"config": {"eval": {"bootstrap_resamples": 1000, "decide_on": "rouge1", **eval_settings},
                                      "data": {"seed": 0}}, "metrics": DESCRIBED, "records": list(records)})


@pytest.fixture
def base():
    return np.random.default_rng(0).uniform(0, 20, N)


def test_a_clear_winner_is_picked(base):
    data = _data(_record("zero-shot", base - 3, kind="baseline"), _record("strong", base + 6),
                 _record("weak", base), _record("weaker", base - 1))
    v = data["verdict"]
    assert v["action"] == "pick" and v["pick"] == "strong" and v["contenders"] == ["strong"]
    assert advice(data)[0].startswith("Pick strong: on R-1 it is significantly above every baseline")


def test_equal_methods_are_undecided_and_the_cheapest_is_named_only_as_a_fallback(base):
    noise = np.random.default_rng(5).normal(0, 1, N)
    data = _data(_record("zero-shot", base - 8, kind="baseline"),
                 _record("a", base + noise, train_s=50, rss=900, params=10),
                 _record("b", base - noise, train_s=80, rss=800, params=5),
                 _record("c", base + noise / 2, train_s=90, rss=950, params=20), _record("worse", base - 5))
    v = data["verdict"]
    assert v["action"] == "undecided" and v["contenders"] == ["a", "b", "c"]
    assert v["pareto"] == ["a", "b"]  # c is slower, hungrier and larger than a
    assert v["pick"] == "a"  # the least training CPU time of the front
    words = advice(data)
    assert words[0].startswith("Cannot tell yet between a, b, c: each beats every baseline on R-1")
    assert any(line.startswith("If you must pick now, take a") for line in words)
    assert any("Deciding the rest would take about" in line or "too small to separate" in line for line in words)


def test_a_method_a_baseline_beats_is_never_recommended():
    """The user's CNN/DM case: Lead-1 above prompt tuning and last-block; the trained methods tie each other."""
    rng = np.random.default_rng(7)
    lead = rng.uniform(20, 40, N)
    data = _data(_record("lead-1", lead, kind="baseline"), _record("prompt-tuning", lead - 9 + rng.normal(0, 3, N)),
                 _record("last-block", lead - 11 + rng.normal(0, 3, N)))
    v = data["verdict"]
    assert v["action"] == "none" and v["pick"] is None and v["contenders"] == []
    assert v["out"] == {"prompt-tuning": "below lead-1", "last-block": "below lead-1"}
    assert advice(data)[0].startswith("Pick none: no trained method beats lead-1 on R-1")


def test_a_method_not_separated_from_a_baseline_is_not_recommended(base):
    """m is above the other method but within noise of zero-shot-chat: nothing is recommended."""
    noise = np.random.default_rng(8).normal(0, 6, N)
    data = _data(_record("zero-shot-chat", base, kind="baseline"), _record("m", base + 0.5 + noise),
                 _record("poor", base - 10))
    v = data["verdict"]
    assert v["action"] == "none" and v["contenders"] == ["m"] and v["qualified"] == []
    words = advice(data)
    assert words[0].startswith("Pick none: no trained method beats zero-shot-chat")
    assert any(line.startswith("m is not yet separated from the baselines") for line in words)
    assert v["open"] == [["m", "zero-shot-chat"]]


def test_holm_keeps_a_marginal_difference_from_separating_among_many(base):
    """One paired test at p ~ 0.01 separates two methods alone; among 8 methods Holm's level is far lower."""
    rng = np.random.default_rng(11)
    u = rng.normal(0, 1, N)
    u = (u - u.mean()) / u.std() * 5.66  # a - b = shift + u: the sign-flip z is sqrt(N) shift / sqrt(shift^2 + 32)
    shift = 2.016  # z = 2.6, p = 0.009
    two = _data(_record("a", base + shift + u), _record("b", base))
    many = _data(*[_record(f"m{i}", base + rng.normal(0, 4, N)) for i in range(6)],
                 _record("a", base + shift + u), _record("b", base))
    assert two["verdict"]["hypotheses"][0]["level"] == 0.05
    assert two["verdict"]["pick"] == "a" and two["verdict"]["out"] == {"b": "below a"}
    assert min(h["level"] for h in many["verdict"]["hypotheses"]) == pytest.approx(0.05 / 28)
    pair = next(h for h in many["verdict"]["hypotheses"] if {h.get("a"), h.get("b")} == {"a", "b"})
    assert not pair["rejected"]
    test = next(t for t in many["comparisons"] if {t["a"], t["b"]} == {"a", "b"} and t["metric"] == "rouge1")
    assert test["p_value"] < 0.05  # unadjusted, it would have separated them


def test_records_are_paired_by_article_id():
    """b was scored on 40 of a's 60 articles, in another order: the test pairs the 40 both have."""
    rng = np.random.default_rng(2)
    a_scores = rng.uniform(0, 30, N)
    ids = [str(i) for i in range(N)]
    order = list(reversed(range(40)))
    b = _record("b", [a_scores[i] - 2 for i in order], ids=[ids[i] for i in order])
    data = _data(_record("a", a_scores), b)
    test = next(t for t in data["comparisons"] if t["metric"] == "rouge1")
    assert test["n_articles"] == 40 and test["mean"] == pytest.approx(2.0)


def test_paired_tests_are_stored_and_drawn(base):
    data = _data(_record("zero-shot", base, kind="baseline"), _record("m", base + 4))
    stored = data["comparisons"]
    assert {(t["a"], t["b"], t["metric"]) for t in stored} == {("zero-shot", "m", k) for k in
                                                               ("rouge1", "rouge2", "rougeLsum")}
    test = stored[0]
    assert {"mean", "ci95", "p_value", "resamples", "seed", "n_articles"} <= set(test)
    assert test["mean"] == pytest.approx(-4) and test["resamples"] == 1000
    assert comparisons(data)[0].startswith("zero-shot vs m: m better than zero-shot on R-1 by 4.0 [4.0, 4.0], p = ")
    hypothesis = data["verdict"]["hypotheses"][0]
    assert hypothesis["kind"] == "above baselines" and hypothesis["rejected"] and hypothesis["at_look"] == 1
    assert hypothesis["tests"][0]["crossed"]["n_articles"] == N


def test_minimum_detectable_difference_follows_the_spread_and_the_count():
    rng = np.random.default_rng(2)
    spread = rng.normal(0, 5, N)

    def mde(n, scale):
        data = _data(_record("a", np.zeros(n)), _record("b", scale * spread[:n]))
        return minimum_detectable_difference(data, "rouge2")

    # (1.96 + 0.84) x sd / sqrt(n)
    assert mde(N, 1) == pytest.approx(2.8016 * np.std(spread, ddof=1) / np.sqrt(N), rel=1e-3)
    assert mde(N, 2) == pytest.approx(2 * mde(N, 1))
    assert mde(N // 4, 1) > mde(N, 1)


def test_pareto_front_minimises_every_axis():
    assert pareto_front({"a": (1, 5), "b": (2, 2), "c": (3, 3), "d": (1, 5)}) == ["a", "b", "d"]


def test_one_method_is_picked_only_against_the_baselines(base):
    data = _data(_record("zero-shot", base, kind="baseline"), _record("m", base + 4))
    assert data["verdict"]["action"] == "pick"
    assert advice(data)[0].startswith("Pick m: on R-1 it is significantly above every baseline (best baseline "
                                      "zero-shot: +4.0")


def test_the_cost_side_uses_cpu_seconds(base):
    """a trained faster by the wall clock (a quiet machine) but used more CPU: b is the cheaper."""
    noise = np.random.default_rng(5).normal(0, 1, N)
    data = _data(_record("zero-shot", base - 8, kind="baseline"),
                 _record("a", base + noise, train_s=50, cpu_s=300, params=10, rss=900),
                 _record("b", base - noise, train_s=80, cpu_s=150, params=10, rss=900))
    assert data["verdict"]["pareto"] == ["b"] and data["verdict"]["pick"] == "b"


def test_two_articles_never_separate_methods():
    """Both articles favour a, so every bootstrap resample does too: the permutation test still says p = 0.5."""
    from tunebench.stats import paired_difference
    from tunebench.verdict import significant

    test = paired_difference([30.0, 40.0], [10.0, 20.0])
    assert test["ci95"][0] > 0  # the bootstrap alone would call it
    assert test["p_value"] == 0.5 and not significant(test)
    many = paired_difference([30.0 + i % 3 for i in range(40)], [10.0 + i % 5 for i in range(40)])
    assert many["p_value"] < 0.01 and significant(many)


def test_the_normal_approximation_matches_the_exact_permutation_test():
    """Above 16 articles the sign-flip p-value is the normal approximation: close to exact enumeration at 16."""
    from tunebench.stats import EXACT_UP_TO, sign_flip_p

    rng = np.random.default_rng(4)
    for _ in range(5):
        diff = rng.normal(0.8, 2, EXACT_UP_TO)
        exact = sign_flip_p(diff)
        z = abs(diff.sum()) / np.sqrt((diff ** 2).sum())
        from math import erfc, sqrt

        assert erfc(z / sqrt(2)) == pytest.approx(exact, abs=0.02)


@pytest.mark.e2e
def test_older_results_files_get_their_tests_recomputed(smoke_run, tmp_path):
    """A version 3 file stored a verdict without looks or correction: reading it recomputes it as one look."""
    import json

    from tunebench.results import SCHEMA_VERSION, read_results

    data = json.loads((smoke_run / "results.json").read_text())
    old = json.loads(json.dumps({k: v for k, v in data.items() if k not in ("looks", "metrics", "published")}))
    old["verdict"] = {"best": ["lora"], "tied": False}
    kept = [k for k, d in data["metrics"].items() if d["metric"] in ("rouge", "test_loss")]  # what schema 4 had
    for rec in old["records"]:  # scores as files before schema 5 held them
        if rec["status"] == "SUCCESS":
            scores = rec["eval"].pop("scores")
            rec["eval"]["rouge"] = {k: v for k, v in scores.items() if k.startswith("rouge")}
            rec["eval"]["per_article"] = [{k: v for k, v in row.items() if k in ("id", "target_tokens", *kept)}
                                          for row in rec["eval"]["per_article"]]
    (tmp_path / "results.json").write_text(json.dumps({**old, "schema_version": 3}))
    upgraded = read_results(tmp_path)
    assert upgraded["schema_version"] == SCHEMA_VERSION == 5
    assert upgraded["metrics"] == {k: data["metrics"][k] for k in kept}
    assert upgraded["published"] == data["published"]
    assert [{k: v for k, v in r.get("eval", {}).get("scores", {}).items() if k in kept} for r in data["records"]] \
        == [r.get("eval", {}).get("scores", {}) for r in upgraded["records"]]
    assert upgraded["comparisons"] == [t for t in data["comparisons"] if t["metric"] in kept]
    assert upgraded["verdict"]["action"] in ("pick", "none", "undecided")
    assert upgraded["verdict"]["looks_taken"] == 1
