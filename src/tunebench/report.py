"""results.json -> report.md. Every figure in the report is read from (or computed from) the results file."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from tunebench.cache import atomic_write_text
from tunebench.methods import ZERO_SHOT
from tunebench.metrics import ROUGE_KEYS, paired_difference
from tunebench.published import PUBLISHED, dataset_key

LABELS = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L", "rougeLsum": "R-Lsum"}
COMPARED_KEYS = ("rouge1", "rouge2", "rougeLsum")
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


def primary_records(data: dict) -> list[dict]:
    """Baselines and, per method, its first seed's record: the ones compared pairwise."""
    seen, out = set(), []
    for rec in data["records"]:
        key = rec["name"].split("@", 1)[0]  # lora@seed1 -> lora; merged runs keep their run prefix
        if rec["status"] == "SUCCESS" and key not in seen:
            seen.add(key)
            out.append(rec)
    return out


def _difference_words(a: str, b: str, key: str, diff: dict) -> str:
    low, high = diff["ci95"]
    if low > 0 or high < 0:
        winner, loser = (a, b) if diff["mean"] > 0 else (b, a)
        return (f"{winner} > {loser} on {LABELS[key]} by {abs(diff['mean']):.1f} "
                f"[{min(abs(low), abs(high)):.1f}, {max(abs(low), abs(high)):.1f}], p = {diff['p_value']:.3f}")
    return f"no significant difference on {LABELS[key]} ({diff['mean']:+.1f} [{low:+.1f}, {high:+.1f}], " \
           f"p = {diff['p_value']:.3f})"


def comparisons(data: dict) -> list[str]:
    """For every pair of primary records: paired-bootstrap differences on the same articles, in words."""
    resamples = data["config"]["eval"].get("bootstrap_resamples", 1000)
    lines = []
    for first, second in combinations(primary_records(data), 2):
        if [x["id"] for x in first["eval"]["per_article"]] != [x["id"] for x in second["eval"]["per_article"]]:
            continue  # merged runs on different articles: no paired comparison
        parts = []
        for key in COMPARED_KEYS:
            diff = paired_difference([x[key] for x in first["eval"]["per_article"]],
                                     [x[key] for x in second["eval"]["per_article"]], resamples=resamples)
            parts.append(_difference_words(first["name"], second["name"], key, diff))
        lines.append(f"- {first['name']} vs {second['name']}: " + "; ".join(parts) + ".")
    return lines


def peak_rss_mb(rec: dict) -> float | None:
    """The highest RSS over a record's phases (None: no phase measured)."""
    return max((p.get("peak_rss_mb", 0) for p in rec.get("phases", {}).values()), default=None)


def advice(data: dict, key: str = "rouge2") -> list[str]:
    """A short 'which method to pick', from the numbers: best quality, cheapest within its interval, smallest."""
    methods = [r for r in primary_records(data) if r["kind"] == "method" and r.get("train")]
    if not methods:
        return []
    best = max(methods, key=lambda r: r["eval"]["rouge"][key]["mean"])
    low, high = best["eval"]["rouge"][key]["ci95"]
    close = [r for r in methods if r["eval"]["rouge"][key]["mean"] >= low]
    fastest = min(close, key=lambda r: r["train"]["train_time_s"])
    leanest = min(close, key=peak_rss_mb)
    smallest = min(methods, key=lambda r: r["artifacts"]["weights_bytes"])
    label = LABELS[key]
    lines = [f"Best quality: {best['name']} ({label} {best['eval']['rouge'][key]['mean']:.1f}, "
             f"95% CI [{low:.1f}, {high:.1f}])."]
    others = ", ".join(r["name"] for r in close if r is not best)
    lines.append(f"Within that interval: {others or 'no other method'}. Cheapest to train among them: "
                 f"{fastest['name']} ({fastest['train']['train_time_s']:.0f} s); least peak memory: "
                 f"{leanest['name']} ({peak_rss_mb(leanest):.0f} MB).")
    lines.append(f"Smallest trained artefact: {smallest['name']} "
                 f"({smallest['artifacts']['weights_bytes'] / 1024:,.0f} KiB, "
                 f"{smallest['params']['trainable']:,} trainable parameters).")
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
        fit = phases.get("train", {}).get("wall_s", 0.0)
        val = train.get("val_time_s", 0.0)
        rows.append(f"| {rec['name']} | {setup:.1f} | {fit - val:.1f} | {val:.1f} | {gen:.1f} | "
                    f"{setup + fit + gen:.1f} |")
        total += setup + fit + gen
    if not rows:
        return []
    head = f"Loading and encoding the data and the model took {data['prepare_s']:.1f} s. " if data.get("prepare_s") \
        else ""
    return ["", "## Where the time went", "",
            f"{head}Wall seconds per phase ('train' without the per-epoch validation; 'generate' includes scoring); "
            f"all phases together: {total:.0f} s.", "",
            "| record | setup | train | validation | generate | total |", "|---|---|---|---|---|---|", *rows]


def below_zero_shot(data: dict, key: str = "rouge2") -> list[str]:
    """Methods whose paired test cannot put them above the zero-shot baseline, named with their learning rate."""
    records = primary_records(data)
    zero = next((r for r in records if r["name"] == ZERO_SHOT.name), None)
    if zero is None:
        return []
    resamples = data["config"]["eval"].get("bootstrap_resamples", 1000)
    lines = []
    for rec in records:
        if rec["kind"] != "method" or not rec.get("train"):
            continue
        diff = paired_difference([x[key] for x in rec["eval"]["per_article"]],
                                 [x[key] for x in zero["eval"]["per_article"]], resamples=resamples)
        if diff["ci95"][0] <= 0:
            low, high = diff["ci95"]
            lines.append(f"{rec['name']} (lr {rec['train']['lr']:g}) did not beat zero-shot on {LABELS[key]} at this "
                         f"budget ({diff['mean']:+.1f} [{low:+.1f}, {high:+.1f}], p = {diff['p_value']:.3f}).")
    return lines


def render_markdown(data: dict) -> str:
    cfg, facts, env = data["config"], data["data"], data["environment"]
    ev = cfg["eval"]
    decoding = "greedy" if ev["num_beams"] == 1 else f"beam search ({ev['num_beams']} beams)"
    out = ["# tunebench comparison", "",
           f"Model `{cfg['model']['name']}`; data `{facts['source']}` "
           f"(train {facts['split_sizes']['train']}, validation {facts['split_sizes']['val']}, "
           f"test {facts['split_sizes']['test']} articles, split seed {facts['split_seed']}); "
           f"{env['device']}, {env['precision']}, {env['torch_threads']} threads.", "",
           _data_line(facts), "",
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
                "Paired bootstrap over the same test articles (95% interval of the mean difference, first minus "
                "second; two-sided p-value); with repeats, each method's first seed.", "", *lines]
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
