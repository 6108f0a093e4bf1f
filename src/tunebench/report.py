"""results.json -> report.md. Every figure in the report is read from (or computed from) the results file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tunebench.cache import atomic_write_text
from tunebench.methods import ZERO_SHOT
from tunebench.metrics import ROUGE_KEYS
from tunebench.published import PUBLISHED, dataset_key
from tunebench.verdict import peak_rss_mb, significant

LABELS = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L", "rougeLsum": "R-Lsum"}
HEADER = ["method", "status", "R-1", "R-2", "R-L", "R-Lsum", "gen tokens (at max)", "test ppl", "trainable params",
          "train s", "train tok/s", "generate s", "peak RSS MB", "best epoch"]


def _rouge_cell(rouge: dict, key: str) -> str:
    low, high = rouge[key]["ci95"]
    return f"{rouge[key]['mean']:.1f} [{low:.1f}, {high:.1f}]"


def _num(value, fmt: str = "{:,}") -> str:
    return "" if value is None else fmt.format(value)


def table_rows(data: dict) -> list[list[str]]:
    """One row per record: the cells of the comparison table, formatted from the results file."""
    rows = []
    for rec in data["records"]:
        if rec["status"] != "SUCCESS":
            rows.append([rec["name"], rec["status"]] + [""] * (len(HEADER) - 2))
            continue
        ev, params = rec["eval"], rec.get("params") or {}
        train, phases = rec.get("train") or {}, rec.get("phases", {})
        peak = peak_rss_mb(rec)
        tokens = ev.get("mean_new_tokens")
        gen = "" if tokens is None else f"{tokens:.1f} ({100 * ev['share_hit_max_new_tokens']:.0f}%)"
        rows.append([rec["name"], rec["status"]] + [_rouge_cell(ev["rouge"], k) for k in ROUGE_KEYS] + [
            gen,
            _num(ev.get("test_perplexity"), "{:.2f}"),
            _num(params.get("trainable")),
            _num(train.get("train_time_s"), "{:.0f}"),
            _num(train.get("train_tokens_per_s"), "{:.0f}"),
            _num(phases.get("generation", {}).get("wall_s"), "{:.0f}"),
            _num(peak, "{:.0f}"),
            _num(train.get("best_epoch")),
        ])
    return rows


def seed_summary(data: dict) -> list[str]:
    """Mean +- std across seeds for every method run with more than one seed."""
    by_method: dict[str, list[dict]] = {}
    for rec in data["records"]:
        if rec["status"] == "SUCCESS" and rec["kind"] == "method":
            by_method.setdefault(rec.get("method", rec["name"]), []).append(rec)
    lines = []
    for method, recs in by_method.items():
        if len(recs) < 2:
            continue
        cells = []
        for key in ROUGE_KEYS:
            values = np.array([r["eval"]["rouge"][key]["mean"] for r in recs])
            cells.append(f"{values.mean():.1f} ± {values.std(ddof=1):.1f}")
        seeds = ", ".join(str(r.get("seed")) for r in recs)
        lines.append(f"| {method} | {len(recs)} ({seeds}) | " + " | ".join(cells) + " |")
    if not lines:
        return []
    return ["", "## Across seeds", "", "Mean ± standard deviation of the per-seed means above.", "",
            "| method | seeds | R-1 | R-2 | R-L | R-Lsum |", "|---|---|---|---|---|---|", *lines]


def _difference_words(test: dict) -> str:
    a, b, key, low, high = test["a"], test["b"], test["metric"], *test["ci95"]
    if significant(test):
        winner, loser = (a, b) if test["mean"] > 0 else (b, a)
        return (f"{winner} > {loser} on {LABELS[key]} by {abs(test['mean']):.1f} "
                f"[{min(abs(low), abs(high)):.1f}, {max(abs(low), abs(high)):.1f}], p = {test['p_value']:.3f}")
    return f"no significant difference on {LABELS[key]} ({test['mean']:+.1f} [{low:+.1f}, {high:+.1f}], " \
           f"p = {test['p_value']:.3f})"


def comparisons(data: dict) -> list[str]:
    """The stored paired tests, one line per pair of records, in words."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for test in data.get("comparisons", []):
        pairs.setdefault((test["a"], test["b"]), []).append(_difference_words(test))
    return [f"- {a} vs {b}: " + "; ".join(parts) + "." for (a, b), parts in pairs.items()]


