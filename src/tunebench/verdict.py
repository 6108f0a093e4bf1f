"""Which method to pick, from paired tests that stay valid when the articles are looked at more than once.

The verdict is decided on one metric chosen before the run (`eval.decide_on`), by a family of hypotheses:
- for each trained method m, "m is above every baseline" (an intersection-union test, Berger 1982: rejected when
  each of m's paired tests against Lead-k, zero-shot and zero-shot-chat is, in m's favour);
- for each pair of trained methods, "they score the same".
Each paired test is a sign-flip permutation test on the articles both records have (paired by article id), looked
at after each batch of test articles (`looks` in results.json) against group-sequential boundaries
(sequential.py); the family is corrected with Holm's step-down (Holm 1979), its group-sequential form (Maurer &
Bretz 2013): a hypothesis tested at level alpha / (hypotheses not yet rejected), that level rising as others are
rejected. Over all looks and all hypotheses the chance of any false separation stays at most ALPHA.

From the rejections: a method is out when another method or a baseline is significantly above it; the methods not
out are the contenders; one contender that beats every baseline is the pick; several are a tie that more articles
may decide (compare.py's sequential evaluation asks `open_records` which records to score further).
Every pair of records is also compared on every score of the run's metrics (`comparisons`, results.json's `metrics`
says which are compared and which way is better), unadjusted, for the report; the verdict reads only the
hypotheses above. A score where lower is better (a loss) is decided on its negation, so "above" always means better.
"""

from __future__ import annotations

import math
from itertools import combinations
from statistics import NormalDist

import numpy as np

from tunebench.sequential import SPENDING, nominal_p
from tunebench.stats import paired_difference, sign_flip_p

POWER = 0.8
ALPHA = 0.05
BIG = 100_000
"""Articles beyond which a difference is reported as too small to be worth deciding."""


def primary_records(data: dict) -> list[dict]:
    """Baselines and, per method, its first seed's record: the ones compared pairwise."""
    seen, out = set(), []
    for rec in data["records"]:
        key = rec["name"].split("@", 1)[0]  # lora@seed1 -> lora; merged runs keep their run prefix
        if rec["status"] == "SUCCESS" and key not in seen:
            seen.add(key)
            out.append(rec)
    return out


def values(rec: dict, key: str, sign: float = 1.0) -> dict[str, float]:
    """A record's per-article `key` by article id (articles without it left out), times `sign`."""
    return {x["id"]: sign * x[key] for x in rec["eval"]["per_article"] if x.get(key) is not None}


def scores_described(data: dict) -> dict[str, dict]:
    """The run's scores as results.json describes them (`metrics`): key -> label, direction, format, ..."""
    return data.get("metrics") or {}


def orientation(data: dict, key: str) -> float:
    """+1 where higher is better, -1 where lower is (so an oriented difference > 0 always favours the first)."""
    return 1.0 if scores_described(data).get(key, {}).get("higher_is_better", True) else -1.0


def look_plan(data: dict) -> tuple[tuple[int, ...], list[list[str]]]:
    """(planned cumulative article counts, ids of each look taken, cumulative). Runs without looks (older files,
    `evaluate` folders, merged runs) are one look over whatever articles a pair has in common."""
    plan = data.get("looks")
    if not plan or not plan.get("ids"):
        return (), []
    cumulative, ids = [], []
    for batch in plan["ids"]:
        ids = ids + list(batch)
        cumulative.append(ids)
    return tuple(plan["sizes"]), cumulative


def pair_looks(a: dict[str, float], b: dict[str, float], looks: list[list[str]]) -> list[dict]:
    """The paired test of a - b at each look both records are complete for: look index, n, mean, p-value."""
    out = []
    if not looks:
        common = [i for i in a if i in b]
        looks = [common] if len(common) > 1 else []
    for index, ids in enumerate(looks):
        if not all(i in a and i in b for i in ids):
            break
        diff = np.array([a[i] - b[i] for i in ids])
        out.append({"look": index + 1, "n_articles": len(ids), "mean": float(diff.mean()),
                    "sd": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0, "p_value": sign_flip_p(diff)})
    return out


def first_crossing(tests: list[dict], sizes: tuple[int, ...], level: float) -> dict | None:
    """The first look whose p-value is below the boundary at `level`, or None."""
    thresholds = nominal_p(sizes or (tests[-1]["n_articles"],), level)
    for test in tests:
        threshold = thresholds[min(test["look"], len(thresholds)) - 1]
        if test["p_value"] < threshold:
            return {**test, "nominal_p": threshold}
    return None


