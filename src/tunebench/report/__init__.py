"""Everything a run shows, rebuilt from its results alone: report.md, plots/, report.html (and tb/ on request).

sections.py describes the document once; markdown.py and html.py render it; plots.py draws the figures;
published.py holds published figures shown beside measured ones. Imports stay inside write_outputs so that
importing one part (e.g. the sections) does not load matplotlib or TensorBoard.
"""

from __future__ import annotations

from pathlib import Path

from tunebench.files import is_writer


def write_outputs(data: dict, run_dir: Path, figures: bool = True, tensorboard: bool = False,
                  drawn: bool = False) -> None:
    """The markdown report always; plots and the self-contained HTML when `figures`; TensorBoard's events rebuilt
    from the results when `tensorboard` (for folders no run logged to live: merged reports, re-scored records;
    `compare` logs them while it runs, track/). Only the writer process (rank 0 under torchrun) writes. `drawn`:
    the plots were drawn already (`draw_share` on every process) and are only gathered into the documents."""
    from tunebench.report.markdown import write_report

    if not is_writer():
        return
    if not figures:
        write_report(data, run_dir / "report.md")
        return
    from tunebench.report import plots as figures_of
    from tunebench.report.html import write_html
    from tunebench.track import replay_tensorboard

    plots = figures_of.drawn(run_dir / "plots") if drawn else figures_of.draw_all(data, run_dir / "plots")
    write_report(data, run_dir / "report.md", [p.name for p in plots])
    write_html(data, plots, run_dir / "report.html")
    if tensorboard:
        replay_tensorboard(data, run_dir)


def draw_share(data: dict, run_dir: Path, rank: int, processes: int) -> None:
    """This process's hand of the run's plots (plots._dealt: dealt out by drawing time), when the processes of a
    torchrun job that split the jobs draw the report together (plots are most of a small run's report time): every
    process must see the run folder, as it must in that mode; then `write_outputs(..., drawn=True)` on the writer
    once all are drawn (compare.py: should a process fail to draw, the writer draws them all)."""
    from tunebench.report.plots import draw_all

    draw_all(data, run_dir / "plots", share=(rank, processes))