def advice(data: dict) -> list[str]:
    """'Which method to pick', drawn from the stored verdict: a winner only where the tests separate it."""
    v = data.get("verdict") or {}
    if not v.get("best"):
        return []
    records = {r["name"]: r for r in data["records"]}
    metrics = ", ".join(LABELS[k] for k in v["metrics"])
    if v.get("methods", 2) == 1:
        lines = [f"Only one method was trained ({v['best'][0]}): compare it with the baselines below."]
    elif v["tied"]:
        lines = [f"Tied for best quality: {', '.join(v['best'])} (by the paired tests on {metrics}, each of them "
                 "is beaten by no other method, or cannot be told apart from one that is)."]
    else:
        lines = [f"Best quality: {v['best'][0]} (significantly better than every other method on at least one of "
                 f"{metrics}, and worse on none)."]
    if len(v["best"]) > 1:
        cheapest = []
        for name in v["pareto"]:
            rec = records[name]
            cheapest.append(f"{name} ({rec['train']['train_time_s']:.0f} s, {peak_rss_mb(rec):.0f} MB, "
                            f"{rec['params']['trainable']:,} trained parameters)")
        lines.append("Among them, none is both faster, leaner and smaller than these (Pareto front on training "
                     f"time, peak memory, trained parameters): {'; '.join(cheapest)}.")
    mde = v.get("minimum_detectable_rouge2")
    if mde is not None:
        lines.append(f"With {v['n_articles']} test articles the paired test detects a true R-2 difference of about "
                     f"{mde:.1f} points {100 * v['power']:.0f}% of the time; smaller differences may show as ties "
                     "(raise data.n_test to see them).")
    return lines


def _data_line(facts: dict) -> str:
    """Rows read, kept and skipped (by reason) per split of the source, as recorded in the results."""
    parts = []
    for name, split in facts.get("splits", {}).items():
        skipped = ", ".join(f"{n} {reason}" for reason, n in split["rows_skipped"].items()) or "none skipped"
        parts.append(f"{name}: {split['rows_read']} rows read of {split['rows_in_source']}, "
                     f"{split['rows_kept']} kept ({skipped})")
    return "Data rows: " + "; ".join(parts) + "." if parts else ""


def _published(facts: dict) -> list[str]:
    rows = PUBLISHED.get(dataset_key(facts["source"]) or "", [])
    if not rows:
        return []
    return ["", "## Published figures (not measured here)", "",
            "From the papers below, on the dataset's full test set with other models and settings: context "
            "for the rows above, not a like-for-like comparison.", "",
            "| system | R-1 | R-2 | R-Lsum | source |", "|---|---|---|---|---|",
            *[f"| {name} | {r1:.2f} | {r2:.2f} | {rl:.2f} | {src} |" for name, r1, r2, rl, src in rows]]


def _notes(data: dict) -> list[str]:
    notes = []
    for rec in data["records"]:
        if rec["status"] == "FAILED":
            notes.append(f"- {rec['name']} FAILED: {rec.get('error')}")
        notes += [f"- {rec['name']}: {note}" for note in rec.get("notes", [])]
        ranked = [(name, p) for name, p in rec.get("phases", {}).items() if p.get("ranks")]
        if ranked:
            notes.append(f"- {rec['name']}: peak RSS is the largest of {len(ranked[0][1]['ranks'])} processes'; all "
                         "together: " + ", ".join(f"{name} {p['peak_rss_mb_sum']:,.0f} MB" for name, p in ranked)
                         + ".")
        if rec.get("train"):
            t = rec["train"]
            notes.append(f"- {rec['name']}: lr {t['lr']:g}, {t['steps']} steps, best epoch {t['best_epoch']} "
                         f"(step {t['best_step']}, validation loss {t['best_val_loss']:.3f}); "
                         f"settings {rec.get('settings')}.")
            cache = t.get("frozen_cache") or {}
            if cache:
                how = "reused from an earlier run" if cache.get("reused") else f"computed in {cache['build_s']:.1f} s"
                blocks = f"{cache['frozen_blocks']} frozen lower block{'s' if cache['frozen_blocks'] != 1 else ''}"
                notes.append(f"- {rec['name']}: the {blocks} ran once per "
                             f"example, not once per epoch: their output ({cache['bytes'] / 2**20:,.0f} MiB for "
                             f"training, {cache['where']}) was {how}, counted in 'train s', and fed to the "
                             "trained blocks at every step.")
    return ["", "## Notes", "", *notes] if notes else []