def hypotheses(methods: list[str], baselines: list[str], scores: dict[str, dict[str, float]],
               looks: list[list[str]]) -> tuple[list[dict], dict[tuple[str, str], list[dict]]]:
    """The family that decides the verdict, and each paired test's looks (by (a, b))."""
    tests = {}
    family = []
    for m in methods:
        subs = [(m, b) for b in baselines if scores[b]]
        if subs:
            family.append({"kind": "above baselines", "method": m, "subs": subs})
    for x, y in combinations(methods, 2):
        family.append({"kind": "pair", "a": x, "b": y, "subs": [(x, y)]})
    for h in family:
        for a, b in h["subs"]:
            tests[(a, b)] = pair_looks(scores[a], scores[b], looks)
    return family, tests


def holm(family: list[dict], tests: dict, sizes: tuple[int, ...], alpha: float = ALPHA) -> None:
    """Group-sequential Holm: mark each hypothesis `rejected` (with its crossings) in place."""
    rejected = 0
    changed = True
    while changed:
        changed = False
        level = alpha / max(len(family) - rejected, 1)
        for h in family:
            if h.get("rejected"):
                continue
            h["level"] = level
            crossings = [first_crossing(tests[s], sizes, level) if tests[s] else None for s in h["subs"]]
            h["crossings"] = crossings
            if h["kind"] == "pair":
                ok = crossings[0] is not None
            else:  # every baseline crossed, each in the method's favour
                ok = all(c is not None and c["mean"] > 0 for c in crossings)
            if ok:
                h["rejected"], h["at_look"] = True, max(c["look"] for c in crossings)
                rejected += 1
                changed = True


def _winner(h: dict) -> str | None:
    c = h["crossings"][0]
    return None if c is None else (h["a"] if c["mean"] > 0 else h["b"])


def decide(data: dict) -> dict:
    """The hypotheses tested, who is out and why, the contenders, and what is still open."""
    key = data["config"]["eval"]["decide_on"]
    recs = primary_records(data)
    methods = [r["name"] for r in recs if r["kind"] == "method" and r.get("train")]
    baselines = [r["name"] for r in recs if r["kind"] == "baseline"]
    scores = {r["name"]: values(r, key, orientation(data, key)) for r in recs}  # oriented: higher is better
    sizes, looks = look_plan(data)
    family, tests = hypotheses(methods, baselines, scores, looks)
    holm(family, tests, sizes)
    out: dict[str, str] = {}
    qualified = {m: not any(h["kind"] == "above baselines" and h["method"] == m for h in family) for m in methods}
    for h in family:
        if h["kind"] == "pair" and h.get("rejected"):
            loser = h["b"] if _winner(h) == h["a"] else h["a"]
            out.setdefault(loser, f"below {_winner(h)}")
        elif h["kind"] == "above baselines":
            qualified[h["method"]] = bool(h.get("rejected"))
            for (m, b), c in zip(h["subs"], h["crossings"], strict=True):
                if c is not None and c["mean"] < 0:
                    out.setdefault(m, f"below {b}")
    contenders = [m for m in methods if m not in out]
    mean = {m: float(np.mean(list(scores[m].values()))) for m in contenders}
    leader = max(contenders, key=lambda m: mean[m]) if contenders else None
    open_pairs = []
    for h in family:  # the questions whose answer would decide: the leader against each rival and its baselines
        if h.get("rejected") or leader is None:
            continue
        if h["kind"] == "pair" and leader in (h["a"], h["b"]) and {h["a"], h["b"]} <= set(contenders):
            open_pairs.append((h["a"], h["b"]))
        elif h["kind"] == "above baselines" and h["method"] == leader:
            open_pairs += [s for s, c in zip(h["subs"], h["crossings"], strict=True) if c is None]
    return {"decide_on": key, "family": family, "tests": tests, "sizes": sizes, "looks": looks, "methods": methods,
            "baselines": baselines, "scores": scores, "out": out, "qualified": qualified, "contenders": contenders,
            "leader": leader, "open": open_pairs}


def open_records(data: dict) -> list[str]:
    """The records whose further scoring could decide the verdict (empty: it is decided): the leading contender
    (highest mean on the deciding metric), the contenders not yet separated from it, and the baselines it has not
    yet beaten. Questions that cannot change the pick (does a trailing method beat zero-shot?) are not pursued."""
    state = decide(data)
    names = {n for pair in state["open"] for n in pair}
    return [r["name"] for r in primary_records(data) if r["name"] in names]


