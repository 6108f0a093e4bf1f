"""results.json -> the report's sections, rendered as report.md (markdown.py) and report.html (html.py).

One description of the document (`sections`) feeds both renderers, so the two never drift apart; every figure in
it is read from (or computed from) the results file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tunebench.report.axes import axis_value, explorer_axes, explorer_points
from tunebench.verdict import peak_rss_mb, scores_described, significant, train_cpu_s


@dataclass
class Para:
    text: str
    """One paragraph; `code` spans in backticks."""
    box: bool = False
    """The decision: shown boxed above everything else."""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Items:
    lines: list[str]
    """A bulleted list."""


@dataclass
class Figure:
    file: str
    """The plot's file name in the run's plots/ folder."""
    caption: str


@dataclass
class Explorer:
    """The interactive Pareto view (HTML): every record on two axes the reader chooses, the front ringed."""
    axes: dict
    """axis key -> label, higher (is better), log."""
    points: list
    """One per record: name, kind, values per axis, ci95 per score axis."""
    x: str
    y: str

    @property
    def text(self) -> str:
        """The paragraph both renderers show above the view (markdown shows only this)."""
        return ("report.html shows every record on any two of these axes, the Pareto front (the records no other "
                "beats on both, each axis read in its better direction) ringed; the address keeps the choice, e.g. "
                f"`report.html#x={self.x}&y={self.y}`. Axes: "
                + "; ".join(f"{a['label']} (`{key}`)" for key, a in self.axes.items()) + ".")


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    side_by_side: bool = False
    """HTML puts the blocks next to each other (the lead picture beside its verdict)."""
    collapsed: bool = False
    """HTML shows only the title until clicked (the full numbers behind a picture)."""


HEADER = ["method", "status", "articles", "<scores>", "gen tokens (at max)", "trainable params", "checkpoint MB",
          "prompt positions added", "train s", "train tok/s", "generate s", "peak RSS MB", "RSS mean / p99 MB",
          "best epoch"]
"""The comparison table's columns; `<scores>` stands for one column per score of the run's metrics."""


def label(data: dict, key: str) -> str:
    """A score's short label ("R-1"), from the run's description of its scores."""
    return scores_described(data).get(key, {}).get("label", key)


def score_text(data: dict, key: str, value: float, signed: bool = False) -> str:
    """A score (or a difference of scores) with the decimals its metric asks for."""
    digits = scores_described(data).get(key, {}).get("digits", 1)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def score_cell(data: dict, scores: dict, key: str) -> str:
    """mean [95% interval] of one score, or blank where the record has no such score."""
    if key not in scores:
        return ""
    low, high = scores[key]["ci95"]
    return f"{score_text(data, key, scores[key]['mean'])} [{score_text(data, key, low)}, {score_text(data, key, high)}]"


def judged(data: dict) -> list[str]:
    """The score keys that say how good a summary is (the comparison table's); descriptive ones have their own."""
    return [k for k, d in scores_described(data).items() if not d.get("descriptive")]


def descriptive(data: dict) -> list[str]:
    return [k for k, d in scores_described(data).items() if d.get("descriptive")]


def header(data: dict) -> list[str]:
    """HEADER with one column per (non-descriptive) score."""
    i = HEADER.index("<scores>")
    return HEADER[:i] + [label(data, k) for k in judged(data)] + HEADER[i + 1:]


def _num(value, fmt: str = "{:,}") -> str:
    return "" if value is None else fmt.format(value)


def _checkpoint_mb(artifacts: dict) -> str:
    """What serving the method needs on disk beside the base model: its PEFT adapter, else its saved weights."""
    size = artifacts.get("peft_adapter_bytes") or artifacts.get("weights_bytes")
    return "" if not size else f"{size / 2**20:,.2f}"


def _rss_spread(phase: dict) -> str:
    """Mean and 99th percentile of the RSS sampled during training (generation for a baseline), as PEFT reports."""
    if phase.get("rss_mean_mb") is None:
        return ""
    return f"{phase['rss_mean_mb']:,.0f} / {phase['rss_p99_mb']:,.0f}"


def table_rows(data: dict) -> list[list[str]]:
    """One row per record: the cells of the comparison table, formatted from the results file."""
    rows = []
    for rec in data["records"]:
        if rec["status"] != "SUCCESS":
            rows.append([rec["name"], rec["status"]] + [""] * (len(header(data)) - 2))
            continue
        ev, params = rec["eval"], rec.get("params") or {}
        train, phases = rec.get("train") or {}, rec.get("phases", {})
        peak = peak_rss_mb(rec)
        tokens = ev.get("mean_new_tokens")
        gen = "" if tokens is None else f"{tokens:.1f} ({100 * ev['share_hit_max_new_tokens']:.0f}%)"
        rows.append([rec["name"], rec["status"], str(len(ev["per_article"]))]
                    + [score_cell(data, ev["scores"], k) for k in judged(data)] + [
            gen,
            _num(params.get("trainable")),
            _checkpoint_mb(rec.get("artifacts") or {}),
            _num(params.get("positions_added") or None),
            _num(train.get("train_time_s"), "{:.0f}"),
            _num(train.get("train_tokens_per_s"), "{:.0f}"),
            _num(phases.get("generation", {}).get("wall_s"), "{:.0f}"),
            _num(peak, "{:.0f}"),
            _rss_spread(phases.get("train") or phases.get("generation") or {}),
            _num(train.get("best_epoch")),
        ])
    return rows


def table(data: dict) -> Table:
    """The table of every record, without the columns no record has a value in (e.g. a score no record has)."""
    rows, names = table_rows(data), header(data)
    keep = [i for i, _ in enumerate(names) if i < 2 or any(row[i] for row in rows)]
    return Table([names[i] for i in keep], [[row[i] for i in keep] for row in rows])


def seed_summary(data: dict) -> list[Section]:
    """Mean +- std across seeds for every method run with more than one seed (in merged runs, per run: records
    of two runs are never pooled)."""
    by_method: dict[str, list[dict]] = {}
    for rec in data["records"]:
        if rec["status"] == "SUCCESS" and rec["kind"] == "method":
            by_method.setdefault(rec["name"].split("@", 1)[0], []).append(rec)
    rows, keys = [], list(scores_described(data))
    for method, recs in by_method.items():
        if len(recs) < 2:
            continue
        cells = []
        for key in keys:
            values = np.array([r["eval"]["scores"][key]["mean"] for r in recs if key in r["eval"]["scores"]])
            cells.append(f"{score_text(data, key, values.mean())} ± {score_text(data, key, values.std(ddof=1))}"
                         if len(values) > 1 else "")
        seeds = ", ".join(str(r.get("seed")) for r in recs)
        rows.append([method, f"{len(recs)} ({seeds})", *cells])
    if not rows:
        return []
    return [Section("Across seeds", [Para("Mean ± standard deviation of the per-seed means above."),
                                     Table(["method", "seeds", *(label(data, k) for k in keys)], rows)])]


def _difference_words(data: dict, test: dict) -> str:
    a, b, key, low, high = test["a"], test["b"], test["metric"], *test["ci95"]
    name = label(data, key)

    def num(x: float, signed: bool = False) -> str:
        return score_text(data, key, x, signed)
    if significant(test) and scores_described(data).get(key, {}).get("descriptive"):
        higher, lower = (a, b) if test["mean"] > 0 else (b, a)
        return (f"{higher} higher than {lower} on {name} by {num(abs(test['mean']))} "
                f"[{num(min(abs(low), abs(high)))}, {num(max(abs(low), abs(high)))}], p = {test['p_value']:.3g}")
    if significant(test):
        better_a = (test["mean"] > 0) != bool(test.get("lower_is_better"))
        winner, loser = (a, b) if better_a else (b, a)
        return (f"{winner} better than {loser} on {name} by {num(abs(test['mean']))} "
                f"[{num(min(abs(low), abs(high)))}, {num(max(abs(low), abs(high)))}], p = {test['p_value']:.3g}")
    return f"no significant difference on {name} ({num(test['mean'], True)} [{num(low, True)}, " \
           f"{num(high, True)}], p = {test['p_value']:.3g})"


def comparisons(data: dict) -> list[str]:
    """The stored paired tests, one line per pair of records, in words."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for test in data.get("comparisons", []):
        pairs.setdefault((test["a"], test["b"]), []).append(_difference_words(data, test))
    return [f"{a} vs {b}: " + "; ".join(parts) + "." for (a, b), parts in pairs.items()]


def _diff(data: dict, test: dict | None) -> str:
    """A deciding test in words: the difference (oriented: + favours the first) and its p-value."""
    if not test:
        return ""
    key = data["verdict"]["decide_on"]
    return f"{score_text(data, key, test['mean'], True)}, p = {test['p_value']:.3g} on {test['n_articles']} articles"


def _last_test(data: dict, a: str, b: str) -> dict | None:
    """The paired test of a - b that decided it (where the verdict's corrected test crossed its boundary), else the
    unadjusted comparison on the deciding metric, or None."""
    for h in data["verdict"].get("hypotheses", []):
        for t in h["tests"]:
            if {t["a"], t["b"]} == {a, b} and t.get("crossed"):
                c = t["crossed"]
                return c if t["a"] == a else {**c, "mean": -c["mean"]}
    for t in data.get("comparisons", []):
        if t["metric"] == data["verdict"]["decide_on"] and {t["a"], t["b"]} == {a, b}:
            sign = (1 if t["a"] == a else -1) * (-1 if t.get("lower_is_better") else 1)  # oriented as the verdict's
            return {**t, "mean": sign * t["mean"]}
    return None


def _cost(rec: dict) -> str:
    train = rec["train"]
    return (f"{train_cpu_s(rec):,.0f} CPU s ({train['train_time_s']:.0f} s wall) to train, "
            f"{peak_rss_mb(rec):,.0f} MB peak, {rec['params']['trainable']:,} trained parameters")


def cost_line(data: dict, v: dict) -> str:
    """What deciding the open questions would take, and the setting that gets there."""
    cost = v.get("cost_to_decide")
    if not cost:
        return ""
    metric = label(data, v["decide_on"])
    words = []
    if cost.get("equal"):
        pairs = ", ".join(f"{a} and {b}" for a, b in cost["equal"])
        words.append(f"{pairs} {'score' if len(cost['equal']) > 1 else 'scores'} alike on {metric} (no difference, "
                     "or one too small to separate with fewer than 100,000 test articles): treat them as equal.")
    if cost["articles"] is None:
        return " ".join(words)
    who = ", ".join(cost["records"])
    seconds = int(math.ceil(cost["minutes"] * 60 * 1.5 / 60.0) * 60) or 60
    offered = (data.get("looks") or {}).get("available")
    available = ""
    if offered is not None and cost["articles"] > offered:
        available = (f" (this data has only {offered} articles that are not training or validation pairs: give more "
                     "data, or lower data.max_train)")
    words.append(f"Deciding the rest would take about {cost['articles']:,} test articles for {who} (they have "
                 f"{cost['have']}; about {cost['minutes']:.0f} more minutes of generation on this machine, if the "
                 f"differences seen so far are the true ones){available}: run the comparison again with `--set "
                 f"eval.max_test={cost['articles']} eval.decide_seconds={seconds}`.")
    return " ".join(words)


def advice(data: dict) -> list[str]:
    """'Which method to pick', from the stored verdict; the first sentence is the action."""
    v = data.get("verdict") or {}
    if not v.get("action"):
        return []
    records = {r["name"]: r for r in data["records"]}
    metric, n, base = label(data, v["decide_on"]), v["n_articles"], v.get("best_baseline")
    out_words = "; ".join(f"{m} is below {why.split(' ', 1)[1]}" for m, why in v["out"].items())
    if v["action"] == "pick":
        pick = v["pick"]
        above = f" (best baseline {base}: {_diff(data, _last_test(data, pick, base))})" if base else ""
        looks = v.get("looks_taken", 1)
        lines = [f"Pick {pick}: on {metric} it is significantly above every baseline{above}"
                 + (" and every other trained method" if v["methods"] > 1 else "")
                 + f" (decided after {looks} look{'s' if looks != 1 else ''}, {n} test articles)."]
    elif v["action"] == "none":
        lines = [f"Pick none: no trained method beats {base or 'the baselines'} on {metric} at this budget "
                 f"({n} test articles)."]
        for m in v["contenders"]:
            lines.append(f"{m} is not yet separated from the baselines it has not beaten ({base}: "
                         f"{_diff(data, _last_test(data, m, base))}).")
    else:
        contenders = ", ".join(v["contenders"])
        if set(v["qualified"]) == set(v["contenders"]):
            lines = [f"Cannot tell yet between {contenders}: each beats every baseline on {metric}, but no paired "
                     f"test separates them on {n} test articles."]
        else:
            others = ", ".join(m for m in v["contenders"] if m not in v["qualified"])
            lines = [f"Cannot tell yet: {', '.join(v['qualified'])} beat{'s' if len(v['qualified']) == 1 else ''} "
                     f"every baseline on {metric}, and {others} is neither separated from it nor shown to beat the "
                     f"baselines ({n} test articles)."]
        if v.get("pick"):
            lines.append(f"If you must pick now, take {v['pick']}, the cheapest of those that beat the baselines "
                         f"({_cost(records[v['pick']])}).")
    if out_words:
        lines.append(f"Out: {out_words}.")
    if v["action"] == "pick" and len(v["pareto"]) == 1 and v["pick"] in records:
        lines.append(f"Its cost: {_cost(records[v['pick']])}.")
    line = cost_line(data, v)
    if line:
        lines.append(line)
    return lines


def procedure_line(data: dict) -> str:
    """How the decision was reached: looks, boundary, multiplicity, in one paragraph."""
    v, looks = data.get("verdict") or {}, data.get("looks") or {}
    if not v.get("action"):
        return ""
    b = v["boundary"]
    taken, planned = v["looks_taken"], v["looks_planned"]
    how = (f"Sequential evaluation: {taken} look{'s' if taken != 1 else ''} of {planned} planned "
           f"(at {', '.join(str(x) for x in looks.get('sizes', []))} articles), stopped: "
           f"{looks.get('stopped') or 'running'}; extra scoring took {looks.get('seconds', 0):.0f} s; only the records "
           "an open question involved were scored again. " if planned > 1 else "One look at the test articles. ")
    return (how + f"Decided on {label(data, v['decide_on'])} (the other scores are reported below, not decided on): "
            f"paired sign-flip tests on the articles both records have, {b['spending']}, {b['multiplicity']}: at most "
            f"a {100 * b['alpha']:.0f}% chance of any false separation over all looks and comparisons.")


def signals_line(data: dict) -> list[str]:
    """The other signals: each score of another metric than the deciding one (e.g. the test loss beside ROUGE),
    its means, and whether it orders the records as the deciding score does where both separate them."""
    v = data.get("verdict") or {}
    described = scores_described(data)
    key = v.get("decide_on")
    if not key or key not in described:
        return []
    deciding = {(t["a"], t["b"]): t for t in data.get("comparisons", []) if t["metric"] == key and significant(t)}
    lines = []
    for other, desc in described.items():
        if desc.get("metric") == described[key].get("metric") or desc.get("descriptive"):
            continue
        scored = [r for r in data["records"] if r["status"] == "SUCCESS" and other in r["eval"]["scores"]]
        if len(scored) < 2:
            continue
        tests = [t for t in data.get("comparisons", []) if t["metric"] == other and significant(t)
                 and (t["a"], t["b"]) in deciding]
        same = [t for t in tests if ((t["mean"] > 0) != bool(t.get("lower_is_better"))) ==
                ((deciding[(t["a"], t["b"])]["mean"] > 0) != bool(deciding[(t["a"], t["b"])].get("lower_is_better")))]
        ranked = sorted(scored, key=lambda r: r["eval"]["scores"][other]["mean"], reverse=desc["higher_is_better"])
        means = ", ".join(f"{r['name']} {score_text(data, other, r['eval']['scores'][other]['mean'])}" for r in ranked)
        about = f"; {desc['about']}" if desc.get("about") else ""
        lines.append(f"Other signal, {desc['title']} ({'higher' if desc['higher_is_better'] else 'lower'} is better"
                     f"{about}): {means}. Of the {len(tests)} pairs both it and {label(data, key)} separate (paired, "
                     f"unadjusted p < 0.05), {len(same)} rank the two records the same way"
                     + ("." if len(same) == len(tests) else ": where they disagree, the two measure different "
                        "things."))
    return lines


def provenance_line(data: dict) -> str:
    """Versions, commit and file hashes the run's numbers came from."""
    env, prov = data.get("environment") or {}, data.get("provenance") or {}
    versions = env.get("packages") or {}
    if not versions:
        return ""
    parts = [f"tunebench {versions.get('tunebench')}"
             + (f" (commit {env['git_commit'][:10]})" if env.get("git_commit") else ""),
             *(f"{name} {versions[name]}" for name in ("torch", "transformers", "peft") if versions.get(name)),
             f"Python {env.get('python')}"]
    for what in ("model", "data"):
        item = prov.get(what) or {}
        hashes = item.get("sha256") or {}
        if hashes:
            parts.append(f"{what} " + ", ".join(f"{name} sha256 {digest[:12]}" for name, digest in hashes.items()))
        elif item.get("hub_id"):
            parts.append(f"{what} {item['hub_id']} at revision {item.get('revision') or 'not cached'}")
    return "Provenance: " + "; ".join(parts) + " (full hashes in results.json)."


def derived_line(facts: dict) -> str:
    """The task settings derived from the training summaries (left at `auto`), with what they came from."""
    derived = facts.get("derived") or {}
    if not derived:
        return ""
    return "Derived from the training summaries (settings left at auto): " + "; ".join(
        f"`{key}={item['value']}` ({item['why']})" for key, item in derived.items()) + "."


def _data_line(facts: dict) -> str:
    """Rows read, kept and skipped (by reason) per split of the source, as recorded in the results."""
    parts = []
    for name, split in facts.get("splits", {}).items():
        skipped = ", ".join(f"{n} {reason}" for reason, n in split["rows_skipped"].items()) or "none skipped"
        parts.append(f"{name}: {split['rows_read']} rows read of {split['rows_in_source']}, "
                     f"{split['rows_kept']} kept ({skipped})")
    return "Data rows: " + "; ".join(parts) + "." if parts else ""


def versus_base_lines(data: dict) -> list[str]:
    """For a score read as a change from the base model (e.g. forgetting): each method minus the baseline that has
    it, paired by article, with the 95% paired bootstrap interval and the sign-flip p-value (unadjusted)."""
    lines = []
    for key, desc in scores_described(data).items():
        if not desc.get("versus_base"):
            continue
        with_score = [r for r in data["records"] if r["status"] == "SUCCESS" and key in r["eval"]["scores"]]
        base = next((r["name"] for r in with_score if r["kind"] == "baseline"), None)
        if base is None:
            continue
        parts = []
        for rec in (r for r in with_score if r["kind"] == "method"):
            test = next((t for t in data.get("comparisons", []) if t["metric"] == key and {t["a"], t["b"]} ==
                         {rec["name"], base}), None)
            if test is None:
                continue
            sign = 1 if test["a"] == rec["name"] else -1
            low, high = sorted(sign * x for x in test["ci95"])
            parts.append(f"{rec['name']} {score_text(data, key, sign * test['mean'], True)} "
                         f"[{score_text(data, key, low, True)}, {score_text(data, key, high, True)}], "
                         f"p = {test['p_value']:.3g}")
        if parts:
            lines.append(f"Change from the base model ({base}) in {desc['title']}, method minus base, paired over "
                         f"the test articles ({desc.get('about', '')}): " + "; ".join(parts) + ".")
    return lines


def descriptive_section(data: dict) -> list[Section]:
    """The descriptive scores (e.g. faithfulness signals) per record: a table of their means and intervals, with
    what each can and cannot show."""
    keys = descriptive(data)
    recs = [r for r in data["records"] if r["status"] == "SUCCESS" and any(k in r["eval"]["scores"] for k in keys)]
    if not keys or not recs:
        return []
    described = scores_described(data)
    about = "; ".join(f"{label(data, k)}: {described[k]['title']}" for k in keys)
    return [Section("What the summaries say (descriptive)", [
        Para(f"Signals computed from each summary and its article, per article (mean [95% bootstrap CI]); they "
             f"describe, they do not rank: {about}. They cannot tell whether a paraphrase is true or a name a "
             "synonym; a summary that copies its article adds no numbers, names or word pairs (docs/metrics.md)."),
        Table(["record", *(label(data, k) for k in keys)],
              [[r["name"], *(score_cell(data, r["eval"]["scores"], k) for k in keys)] for r in recs]),
        *(Para(line) for line in versus_base_lines(data))])]


def _published(data: dict) -> list[Section]:
    rows = data.get("published") or []
    if not rows:
        return []
    keys = [k for k in scores_described(data) if any(k in r["scores"] for r in rows)]
    return [Section("Published figures (not measured here)", [
        Para("From the papers below, on the dataset's full test set with other models and settings: context for "
             "the rows above, not a like-for-like comparison."),
        Table(["system", *(label(data, k) for k in keys), "source"],
              [[r["system"], *(f"{r['scores'][k]:.2f}" if k in r["scores"] else "" for k in keys), r["source"]]
               for r in rows])])]


def _notes(data: dict) -> list[Section]:
    notes = []
    for rec in data["records"]:
        if rec["status"] == "FAILED":
            notes.append(f"{rec['name']} FAILED: {rec.get('error')}")
        notes += [f"{rec['name']}: {note}" for note in rec.get("notes", [])]
        ranked = [(name, p) for name, p in rec.get("phases", {}).items() if p.get("ranks")]
        if ranked:
            notes.append(f"{rec['name']}: peak RSS is the largest of {len(ranked[0][1]['ranks'])} processes'; all "
                         "together: " + ", ".join(f"{name} {p['peak_rss_mb_sum']:,.0f} MB" for name, p in ranked)
                         + ".")
        if rec.get("train"):
            t = rec["train"]
            val = "" if t.get("best_val_loss") is None or math.isnan(t["best_val_loss"]) else \
                f", validation loss {t['best_val_loss']:.3f}"
            notes.append(f"{rec['name']}: lr {t['lr']:g}, {t['steps']} steps, best epoch {t['best_epoch']} "
                         f"(step {t['best_step']}{val}); settings {rec.get('settings')}.")
            cache = t.get("frozen_cache") or {}
            if cache:
                how = "reused from an earlier run" if cache.get("reused") else f"computed in {cache['build_s']:.1f} s"
                blocks = f"{cache['frozen_blocks']} frozen lower block{'s' if cache['frozen_blocks'] != 1 else ''}"
                notes.append(f"{rec['name']}: the {blocks} ran once per "
                             f"example, not once per epoch: their output ({cache['bytes'] / 2**20:,.0f} MiB for "
                             f"training, {cache['where']}) was {how}, counted in 'train s', and fed to the "
                             "trained blocks at every step.")
    return [Section("Notes", [Items(notes)])] if notes else []


def phase_rows(data: dict) -> list[Section]:
    """Where the time went: wall seconds per record and phase, from the results file."""
    rows, total = [], data.get("prepare_s") or 0.0
    for rec in data["records"]:
        if rec["status"] != "SUCCESS":
            continue
        phases, train = rec.get("phases", {}), rec.get("train") or {}
        setup, gen = phases.get("setup", {}).get("wall_s", 0.0), phases.get("generation", {}).get("wall_s", 0.0)
        fit, search = phases.get("train", {}).get("wall_s", 0.0), phases.get("search", {}).get("wall_s", 0.0)
        val, more = train.get("val_time_s", 0.0), phases.get("looks", {}).get("wall_s", 0.0)
        serve = phases.get("serving", {}).get("wall_s", 0.0)
        rows.append([rec["name"], *(f"{x:.1f}" for x in (setup, search, fit - val, val, gen, serve, more,
                                                           setup + search + fit + gen + serve + more))])
        total += setup + search + fit + gen + serve + more
    if not rows:
        return []
    head = f"Loading and encoding the data and the model took {data['prepare_s']:.1f} s. " if data.get("prepare_s") \
        else ""
    return [Section("Where the time went", [
        Para(f"{head}Wall seconds per phase ('search': the learning-rate trials; 'train' without the per-epoch "
             "validation; 'generate' includes scoring; 'serving': the fixed decoding job; 'more articles': the "
             f"verdict's later looks); all phases together: {total:.0f} s."),
        Table(["record", "setup", "search", "train", "validation", "generate", "serving", "more articles", "total"],
              rows)])]


def serving_section(data: dict) -> list[Section]:
    """The fixed decoding job of every record (serving.py), read against the base model's (zero-shot)."""
    served = [r for r in data["records"] if r["status"] == "SUCCESS" and r.get("serving")]
    if not served:
        return []
    base = next((r["serving"]["tokens_per_s"] for r in served if r["kind"] == "baseline"
                 and not (r.get("params") or {}).get("positions_added") and r["name"] != "zero-shot-chat"), None)
    rows = []
    for rec in served:
        s = rec["serving"]
        rows.append([rec["name"], str(s["layers_merged"] or ""), f"{s['prompt_tokens_mean']:.0f}"
                     + (f" + {s['positions_added']}" if s.get("positions_added") else ""),
                     f"{s['first_token_s']:.3f}", f"{s['tokens_per_s']:.1f}",
                     f"{s['tokens_per_s'] / base:.2f}" if base else "",
                     _num(s.get("decode_tokens_per_s"), "{:.1f}"), f"{s['added_rss_mb']:,.0f}",
                     _checkpoint_mb(rec.get("artifacts") or {})])
    first = served[0]["serving"]
    return [Section("Serving cost as deployed", [
        Para(f"One fixed decoding job per record: the same first {first['prompts']} test prompts in one batch, "
             f"exactly {first['new_tokens']} greedy tokens each, adapters merged into the weights where the method "
             "allows ('layers merged': they then cost what the base model costs), learned prompts and prefixes "
             "in front of every prompt as they must run ('+ n' positions). The median of "
             f"{first.get('repeats', 1)} timed passes after a warm-up, on a shared machine: read the ratio to the "
             "base model ('x base'), measured the same way in this run, rather than the absolute "
             "figures. 'added MB': RSS the job added over the model already loaded; 'checkpoint MB': what serving "
             "needs on disk beside the base model."),
        Table(["record", "layers merged", "prompt tokens", "first token s", "tokens/s", "x base", "decode tokens/s",
               "added MB", "checkpoint MB"], rows)])]


def contender_costs(data: dict) -> list:
    """The verdict's cost view: every contender (and the pick) on every cost axis the run measured."""
    v = data.get("verdict") or {}
    names = list(dict.fromkeys([*v.get("qualified", []), *v.get("contenders", [])]))
    records = {r["name"]: r for r in data["records"] if r["status"] == "SUCCESS"}
    names = [n for n in names if n in records and records[n].get("train")]
    if not names:
        return []
    axes = {a: d for a, d in explorer_axes(data).items() if not a.startswith("score:")}
    cells = {a: [axis_value(records[n], a, data) for n in names] for a in axes}
    shown = [a for a in axes if any(c is not None for c in cells[a])]
    rows = [[n + (" (beats every baseline)" if n in v.get("qualified", []) else "")]
            + ["" if cells[a][i] is None else axes[a]["fmt"].format(cells[a][i]) for a in shown]
            for i, n in enumerate(names)]
    return [Para("What each contender costs, on every axis measured (the Pareto front above is over the first three: "
                 "training CPU seconds, peak memory, trained parameters; the report.html view lets you choose any "
                 "two axes):"), Table(["contender", *(axes[a]["short"] for a in shown)], rows)]


def explorer(data: dict) -> list[Section]:
    """The Pareto view over any two axes: interactive in report.html, one line in report.md."""
    points = [p for p in explorer_points(data) if len(p["values"]) > 1]
    if len(points) < 2:
        return []
    axes = explorer_axes(data)
    y = next(iter(axes))
    return [Section("Pareto view: any two axes", [Explorer(axes, points, "time", y)])]


def budget_rows(data: dict) -> list[Section]:
    """What was equal for every method, and what each one used of it."""
    trained = [r for r in data["records"] if r["status"] == "SUCCESS" and r.get("train")]
    budgets = {(r["train"].get("budget") or {}).get("kind") for r in trained}
    if not trained or None in budgets:
        return []
    first = trained[0]["train"]["budget"]
    unit = {"epochs": "epochs", "steps": "optimizer steps", "tokens": "training tokens",
            "seconds": "seconds of training"}
    rows = []
    for rec in trained:
        t = rec["train"]
        chosen = " (searched)" if rec.get("search") else ""
        rows.append([rec["name"], f"{t['lr']:.3g}{chosen}", str(t["steps"]),
                     f"{t['steps'] / t['budget']['steps_per_epoch']:.2f}", f"{t['train_tokens']:,}",
                     f"{t['train_time_s']:.0f}"])
    return [Section("Budget", [
        Para(f"Every method had the same {unit.get(first['kind'], first['kind'])}: {first['amount']:,}. "
             "What each used:"),
        Table(["method", "lr", "steps", "epochs", "training tokens", "train s"], rows)])]


def search_rows(data: dict) -> list[Section]:
    """The learning-rate search per method: validation loss of every trial, the chosen rate, the cost."""
    searched = [r for r in data["records"] if r["status"] == "SUCCESS" and r.get("search")]
    if not searched:
        return []
    rows = []
    for rec in searched:
        s = rec["search"]
        tried = ", ".join(f"{t['lr']:.3g}: {t['val_loss']:.3f}" if t["state"] == "COMPLETE" else
                          f"{t['lr']:.3g}: {t['state'].lower()}" for t in s["trials"])
        rows.append([rec["name"], tried, f"{s['best_lr']:.3g}", str(s["trial_steps"]), f"{s['seconds']:.0f}"])
    return [Section("Learning-rate search", [Para(
            "Each trial trained a fresh copy for at most the first 'trial steps' of the budget, with the budget's "
            "schedule, and was scored on validation loss (never the test set); trials that trailed the others at "
            "a check were stopped early (successive halving). The chosen rate then trained the whole budget. "
            "'search s' is not in 'train s'."),
        Table(["method", "learning rate: validation loss", "chosen", "trial steps", "search s"], rows)])]


def evaluation_line(data: dict) -> list[str]:
    """For a folder written by `tunebench evaluate --data`: where the method was trained, where it is scored."""
    origin = data.get("evaluation")
    if not origin:
        return []
    left_out = origin.get("excluded_trained_or_validated")
    return [f"Scored on other data: `{origin['record']}` was trained in `{origin['run']}` on `{origin['trained_on']}` "
            f"({origin['trained_pairs']} pairs) and is scored here on `{origin['scored_on']}`"
            + (f", leaving out the {left_out} pairs that run trained or validated on" if left_out else "")
            + "; nothing was trained for this report."]


FIGURES = {"quality_vs_cost.png": "The deciding metric (95% intervals) against the cost of each trained method; "
                                   "baselines as horizontal lines",
           "quality_vs_serving.png": "The deciding metric against serving cost (checkpoint size, prompt positions "
                                      "added, tokens/s in the fixed serving job) and forgetting",
           "pairwise.png": "Every pair of records on the deciding metric: row minus column; ● separated by the "
                           "verdict's corrected test, ○ by an unadjusted one only",
           "scores.png": "Every score per record with its 95% bootstrap interval",
           "loss_curves.png": "Training loss against training tokens",
           "val_loss.png": "Validation loss per epoch",
           "lr_schedule.png": "Learning rate per optimizer step (log scale)",
           "lr_search.png": "Learning-rate search: validation loss per trial",
           "resources.png": "CPU and memory over each record's run"}
"""Caption of each plot the report shows, in the order shown (the first beside the verdict)."""
LEAD_FIGURE = "quality_vs_cost.png"
PAIRWISE_FIGURE = "pairwise.png"


def precision_line(env: dict) -> str:
    """Why the run trained in its precision, where `auto` chose it (measured on the run's machine)."""
    because = env.get("precision_chosen_because")
    return f"Precision {env['precision']}, chosen by {because}." if because else ""


def sections(data: dict, plots: list[str] | None = None) -> list[Section]:
    """The report as a list of sections; the first is the title with the lead paragraphs. `plots`: the plot files
    drawn (names in plots/), shown where they belong; none while a run is still adding records."""
    cfg, facts, env = data["config"], data["data"], data["environment"]
    plots = plots or []
    ev = cfg["eval"]
    decoding = "greedy" if ev["num_beams"] == 1 else f"beam search ({ev['num_beams']} beams)"
    lead = [Para(f"Model `{cfg['model']['name']}`; data `{facts['source']}` ("
                 + ("" if data.get("evaluation") else f"train {facts['split_sizes']['train']}, validation "
                    f"{facts['split_sizes']['val']}, ")
                 + f"test {facts['split_sizes']['test']} articles, split seed {facts['split_seed']}); "
                 f"{env['device']}, {env['precision']}, {env['torch_threads']} threads"
                 + (f" per process, {env['processes']} processes (torchrun, "
                    + ("the records split over them)" if cfg["train"].get("parallel") == "jobs" else "data parallel)")
                    if env.get("processes", 1) > 1 else "") + ".")]
    lead += [Para(line) for line in [_data_line(facts), derived_line(facts), precision_line(env),
                                     *evaluation_line(data), *merged_line(data), provenance_line(data)] if line]
    pick = advice(data)
    if pick:
        lead.insert(0, Para(pick[0], box=True))
    out = [Section("tunebench comparison", lead)]
    if pick:
        blocks = [Figure(LEAD_FIGURE, FIGURES[LEAD_FIGURE])] if LEAD_FIGURE in plots else []
        words = [Para(" ".join(pick))] + [Para(line) for line in (procedure_line(data), *signals_line(data)) if line]
        # the picture full width, under the words; then what each contender costs
        out.append(Section("Which method to pick", [*words, *blocks, *contender_costs(data)]))
        if PAIRWISE_FIGURE in plots:
            out.append(Section("All pairs at a glance", [Figure(PAIRWISE_FIGURE, FIGURES[PAIRWISE_FIGURE])]))
    out.append(Section("Every record", [
        Para(f"Scores on the test articles ({', '.join(d['title'] for d in scores_described(data).values())}), "
             f"mean [95% bootstrap CI, {ev['bootstrap_resamples']} resamples]. "
             f"Decoding: {decoding}, at most {ev['max_new_tokens']} new tokens, cut at {ev['cut']}. "
             "'gen tokens' is the mean generated length and the share of summaries that hit the limit."),
        table(data)]))
    out += seed_summary(data)
    out += descriptive_section(data)
    lines = comparisons(data)
    if lines:
        out.append(Section("Which differences are significant", collapsed=True, blocks=[
            Para("Every pair, unadjusted (detail, not the decision: the verdict above corrects for the looks and the "
                 "number of comparisons): paired over the test articles both records have, the 95% bootstrap "
                 "interval of the mean difference (first minus second) and the two-sided p-value of a paired "
                 "sign-flip permutation test; 'better' where the interval excludes 0 and p < 0.05. With repeats, "
                 "each method's first seed."),
            Items(lines)]))
    out += serving_section(data)
    out += explorer(data)
    out += budget_rows(data)
    out += search_rows(data)
    out += phase_rows(data)
    out += _published(data)
    rest = [Figure(name, caption) for name, caption in FIGURES.items()
            if name in plots and name not in (LEAD_FIGURE, PAIRWISE_FIGURE)]
    if rest:
        out.append(Section("Plots", rest))
    out += _notes(data)
    return out


def merged_line(data: dict) -> list[str]:
    """For a report merged from several runs: where they differ (allowed with --allow-different)."""
    runs = data.get("merged_from")
    if not runs:
        return []
    differ = data.get("merged_differences") or []
    return [f"Merged from runs {', '.join(f'`{r}`' for r in runs)}; each row is labelled with its run and rows of "
            "different runs are never pooled"
            + (f". The runs differ in: {'; '.join(differ)}; compare their rows with that in mind." if differ
               else " (same model, test articles, decoding and data).")]
