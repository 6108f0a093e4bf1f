"""results.json -> report.md. Every figure in the report is read from the results file."""

from __future__ import annotations

from pathlib import Path

from tunebench.cache import atomic_write_text
from tunebench.metrics import ROUGE_KEYS, paired_difference
from tunebench.published import PUBLISHED, dataset_key

LABELS = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L", "rougeLsum": "R-Lsum"}


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
            rows.append([rec["name"], rec["status"]] + [""] * 9)
            continue
        rouge, params = rec["eval"]["rouge"], rec.get("params") or {}
        train, phases = rec.get("train") or {}, rec.get("phases", {})
        peak = max((p.get("peak_rss_mb", 0) for p in phases.values()), default=None)
        rows.append([rec["name"], rec["status"]] + [_rouge_cell(rouge, k) for k in ROUGE_KEYS] + [
            _num(params.get("trainable")),
            _num(train.get("train_time_s"), "{:.0f}"),
            _num(train.get("train_tokens_per_s"), "{:.0f}"),
            _num(phases.get("generation", {}).get("wall_s"), "{:.0f}"),
            _num(peak, "{:.0f}"),
            _num(train.get("best_epoch")),
        ])
    return rows


HEADER = ["method", "status", "R-1", "R-2", "R-L", "R-Lsum", "trainable params", "train s", "train tok/s",
          "generate s", "peak RSS MB", "best epoch"]


def comparisons(data: dict, key: str = "rouge2") -> list[str]:
    """Sentences comparing each trained method with the zero-shot baseline on the same articles."""
    recs = {r["name"]: r for r in data["records"] if r["status"] == "SUCCESS"}
    if "zero-shot" not in recs:
        return []
    base = [a[key] for a in recs["zero-shot"]["eval"]["per_article"]]
    lines = []
    for name, rec in recs.items():
        if rec["kind"] != "method":
            continue
        diff = paired_difference([a[key] for a in rec["eval"]["per_article"]], base)
        verdict = "better than" if diff["ci95"][0] > 0 else "worse than" if diff["ci95"][1] < 0 else \
            "not distinguishable from"
        lines.append(f"- {name} is {verdict} zero-shot on {LABELS[key]}: {diff['mean']:+.1f} "
                     f"[{diff['ci95'][0]:+.1f}, {diff['ci95'][1]:+.1f}], paired bootstrap p = {diff['p_value']:.3f}")
    return lines


def _data_line(facts: dict) -> str:
    """Rows read, kept and skipped (by reason) per split of the source, as recorded in the results."""
    parts = []
    for name, split in facts.get("splits", {}).items():
        skipped = ", ".join(f"{n} {reason}" for reason, n in split["rows_skipped"].items()) or "none skipped"
        parts.append(f"{name}: {split['rows_read']} rows read of {split['rows_in_source']}, "
                     f"{split['rows_kept']} kept ({skipped})")
    return "Data rows: " + "; ".join(parts) + "." if parts else ""


def render_markdown(data: dict) -> str:
    cfg, facts, env = data["config"], data["data"], data["environment"]
    out = ["# tunebench comparison", "",
           f"Model `{cfg['model']['name']}`; data `{facts['source']}` "
           f"(train {facts['split_sizes']['train']}, validation {facts['split_sizes']['val']}, "
           f"test {facts['split_sizes']['test']} articles, split seed {facts['split_seed']}); "
           f"{env['device']}, {env['precision']}, {env['torch_threads']} threads.", "",
           _data_line(facts), "",
           "ROUGE F1 x 100 on the test articles, mean [95% bootstrap CI].", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(row) + " |" for row in table_rows(data)]
    lines = comparisons(data)
    if lines:
        out += ["", "## Against the zero-shot baseline", ""] + lines
    published = PUBLISHED.get(dataset_key(facts["source"]) or "", [])
    if published:
        out += ["", "## Published figures (not measured here)", "",
                "From the papers below, on the dataset's full test set with other models and settings: context "
                "for the rows above, not a like-for-like comparison.", "",
                "| system | R-1 | R-2 | R-Lsum | source |", "|---|---|---|---|---|"]
        out += [f"| {name} | {r1:.2f} | {r2:.2f} | {rl:.2f} | {src} |" for name, r1, r2, rl, src in published]
    notes = []
    for rec in data["records"]:
        if rec["status"] == "FAILED":
            notes.append(f"- {rec['name']} FAILED: {rec.get('error')}")
        elif rec.get("params", {}) and rec["params"].get("head_params_added"):
            notes.append(f"- {rec['name']}: the LM head was untied from the input embedding (which stays frozen); "
                         f"the trained head adds {rec['params']['head_params_added']:,} parameters to the model.")
        if rec.get("train"):
            t = rec["train"]
            notes.append(f"- {rec['name']}: lr {t['lr']:g}, {t['steps']} steps, best epoch {t['best_epoch']} "
                         f"(step {t['best_step']}, validation loss {t['best_val_loss']:.3f}); "
                         f"settings {rec.get('settings')}.")
    if notes:
        out += ["", "## Notes", ""] + notes
    return "\n".join(out) + "\n"


def write_report(data: dict, path: Path) -> None:
    atomic_write_text(path, render_markdown(data))
