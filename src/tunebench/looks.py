"""Sequential evaluation (`eval.decide`): while the verdict is open, score only the records its open questions
involve on the next batch of unseen test articles, and look again.

The looks are planned before the first one (`looks.sizes` in results.json: the first look's articles, then
`eval.decide_step` more at a time up to `eval.max_test`), so the group-sequential boundaries of verdict.py hold.
Each look's article ids are stored before it is scored and each record is saved as soon as it has them, so a
killed run resumes inside a look with the records already scored kept.
"""

from __future__ import annotations

from collections.abc import Callable

from tunebench import distributed
from tunebench.data.sources import Example
from tunebench.errors import TunebenchError
from tunebench.resources import PhaseMonitor
from tunebench.results import ResultsFile
from tunebench.verdict import open_records, seconds_per_article
from tunebench.workbench import Workbench, summarize_scores

Rescore = Callable[[dict, list[Example]], list[dict]]
"""(record, test articles) -> that record's per-article scores on them (generating as the record was scored)."""


def look_plan(bench: Workbench) -> dict:
    """The looks of this run: cumulative article counts (first look: the test articles), the ids of the looks
    taken so far (the first), and the extra seconds spent."""
    cfg, n0 = bench.cfg.eval, len(bench.splits.test)
    sizes = [n0]
    if cfg.decide and len(bench.cfg.methods) > 0:
        cap = min(cfg.max_test or 5 * n0, n0 + len(bench.splits.reserve))
        step = cfg.decide_step or n0
        while sizes[-1] < cap:
            sizes.append(min(sizes[-1] + step, cap))
    return {"sizes": sizes, "ids": [[ex.id for ex in bench.splits.test]], "taken": [], "seconds": 0.0,
            "available": n0 + len(bench.splits.reserve), "stopped": None if len(sizes) > 1 else "one look planned"}


def _record(results: ResultsFile, name: str) -> dict:
    return next(r for r in results.data["records"] if r["name"] == name)


def _next_look(bench: Workbench, results: ResultsFile) -> list[str] | None:
    """Plan the next look (its ids stored, the records to score) or say why there is none (None)."""
    plan = results.data["looks"]
    taken, sizes = len(plan["ids"]), plan["sizes"]
    if taken >= len(sizes):
        plan["stopped"] = f"cap: {sizes[-1]} articles"
        return None
    need = open_records(results.data)
    if not need:
        plan["stopped"] = "decided"
        return None
    n0 = sizes[0]
    ids = [ex.id for ex in bench.splits.reserve[sizes[taken - 1] - n0:sizes[taken] - n0]]
    estimate = sum(seconds_per_article(_record(results, n)) for n in need) * len(ids)
    # every rank must take the same decision: the writer's clock decides
    if distributed.from_writer(plan["seconds"] + estimate > bench.cfg.eval.decide_seconds):
        plan["stopped"] = (f"time: the next look would take about {estimate:.0f} s, past eval.decide_seconds "
                           f"({bench.cfg.eval.decide_seconds:g} s, {plan['seconds']:.0f} s spent)")
        return None
    plan["ids"].append(ids)
    plan["pending"] = need
    results.save()  # the look's articles and records are fixed before any is scored: a resume continues it
    return need


def _extend(bench: Workbench, results: ResultsFile, name: str, examples: list[Example], rescore: Rescore) -> None:
    """Score record `name` on `examples` too and save it (its figures recomputed over all its articles)."""
    rec = _record(results, name)
    have = {row["id"] for row in rec["eval"]["per_article"]}
    todo = [ex for ex in examples if ex.id not in have]
    if not todo:
        return
    distributed.say(f"tunebench: {name}: {len(todo)} more test articles (look {len(results.data['looks']['ids'])})")
    with PhaseMonitor() as phase:
        rows = rescore(rec, todo)
    rec["eval"].update(summarize_scores(bench, rec["eval"]["per_article"] + rows))
    spent = phase.as_dict()
    looks = rec["phases"].setdefault("looks", {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0})
    looks["wall_s"] = round(looks["wall_s"] + spent["wall_s"], 3)
    looks["cpu_s"] = round(looks.get("cpu_s", 0.0) + spent.get("cpu_s", 0.0), 3)
    looks["peak_rss_mb"] = max(looks["peak_rss_mb"], spent["peak_rss_mb"])
    results.data["looks"]["seconds"] = round(results.data["looks"]["seconds"] + spent["wall_s"], 3)
    results.save()  # `rec` is the stored record itself: it keeps its place in the table


def sequential_evaluation(bench: Workbench, results: ResultsFile, rescore: Rescore) -> None:
    """Look again until the verdict is decided, the planned looks are taken, or eval.decide_seconds is spent."""
    plan = results.data.get("looks")
    if not plan or len(plan["sizes"]) < 2:
        return
    reserve = {ex.id: ex for ex in bench.splits.reserve}
    while True:
        need = plan.get("pending") or _next_look(bench, results)
        if need is None:
            break
        missing = [i for i in plan["ids"][-1] if i not in reserve]
        if missing:
            raise TunebenchError(f"cannot continue look {len(plan['ids'])}: its article '{missing[0]}' is no longer "
                                 "among the data's unused test articles; the data changed since the run started")
        examples = [reserve[i] for i in plan["ids"][-1]]
        for name in need:
            _extend(bench, results, name, examples, rescore)
        plan["taken"].append({"look": len(plan["ids"]), "n_articles": plan["sizes"][len(plan["ids"]) - 1],
                              "records": need})
        plan.pop("pending", None)
        results.save()
    results.save()  # why it stopped