def significant(test: dict) -> bool:
    """An unadjusted paired test (the report's table of every pair): interval excludes 0 and p < ALPHA."""
    low, high = test["ci95"]
    return (low > 0 or high < 0) and test["p_value"] < ALPHA


def paired_tests(data: dict, seed: int = 0) -> list[dict]:
    """Every pair of primary records x every compared score (`pairwise`, and the deciding one), on the articles
    both have: a - b, bootstrap CI, p-value. Unadjusted: the report's detail, not the verdict."""
    resamples = data["config"]["eval"].get("bootstrap_resamples", 1000)
    decide_on = data["config"]["eval"].get("decide_on")
    keys = [k for k, s in scores_described(data).items() if s.get("pairwise", True) or k == decide_on]
    out = []
    for a, b in combinations(primary_records(data), 2):
        for key in keys:
            va, vb = values(a, key), values(b, key)
            common = [i for i in va if i in vb]
            if len(common) < 2:
                continue
            diff = paired_difference([va[i] for i in common], [vb[i] for i in common], seed=seed,
                                     resamples=resamples)
            out.append({"a": a["name"], "b": b["name"], "metric": key, **diff, "resamples": resamples, "seed": seed,
                        "n_articles": len(common), "lower_is_better": orientation(data, key) < 0})
    return out


def pareto_front(points: dict[str, tuple[float, ...]]) -> list[str]:
    """Names no other point dominates (<= on every cost, < on one); lower is better on every axis."""
    front = []
    for name, cost in points.items():
        dominated = any(all(o <= c for o, c in zip(other, cost, strict=True)) and other != cost
                        for n, other in points.items() if n != name)
        if not dominated:
            front.append(name)
    return front


def minimum_detectable_difference(data: dict, key: str) -> float | None:
    """The smallest true difference in `key` a single paired test on this many articles detects 80% of the time
    (5% two-sided), from the spread of per-article differences between the trained methods (median over pairs)."""
    records = [r for r in primary_records(data) if r["kind"] == "method"]
    spreads, counts = [], []
    for a, b in combinations(records, 2):
        va, vb = values(a, key), values(b, key)
        common = [i for i in va if i in vb]
        if len(common) > 1:
            spreads.append(np.std([va[i] - vb[i] for i in common], ddof=1))
            counts.append(len(common))
    if not spreads or np.median(spreads) == 0:
        return None  # fewer than two methods, or identical outputs: no spread to judge from
    z = NormalDist().inv_cdf(1 - ALPHA / 2) + NormalDist().inv_cdf(POWER)
    return float(z * np.median(spreads) / np.sqrt(min(counts)))


def peak_rss_mb(rec: dict) -> float | None:
    """The highest RSS over a record's own phases (None: no phase measured). The extra looks of sequential
    evaluation are left out: they run after every record, in a process that holds what the others left; so is the
    serving job, whose memory its own table reports (serving.py)."""
    return max((p.get("peak_rss_mb", 0) for name, p in rec.get("phases", {}).items()
                if name not in ("looks", "serving")), default=None)


def train_cpu_s(rec: dict) -> float:
    """CPU seconds of training (moves less with the machine's load than wall seconds); wall seconds for files
    written before CPU time was measured."""
    phase = rec.get("phases", {}).get("train", {})
    return phase.get("cpu_s") or rec["train"]["train_time_s"]


def seconds_per_article(rec: dict) -> float:
    """Generation (and scoring) wall seconds per test article of a record, over every look it was scored at."""
    phases = rec.get("phases", {})
    wall = phases.get("generation", {}).get("wall_s", 0.0) + phases.get("looks", {}).get("wall_s", 0.0)
    return wall / max(len(rec["eval"]["per_article"]), 1)


def articles_to_decide(tests: list[dict], level: float) -> float:
    """Articles a single test at `level` would need to separate this pair 80% of the time, if the observed mean
    difference and spread were the truth (math.inf: no difference observed)."""
    last = tests[-1]
    if last["mean"] == 0 or last["sd"] == 0:
        return math.inf
    z = NormalDist().inv_cdf(1 - level / 2) + NormalDist().inv_cdf(POWER)
    return (z * last["sd"] / abs(last["mean"])) ** 2