def phase_rows(data: dict) -> list[str]:
    """Where the time went: wall seconds per record and phase, from the results file."""
    rows, total = [], data.get("prepare_s") or 0.0
    for rec in data["records"]:
        if rec["status"] != "SUCCESS":
            continue
        phases, train = rec.get("phases", {}), rec.get("train") or {}
        setup, gen = phases.get("setup", {}).get("wall_s", 0.0), phases.get("generation", {}).get("wall_s", 0.0)
        fit, search = phases.get("train", {}).get("wall_s", 0.0), phases.get("search", {}).get("wall_s", 0.0)
        val = train.get("val_time_s", 0.0)
        rows.append(f"| {rec['name']} | {setup:.1f} | {search:.1f} | {fit - val:.1f} | {val:.1f} | {gen:.1f} | "
                    f"{setup + search + fit + gen:.1f} |")
        total += setup + search + fit + gen
    if not rows:
        return []
    head = f"Loading and encoding the data and the model took {data['prepare_s']:.1f} s. " if data.get("prepare_s") \
        else ""
    return ["", "## Where the time went", "",
            f"{head}Wall seconds per phase ('search': the learning-rate trials; 'train' without the per-epoch "
            f"validation; 'generate' includes scoring); all phases together: {total:.0f} s.", "",
            "| record | setup | search | train | validation | generate | total |", "|---|---|---|---|---|---|---|",
            *rows]


def budget_rows(data: dict) -> list[str]:
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
        rows.append(f"| {rec['name']} | {t['lr']:.3g}{chosen} | {t['steps']} | "
                    f"{t['steps'] / t['budget']['steps_per_epoch']:.2f} | {t['train_tokens']:,} | "
                    f"{t['train_time_s']:.0f} |")
    return ["", "## Budget", "", f"Every method had the same {unit.get(first['kind'], first['kind'])}: "
            f"{first['amount']:,}. What each used:", "",
            "| method | lr | steps | epochs | training tokens | train s |", "|---|---|---|---|---|---|", *rows]


def search_rows(data: dict) -> list[str]:
    """The learning-rate search per method: validation loss of every trial, the chosen rate, the cost."""
    searched = [r for r in data["records"] if r["status"] == "SUCCESS" and r.get("search")]
    if not searched:
        return []
    rows = []
    for rec in searched:
        s = rec["search"]
        tried = ", ".join(f"{t['lr']:.3g}: {t['val_loss']:.3f}" if t["state"] == "COMPLETE" else
                          f"{t['lr']:.3g}: {t['state'].lower()}" for t in s["trials"])
        rows.append(f"| {rec['name']} | {tried} | {s['best_lr']:.3g} | {s['trial_steps']} | {s['seconds']:.0f} |")
    return ["", "## Learning-rate search", "",
            "Each trial trained a fresh copy for at most the first 'trial steps' of the budget, with the budget's "
            "schedule, and was scored on validation loss (never the test set); trials that trailed the others at "
            "a check were stopped early (successive halving). The chosen rate then trained the whole budget. "
            "'search s' is not in 'train s'.", "",
            "| method | learning rate: validation loss | chosen | trial steps | search s |", "|---|---|---|---|---|",
            *rows]


def below_zero_shot(data: dict, key: str = "rouge2") -> list[str]:
    """Methods the stored paired tests cannot put above the zero-shot baseline, named with their learning rate."""
    trained = {r["name"]: r for r in data["records"] if r.get("kind") == "method" and r.get("train")}
    lines = []
    for test in data.get("comparisons", []):
        if test["metric"] != key or ZERO_SHOT.name not in (test["a"], test["b"]):
            continue
        method = test["b"] if test["a"] == ZERO_SHOT.name else test["a"]
        sign = 1 if test["a"] == method else -1
        low, high = sorted(sign * x for x in test["ci95"])
        if method in trained and low <= 0:
            lines.append(f"{method} (lr {trained[method]['train']['lr']:g}) did not beat zero-shot on {LABELS[key]} "
                         f"at this budget ({sign * test['mean']:+.1f} [{low:+.1f}, {high:+.1f}], "
                         f"p = {test['p_value']:.3f}).")
    return lines


