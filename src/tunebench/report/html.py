"""A self-contained report.html (plots embedded, nothing fetched), rendered from the same sections as report.md."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from tunebench.files import atomic_write_text
from tunebench.report.sections import Explorer, Figure, Items, Para, Table, sections

STYLE = """body{font-family:sans-serif;margin:2em;color:#222;max-width:1300px}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f0f0f0}img{max-width:100%;margin:1em 0;border:1px solid #eee}li{margin:.3em 0}
.side{display:flex;gap:2em;align-items:flex-start}.side>figure{flex:3;margin:0}.side>p{flex:2;font-size:1.1em}
figcaption{font-size:12px;color:#555}
.decision{font-size:1.25em;font-weight:bold;border:2px solid #2a6;background:#eef8f0;padding:.8em 1em;max-width:60em}
.side>div{flex:2}summary h2{display:inline;cursor:pointer}"""


def inline(text: str) -> str:
    """Escaped text with `code` spans as <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _block(block, plot_dir: Path) -> str:
    if isinstance(block, Para):
        return f'<p class="decision">{inline(block.text)}</p>' if block.box else f"<p>{inline(block.text)}</p>"
    if isinstance(block, Table):
        head = "".join(f"<th>{inline(h)}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><tr>{head}</tr>{body}</table>"
    if isinstance(block, Items):
        return "<ul>" + "".join(f"<li>{inline(line)}</li>" for line in block.lines) + "</ul>"
    if isinstance(block, Figure):
        data = base64.b64encode((plot_dir / block.file).read_bytes()).decode("ascii")
        return (f'<figure><img alt="{html.escape(block.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{inline(block.caption)}</figcaption></figure>")
    if isinstance(block, Explorer):
        return _explorer(block)
    raise TypeError(f"unknown report block {block!r}")


SCRIPT = Path(__file__).with_name("explorer.js")


def _explorer(block: Explorer) -> str:
    """Two axis menus, an SVG the script draws, the points as JSON: works from the file, no server, nothing
    fetched."""
    payload = json.dumps({"axes": block.axes, "points": block.points, "x": block.x, "y": block.y})
    payload = payload.replace("<", "\\u003c")  # no "</script>" can end the data early
    return (f"<p>{inline(block.text)}</p>"
            '<div><label>x: <select id="explorer-x"></select></label> '
            '<label>y: <select id="explorer-y"></select></label></div>'
            '<svg id="explorer-svg" width="760" height="460" role="img" aria-label="Pareto view"></svg>'
            '<div id="explorer-note"></div>'
            f'<script type="application/json" id="explorer-data">{payload}</script>'
            f"<script>{SCRIPT.read_text(encoding='utf-8')}</script>")


def render_html(data: dict, plots: list[Path]) -> str:
    plot_dir = plots[0].parent if plots else Path(".")
    parts = []
    for i, section in enumerate(sections(data, [p.name for p in plots])):
        body = "".join(_block(block, plot_dir) for block in section.blocks)
        if section.side_by_side:  # the picture, and beside it the words
            words = "".join(_block(block, plot_dir) for block in section.blocks[1:])
            body = f'<div class="side">{_block(section.blocks[0], plot_dir)}<div>{words}</div></div>'
        if section.collapsed:
            parts.append(f"<details><summary><h2>{inline(section.title)}</h2></summary>{body}</details>")
        else:
            parts.append(f"<h{1 if i == 0 else 2}>{inline(section.title)}</h{1 if i == 0 else 2}>{body}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tunebench comparison</title><style>{STYLE}</style></head>
<body>{''.join(parts)}
</body></html>
"""


def write_html(data: dict, plots: list[Path], path: Path) -> None:
    atomic_write_text(path, render_html(data, plots))