def cost_to_decide(data: dict, state: dict) -> dict | None:
    """For the open questions left: the articles that would decide those with a difference seen so far, the minutes
    that would take here, and the pairs that scored the same on every article so far (no number of articles is
    expected to separate them: `equal`)."""
    if not state["open"]:
        return None
    level = min((h["level"] for h in state["family"] if not h.get("rejected")), default=ALPHA)
    records = {r["name"]: r for r in primary_records(data)}
    needed, involved, equal = 0.0, set(), []
    for pair in state["open"]:
        tests = state["tests"].get(pair) or state["tests"].get(pair[::-1])
        if not tests:
            continue
        articles = articles_to_decide(tests, level)
        if math.isfinite(articles) and articles <= BIG:
            needed = max(needed, articles)
            involved |= set(pair)
        else:
            equal.append(list(pair))
    if not involved:
        return {"articles": None, "records": [], "have": 0, "equal": equal}
    have = max(len(records[n]["eval"]["per_article"]) for n in involved)
    articles = max(int(math.ceil(needed)), have + 1)
    minutes = (articles - have) * sum(seconds_per_article(records[n]) for n in involved) / 60.0
    return {"articles": articles, "minutes": minutes, "records": sorted(involved), "have": have, "equal": equal}


def _public(h: dict) -> dict:
    """A hypothesis as stored in results.json: what it claims, its level, its looks and where it crossed."""
    out = {k: h[k] for k in ("kind", "method", "a", "b") if k in h}
    out.update(level=h.get("level"), rejected=bool(h.get("rejected")), at_look=h.get("at_look"),
               tests=[{"a": a, "b": b, "crossed": c} for (a, b), c in zip(h["subs"], h.get("crossings") or
                                                                         [None] * len(h["subs"]), strict=True)])
    return out


def verdict(data: dict) -> dict:
    """The decision: `action` pick / none / undecided, the pick (or what to take if one must pick now), the
    contenders and why the others are out, the open questions and what deciding them would cost, the Pareto front
    of the contenders on training CPU seconds, peak memory and trained parameters, and the boundary used."""
    state = decide(data)
    records = {r["name"]: r for r in primary_records(data)}
    qualified = [m for m in state["contenders"] if state["qualified"][m]]
    costs = {m: (train_cpu_s(records[m]), peak_rss_mb(records[m]) or 0.0, records[m]["params"]["trainable"])
             for m in qualified}
    front = pareto_front(costs) if costs else []
    cheapest = min(front, key=lambda m: costs[m]) if front else None
    if not state["methods"]:
        action, pick = None, None
    elif len(state["contenders"]) == 1 and qualified:
        action, pick = "pick", qualified[0]
    elif not qualified:
        action, pick = "none", None
    else:
        action, pick = "undecided", cheapest
    base_means = {b: float(np.mean(list(state["scores"][b].values()) or [math.nan])) for b in state["baselines"]}
    best_baseline = max(base_means, key=base_means.get) if base_means else None
    sizes, looks = state["sizes"], state["looks"]
    n_articles = max((len(r["eval"]["per_article"]) for r in records.values()), default=0)
    return {"action": action, "pick": pick, "decide_on": state["decide_on"], "methods": len(state["methods"]),
            "leader": state["leader"],
            "contenders": state["contenders"], "qualified": qualified, "out": state["out"],
            "best_baseline": best_baseline, "open": [list(p) for p in state["open"]],
            "cost_to_decide": cost_to_decide(data, state),
            "pareto": front, "pareto_axes": ["train_cpu_s", "peak_rss_mb", "trainable_params"],
            "looks_taken": len(looks) or 1, "looks_planned": len(sizes) or 1, "n_articles": n_articles,
            "hypotheses": [_public(h) for h in state["family"]],
            "boundary": {"alpha": ALPHA, "spending": SPENDING if len(sizes) > 1 else "one look: alpha",
                         "multiplicity": f"Holm over {len(state['family'])} hypotheses (group-sequential, "
                                         "Maurer & Bretz 2013); above-every-baseline as intersection-union tests",
                         "planned_articles": list(sizes) or None,
                         "nominal_p_at_alpha": list(nominal_p(sizes, ALPHA)) if sizes else [ALPHA]},
            "minimum_detectable": minimum_detectable_difference(data, state["decide_on"]),
            "power": POWER, "alpha": ALPHA,
            # kept for older readers: the contenders
            "best": state["contenders"], "tied": len(state["contenders"]) > 1}


def add_statistics(data: dict) -> dict:
    """The results with their paired tests and verdict (re)computed from the records; returns `data`."""
    data["comparisons"] = paired_tests(data, seed=data["config"]["data"].get("seed", 0))
    data["verdict"] = verdict(data)
    return data
