"""Which method to pick, from the paired tests: ties are named as ties, then the cheapest of the best.

Every pair of records scored on the same articles is compared on R-1, R-2 and R-Lsum with a paired bootstrap
interval and a paired permutation test (`metrics.paired_difference`); the tests are stored in results.json
(`comparisons`), and the verdict drawn from them (`verdict`), so the report only prints them.
"""

from __future__ import annotations

from itertools import combinations
from statistics import NormalDist

import numpy as np

from tunebench.metrics import paired_difference

COMPARED_KEYS = ("rouge1", "rouge2", "rougeLsum")
POWER = 0.8
ALPHA = 0.05


def primary_records(data: dict) -> list[dict]:
    """Baselines and, per method, its first seed's record: the ones compared pairwise."""
    seen, out = set(), []
    for rec in data["records"]:
        key = rec["name"].split("@", 1)[0]  # lora@seed1 -> lora; merged runs keep their run prefix
        if rec["status"] == "SUCCESS" and key not in seen:
            seen.add(key)
            out.append(rec)
    return out


def _scores(rec: dict, key: str) -> list[float]:
    return [x[key] for x in rec["eval"]["per_article"]]


def _ids(rec: dict) -> list[str]:
    return [x["id"] for x in rec["eval"]["per_article"]]


def paired_tests(data: dict, seed: int = 0) -> list[dict]:
    """Every pair of primary records on the same articles x every compared metric: a - b, CI, p-value."""
    resamples = data["config"]["eval"].get("bootstrap_resamples", 1000)
    tests = []
    for a, b in combinations(primary_records(data), 2):
        if _ids(a) != _ids(b):
            continue  # merged runs on different articles: no paired comparison
        for key in COMPARED_KEYS:
            diff = paired_difference(_scores(a, key), _scores(b, key), seed=seed, resamples=resamples)
            tests.append({"a": a["name"], "b": b["name"], "metric": key, **diff, "resamples": resamples,
                          "seed": seed, "n_articles": len(_ids(a))})
    return tests


def significant(test: dict) -> bool:
    """The bootstrap interval excludes 0 and the permutation test's p-value is below ALPHA (files written before
    the permutation test stored a bootstrap p-value, which agrees with their interval)."""
    low, high = test["ci95"]
    return (low > 0 or high < 0) and test["p_value"] < ALPHA


def _separated(tests: list[dict], x: str, y: str) -> bool:
    """Some paired test between x and y is significant."""
    return any({t["a"], t["b"]} == {x, y} and significant(t) for t in tests)


def _beats(tests: list[dict], x: str, y: str) -> bool:
    """x is significantly above y on at least one compared metric."""
    for t in tests:
        if {t["a"], t["b"]} == {x, y} and significant(t):
            if (t["a"] == x) == (t["mean"] > 0):
                return True
    return False


def pareto_front(points: dict[str, tuple[float, ...]]) -> list[str]:
    """Names no other point dominates (<= on every cost, < on one); lower is better on every axis."""
    front = []
    for name, cost in points.items():
        dominated = any(all(o <= c for o, c in zip(other, cost, strict=True)) and other != cost
                        for n, other in points.items() if n != name)
        if not dominated:
            front.append(name)
    return front


def minimum_detectable_difference(data: dict, key: str = "rouge2") -> float | None:
    """The smallest true difference in `key` a paired test on this many articles detects 80% of the time (5%
    two-sided), from the spread of per-article differences between the trained methods (median over pairs)."""
    records = [r for r in primary_records(data) if r["kind"] == "method"]
    spreads = [np.std(np.subtract(_scores(a, key), _scores(b, key)), ddof=1)
               for a, b in combinations(records, 2) if _ids(a) == _ids(b) and len(_ids(a)) > 1]
    if not spreads or np.median(spreads) == 0:
        return None  # fewer than two methods, or identical outputs: no spread to judge from
    z = NormalDist().inv_cdf(1 - ALPHA / 2) + NormalDist().inv_cdf(POWER)
    return float(z * np.median(spreads) / np.sqrt(len(_ids(records[0]))))


def peak_rss_mb(rec: dict) -> float | None:
    """The highest RSS over a record's phases (None: no phase measured)."""
    return max((p.get("peak_rss_mb", 0) for p in rec.get("phases", {}).values()), default=None)


def verdict(data: dict, tests: list[dict]) -> dict:
    """The best-or-tied trained methods, the Pareto front among them on train time, peak memory and trained
    parameters, and the smallest R-2 difference the tests can see.

    `best`: the methods no other method beats on any of R-1/R-2/R-Lsum, and every method no test separates from
    one of those. A single name is a clear winner: it is significantly better than each other method on at least
    one metric and worse on none; several names are a tie.
    """
    methods = [r for r in primary_records(data) if r["kind"] == "method" and r.get("train")]
    names = [r["name"] for r in methods]
    unbeaten = [x for x in names if not any(_beats(tests, y, x) for y in names if y != x)]
    best = [x for x in names if x in unbeaten or any(not _separated(tests, x, u) for u in unbeaten)]
    costs = {r["name"]: (r["train"]["train_time_s"], peak_rss_mb(r) or 0.0, r["params"]["trainable"])
             for r in methods if r["name"] in best}
    n = len(_ids(methods[0])) if methods else 0
    return {"best": best, "tied": len(best) > 1, "methods": len(names), "pareto": pareto_front(costs) if costs else [],
            "pareto_axes": ["train_time_s", "peak_rss_mb", "trainable_params"], "n_articles": n,
            "metrics": list(COMPARED_KEYS), "minimum_detectable_rouge2": minimum_detectable_difference(data),
            "power": POWER, "alpha": ALPHA}


def add_statistics(data: dict) -> dict:
    """The results with their paired tests and verdict (re)computed from the records; returns `data`."""
    data["comparisons"] = paired_tests(data, seed=data["config"]["data"].get("seed", 0))
    data["verdict"] = verdict(data, data["comparisons"])
    return data
