"""Everything a run shows, rebuilt from its results alone: report.md, plots/, report.html, tb/."""

from __future__ import annotations

from pathlib import Path

from tunebench.cache import is_writer
from tunebench.html_report import write_html
from tunebench.plots import draw_all
from tunebench.report import write_report
from tunebench.tb import write_tensorboard


def write_outputs(data: dict, run_dir: Path, figures: bool = True) -> None:
    """The markdown report always; plots, the self-contained HTML and TensorBoard events when `figures`.
    Only the writer process (rank 0 under torchrun) writes."""
    if not is_writer():
        return
    if not figures:
        write_report(data, run_dir / "report.md")
        return
    plots = draw_all(data, run_dir / "plots")
    write_report(data, run_dir / "report.md", [p.name for p in plots])
    write_html(data, plots, run_dir / "report.html")
    write_tensorboard(data, run_dir / "tb")