def evaluation_line(data: dict) -> list[str]:
    """For a folder written by `tunebench evaluate --data`: where the method was trained, where it is scored."""
    origin = data.get("evaluation")
    if not origin:
        return []
    left_out = origin.get("excluded_trained_or_validated")
    return [f"Scored on other data: `{origin['record']}` was trained in `{origin['run']}` on `{origin['trained_on']}` "
            f"({origin['trained_pairs']} pairs) and is scored here on `{origin['scored_on']}`"
            + (f", leaving out the {left_out} pairs that run trained or validated on" if left_out else "")
            + "; nothing was trained for this report.", ""]


def render_markdown(data: dict) -> str:
    cfg, facts, env = data["config"], data["data"], data["environment"]
    ev = cfg["eval"]
    decoding = "greedy" if ev["num_beams"] == 1 else f"beam search ({ev['num_beams']} beams)"
    out = ["# tunebench comparison", "",
           f"Model `{cfg['model']['name']}`; data `{facts['source']}` ("
           + ("" if data.get("evaluation") else f"train {facts['split_sizes']['train']}, validation "
              f"{facts['split_sizes']['val']}, ")
           + f"test {facts['split_sizes']['test']} articles, split seed {facts['split_seed']}); "
           f"{env['device']}, {env['precision']}, {env['torch_threads']} threads"
           + (f" per process, {env['processes']} processes (torchrun, data parallel)" if env.get("processes", 1) > 1
              else "") + ".", "",
           _data_line(facts), "", *evaluation_line(data),
           f"ROUGE F1 x 100 on the test articles, mean [95% bootstrap CI, {ev['bootstrap_resamples']} resamples]. "
           f"Decoding: {decoding}, at most {ev['max_new_tokens']} new tokens, cut at {ev['cut']}. "
           "'gen tokens' is the mean generated length and the share of summaries that hit the limit.", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(row) + " |" for row in table_rows(data)]
    out += seed_summary(data)
    pick = advice(data)
    if pick:
        out += ["", "## Which method to pick", "", " ".join(pick + below_zero_shot(data))]
    lines = comparisons(data)
    if lines:
        out += ["", "## Which differences are significant", "",
                "Paired over the same test articles: 95% bootstrap interval of the mean difference (first minus "
                "second) and the two-sided p-value of a paired sign-flip permutation test; a difference counts "
                "as significant when the interval excludes 0 and p < 0.05. With repeats, each method's first seed.",
                "", *lines]
    out += budget_rows(data)
    out += search_rows(data)
    out += phase_rows(data)
    out += _published(facts)
    out += _notes(data)
    return "\n".join(out) + "\n"


def console_summary(data: dict) -> str:
    """The compact table printed at the end of `compare`: ROUGE means and the main costs."""
    lines = [f"{'method':24s} {'status':8s} {'R-1':>6s} {'R-2':>6s} {'R-L':>6s} {'trainable':>12s} {'train s':>8s} "
             f"{'peak MB':>8s}"]
    for rec in data["records"]:
        if rec["status"] != "SUCCESS":
            lines.append(f"{rec['name']:24s} {rec['status']:8s} {rec.get('error', '')[:60]}")
            continue
        rouge, train = rec["eval"]["rouge"], rec.get("train") or {}
        trainable = (rec.get("params") or {}).get("trainable")
        lines.append(f"{rec['name']:24s} {rec['status']:8s} " + " ".join(
            f"{rouge[k]['mean']:6.1f}" for k in ("rouge1", "rouge2", "rougeL")) +
            f" {'' if trainable is None else f'{trainable:,}':>12s} {train.get('train_time_s', 0):8.0f} "
            f"{peak_rss_mb(rec):8.0f}")
    pick = advice(data)
    return "\n".join(lines + ([""] + pick if pick else []))


def write_report(data: dict, path: Path) -> None:
    atomic_write_text(path, render_markdown(data))
