"""The report's sections (sections.py) as report.md, and the compact table `compare` prints at its end."""

from __future__ import annotations

from pathlib import Path

from tunebench.files import atomic_write_text
from tunebench.report.sections import Explorer, Figure, Items, Para, Table, advice, judged, label, score_text, sections
from tunebench.verdict import peak_rss_mb


def render_markdown(data: dict, plots: list[str] | None = None) -> str:
    out = []
    for i, section in enumerate(sections(data, plots)):
        out += [f"{'#' if i == 0 else '##'} {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Para):
                out += [f"> **{block.text}**" if block.box else block.text, ""]
            elif isinstance(block, Table):
                out += ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header),
                        *("| " + " | ".join(row) + " |" for row in block.rows), ""]
            elif isinstance(block, Items):
                out += [*(f"- {line}" for line in block.lines), ""]
            elif isinstance(block, Figure):
                out += [f"![{block.caption}](plots/{block.file})", ""]
            elif isinstance(block, Explorer):
                out += [block.text, ""]
    return "\n".join(out).rstrip("\n") + "\n"


CONSOLE_SCORES = 4
"""Scores shown in the console table (the deciding one first); report.md has them all."""


def console_summary(data: dict) -> str:
    """The compact table printed at the end of `compare`: score means and the main costs."""
    decide_on = (data.get("verdict") or {}).get("decide_on")
    keys = sorted(judged(data), key=lambda k: k != decide_on)[:CONSOLE_SCORES]
    width = max([7, *(len(label(data, k)) for k in keys)])
    lines = [f"{'method':24s} {'status':8s} " + " ".join(f"{label(data, k):>{width}s}" for k in keys)
             + f" {'trainable':>12s} {'train s':>8s} {'peak MB':>8s}"]
    for rec in data["records"]:
        if rec["status"] != "SUCCESS":
            lines.append(f"{rec['name']:24s} {rec['status']:8s} {rec.get('error', '')[:60]}")
            continue
        scores, train = rec["eval"]["scores"], rec.get("train") or {}
        trainable = (rec.get("params") or {}).get("trainable")
        lines.append(f"{rec['name']:24s} {rec['status']:8s} " + " ".join(
            f"{score_text(data, k, scores[k]['mean']) if k in scores else '':>{width}s}" for k in keys) +
            f" {'' if trainable is None else f'{trainable:,}':>12s} {train.get('train_time_s', 0):8.0f} "
            f"{peak_rss_mb(rec):8.0f}")
    pick = advice(data)
    return "\n".join(lines + ([""] + pick if pick else []))


def write_report(data: dict, path: Path, plots: list[str] | None = None) -> None:
    atomic_write_text(path, render_markdown(data, plots))
