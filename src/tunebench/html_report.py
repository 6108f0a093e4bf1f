"""A self-contained report.html: the comparison table, the verdicts and every plot embedded (no external files)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from tunebench.cache import atomic_write_text
from tunebench.report import HEADER, advice, below_zero_shot, comparisons, evaluation_line, table_rows

STYLE = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f0f0f0}img{max-width:100%;margin:1em 0;border:1px solid #eee}li{margin:.3em 0}"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def render_html(data: dict, plots: list[Path]) -> str:
    cfg, facts = data["config"], data["data"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(data))
    verdicts = "".join(f"<li>{html.escape(line.removeprefix('- '))}</li>" for line in comparisons(data))
    pick = "".join(f"<p>{html.escape(line)}</p>" for line in advice(data) + below_zero_shot(data))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tunebench comparison</title><style>{STYLE}</style></head>
<body><h1>tunebench comparison</h1>
<p>Model <code>{html.escape(cfg['model']['name'])}</code>; data <code>{html.escape(facts['source'])}</code>,
test {facts['split_sizes']['test']} articles. ROUGE F1 x 100, mean [95% bootstrap CI].</p>
{''.join(f"<p>{html.escape(line)}</p>" for line in evaluation_line(data) if line)}
<table><tr>{head}</tr>{body}</table>
<h2>Which method to pick</h2>{pick}
<h2>Which differences are significant</h2><ul>{verdicts}</ul>
<h2>Plots</h2>{''.join(_img(p) for p in plots)}
</body></html>
"""


def write_html(data: dict, plots: list[Path], path: Path) -> None:
    atomic_write_text(path, render_html(data, plots))
