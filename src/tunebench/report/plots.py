"""PNG plots drawn from results.json only, one colour per method across every plot."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from tunebench.methods import METHODS, ZERO_SHOT  # noqa: E402
from tunebench.report.axes import COSTS, FROM_ZERO, LOG_AXES, SERVING, cost_of  # noqa: E402
from tunebench.report.sections import label, score_text  # noqa: E402
from tunebench.verdict import (  # noqa: E402
    primary_records,
    scores_described,
    significant,
)

FIXED = {"lead": "#7f7f7f", ZERO_SHOT.name: ZERO_SHOT.colour, "zero-shot-chat": "#e377c2",
         **{m.name: m.colour for m in METHODS.values()}}
SPARE = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#ff7f0e"]


def colour(record: dict) -> str:
    """The same colour for a method in every plot (keyed by method, so its seeds share it)."""
    key = record["name"] if record.get("kind") == "baseline" else record.get("method", record["name"])
    key = "lead" if key.startswith("lead") else key
    return FIXED.get(key, SPARE[sum(map(ord, key)) % len(SPARE)])


def _ok(data: dict) -> list[dict]:
    return [r for r in data["records"] if r["status"] == "SUCCESS"]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    # zlib level 1: a sixth less time per report than the default 6, for files ~8% larger (measured on `smoke`)
    fig.savefig(tmp, dpi=110, pil_kwargs={"compress_level": 1})  # then renamed: a reader never sees half a PNG
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def _trained(data: dict, key: str) -> bool:
    return any((rec.get("train") or {}).get(key) for rec in _ok(data))


def loss_curves(data: dict, path: Path) -> Path | None:
    """Training loss of every method against training tokens: raw faint, smoothed solid (None: nothing trained)."""
    if not _trained(data, "train_loss_per_step"):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for rec in _ok(data):
        train = rec.get("train")
        if not train or not train["train_loss_per_step"]:
            continue
        loss = np.array(train["train_loss_per_step"])
        tokens = np.linspace(train["train_tokens"] / len(loss), train["train_tokens"], len(loss))
        ax.plot(tokens, loss, color=colour(rec), alpha=0.25, linewidth=1)
        window = max(3, len(loss) // 10) if len(loss) >= 6 else 1  # smoothed even over a one-epoch run
        smooth = _smooth(loss, window)
        ax.plot(tokens[len(tokens) - len(smooth):], smooth, color=colour(rec), linewidth=2, label=rec["name"])
    ax.set(xlabel="training tokens", ylabel="loss (nats / summary token)", title="Training loss")
    ax.legend()
    return _save(fig, path)


def _per_step_series(data: dict, path: Path, key: str, xlabel: str, ylabel: str, title: str,
                     marker: str | None = None, size: tuple[float, float] = (6, 4), log: bool = False,
                     min_points: int = 1) -> Path | None:
    """One line per method of a list kept in its training record (indexed from 1); None when no record has at
    least `min_points` values."""
    if not any(len((rec.get("train") or {}).get(key) or []) >= min_points for rec in _ok(data)):
        return None
    fig, ax = plt.subplots(figsize=size)
    for rec in _ok(data):
        values = (rec.get("train") or {}).get(key)
        if values:
            ax.plot(range(1, len(values) + 1), values, marker=marker, color=colour(rec), label=rec["name"])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if log:
        ax.set_yscale("log", nonpositive="mask")  # the schedule's final 0 is not drawn
    ax.legend(fontsize=8)
    return _save(fig, path)


def val_loss(data: dict, path: Path) -> Path | None:
    """Only with two epochs or more: one point per method says nothing a table does not (the report lists it)."""
    return _per_step_series(data, path, "val_loss_per_epoch", "epoch", "validation loss (nats / summary token)",
                            "Validation loss per epoch", marker="o", min_points=2)


def score_bars(data: dict, path: Path) -> Path | None:
    """Every score of the run's metrics, one panel each (their scales differ): the mean per record with its 95%
    bootstrap interval as whiskers. None when no record has a score."""
    recs = _ok(data)
    keys = [k for k in scores_described(data) if any(k in r["eval"]["scores"] for r in recs)]
    if not keys:
        return None
    columns = min(len(keys), 5)
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.8 * columns + 1.5, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys, strict=False):
        shown = [r for r in recs if key in r["eval"]["scores"]]
        means = np.array([r["eval"]["scores"][key]["mean"] for r in shown])
        lows = means - np.array([r["eval"]["scores"][key]["ci95"][0] for r in shown])
        highs = np.array([r["eval"]["scores"][key]["ci95"][1] for r in shown]) - means
        ax.bar(np.arange(len(shown)), means, yerr=[lows, highs], capsize=3, color=[colour(r) for r in shown])
        ax.set_xticks(np.arange(len(shown)), [r["name"] for r in shown], rotation=60, ha="right", fontsize=7)
        described = scores_described(data)[key]
        better = "descriptive" if described.get("descriptive") else \
            f"{'higher' if described.get('higher_is_better', True) else 'lower'} is better"
        ax.set_title(f"{label(data, key)} ({better})", fontsize=9)
    fig.suptitle("Every score on the test articles (mean, 95% bootstrap CI)")
    return _save(fig, path)


def _quality_panel(ax, data: dict, trained: list[dict], baselines: list[dict], key: str, what: str) -> list:
    """One panel: the deciding score of each trained record against one cost, baselines as lines."""
    verdict = data.get("verdict") or {}
    costs = [cost_of(r, what, data) for r in trained]
    for rec, c in zip(trained, costs, strict=True):
        if c is None:
            continue
        q, (low, high) = rec["eval"]["scores"][key]["mean"], rec["eval"]["scores"][key]["ci95"]
        ax.errorbar(c, q, yerr=[[q - low], [high - q]], fmt="o", color=colour(rec), markersize=7, capsize=4,
                    label=rec["name"], zorder=3)
        if rec["name"] == verdict.get("pick"):
            ax.plot(c, q, "*", color="black", markersize=16, zorder=4,
                    label="picked" if verdict.get("action") == "pick" else "take if you must pick now")
        elif rec["name"] in verdict.get("qualified", []):
            ax.plot(c, q, "o", markerfacecolor="none", markeredgecolor="black", markersize=14, zorder=4)
    for rec in baselines:
        mean, (low, high) = rec["eval"]["scores"][key]["mean"], rec["eval"]["scores"][key]["ci95"]
        ax.axhline(mean, color=colour(rec), linestyle=":", linewidth=1.5, label=f"{rec['name']} (baseline)")
        ax.axhspan(low, high, color=colour(rec), alpha=0.08)
    return [c for c in costs if c is not None]


def _quality_figure(data: dict, path: Path, axes_wanted: dict[str, str], title: str) -> Path | None:
    """The deciding score against each cost of `axes_wanted` that some trained record has, one panel each."""
    trained = [r for r in _ok(data) if r.get("train")]
    if not trained:
        return None
    key = (data.get("verdict") or {}).get("decide_on") or next(iter(scores_described(data)))
    def informative(what: str) -> bool:  # some record has a value, and not all the same (all 0 positions added)
        values = {cost_of(r, what, data) for r in trained} - {None}
        return len(values) > 1 or (len(values) == 1 and len(trained) == 1)
    wanted = {w: t for w, t in axes_wanted.items() if informative(w)}
    if not wanted:
        return None
    baselines = [r for r in _ok(data) if not r.get("train") and key in r["eval"]["scores"]]
    fig, axes = plt.subplots(1, len(wanted), figsize=(4.4 * len(wanted) + 0.6, 4.2), sharey=True, squeeze=False)
    top = max(r["eval"]["scores"][key]["ci95"][1] for r in _ok(data) if key in r["eval"]["scores"])
    for ax, (what, axis_label) in zip(axes[0], wanted.items(), strict=True):
        costs = _quality_panel(ax, data, trained, baselines, key, what)
        if what in LOG_AXES:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        elif what in FROM_ZERO:
            ax.set_xlim(0, max(costs) * 1.1)  # seconds from 0: ratios read true
        elif what == "memory":  # the base model's own footprint is in every method's: start below the least
            low = min(costs)
            ax.set_xlim(low * 0.8, max(costs) * 1.1)
            axis_label = f"peak RSS (MB; axis from {low * 0.8:,.0f})"
        ax.set(xlabel=axis_label)
        ax.set_ylim(0, top * 1.1 + 0.5)
    better = "higher" if scores_described(data).get(key, {}).get("higher_is_better", True) else "lower"
    axes[0][0].set_ylabel(f"{scores_described(data).get(key, {}).get('title', key)}\nthe deciding score ({better} "
                          "is better)")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    return _save(fig, path)


def quality_vs_cost(data: dict, path: Path) -> Path | None:
    """The deciding metric (eval.decide_on) against training CPU seconds, peak memory and trained parameters: means
    with 95% intervals, baselines as horizontal lines with their interval shaded (they cost no training); the
    verdict's pick starred, the contenders it weighed on cost ringed. None when nothing was trained."""
    return _quality_figure(data, path, COSTS, "Quality (mean, 95% interval) against cost; dotted: baselines; star: "
                           "the verdict's pick; ringed: methods that beat every baseline")


def quality_vs_serving(data: dict, path: Path) -> Path | None:
    """The deciding metric against what serving and keeping a method costs: its checkpoint, the prompt positions it
    adds, tokens/s in the fixed serving job, and the change from the base model of every score read against it
    (forgetting). None when nothing was trained."""
    versus = {k: f"{d['label']}, method minus base model" for k, d in scores_described(data).items()
              if d.get("versus_base")}
    return _quality_figure(data, path, {**SERVING, **versus}, "Quality against serving cost and forgetting; "
                           "dotted: baselines; star: the verdict's pick")


def pairwise(data: dict, path: Path) -> Path | None:
    """Every pair of records on the deciding metric: colour = mean difference (row minus column) on the articles
    both have; '●' where the verdict's corrected test separates them, '○' where only an unadjusted test does.
    None with fewer than two records."""
    verdict = data.get("verdict") or {}
    key = verdict.get("decide_on") or next(iter(scores_described(data)))
    names = [r["name"] for r in primary_records(data)]
    if len(names) < 2:
        return None
    diff = np.zeros((len(names), len(names)))
    marks = [[""] * len(names) for _ in names]
    decided = {frozenset((t["a"], t["b"])) for h in verdict.get("hypotheses", []) for t in h["tests"]
               if t.get("crossed")}
    for test in data.get("comparisons", []):
        if test["metric"] != key:
            continue
        i, j = names.index(test["a"]), names.index(test["b"])
        diff[i, j], diff[j, i] = test["mean"], -test["mean"]
        mark = "●" if frozenset((test["a"], test["b"])) in decided else "○" if significant(test) else ""
        marks[i][j] = marks[j][i] = mark
    size = 1.0 + 0.7 * len(names)
    fig, ax = plt.subplots(figsize=(size + 2.5, size))
    limit = max(np.abs(diff).max(), 1e-9)
    image = ax.imshow(diff, cmap="RdBu", vmin=-limit, vmax=limit)
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j:
                ax.text(j, i, f"{score_text(data, key, diff[i, j], True)}{marks[i][j]}", ha="center", va="center",
                        fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(image, ax=ax, label=f"row minus column, {label(data, key)}")
    ax.set_title(f"Pairwise {label(data, key)}: ● decided by the verdict's test, ○ only unadjusted p < 0.05",
                 fontsize=9)
    return _save(fig, path)


def resource_timelines(data: dict, path: Path) -> Path | None:
    """CPU % of this process and its RSS over each record's phases, end to end; only records sampled at least
    twice (a baseline that ends in a moment draws nothing and is left out of the legend). None if none was."""
    series = []
    for rec in _ok(data):
        offset, times, cpu, rss = 0.0, [], [], []
        for phase in rec.get("phases", {}).values():
            for sample in phase.get("samples", []):
                times.append(offset + sample["t_s"])
                cpu.append(sample["cpu_pct"])
                rss.append(sample["rss_mb"])
            offset += phase["wall_s"]
        if len(times) >= 2:
            series.append((rec, times, cpu, rss))
    if not series:
        return None
    fig, (cpu_ax, mem_ax) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for rec, times, cpu, rss in series:
        cpu_ax.plot(times, cpu, color=colour(rec), label=rec["name"])
        mem_ax.plot(times, rss, color=colour(rec))
    cpu_ax.set(ylabel="CPU % (100 = one core)", title="Resources over each record's run")
    mem_ax.set(xlabel="seconds since the record started", ylabel="RSS (MB)")
    mem_ax.set_ylim(bottom=0)
    cpu_ax.set_ylim(bottom=0)
    cpu_ax.legend(fontsize=8)
    return _save(fig, path)


def lr_schedule(data: dict, path: Path) -> Path | None:
    """Log scale: methods' peak rates differ by orders of magnitude (a soft prompt's 3e-2, LoRA's 5e-4)."""
    return _per_step_series(data, path, "lr_per_step", "optimizer step", "learning rate (log)",
                            "Learning-rate schedule", size=(6, 3.5), log=True)


def lr_search(data: dict, path: Path) -> Path | None:
    """Validation loss against learning rate, one line per method; a pruned trial at its last reported loss (x).
    None when no search ran."""
    searched = [rec for rec in _ok(data) if rec.get("search")]
    if not searched:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for rec in searched:
        trials = rec["search"]["trials"]
        done = [t for t in trials if t["state"] == "COMPLETE"]
        ax.plot([t["lr"] for t in done], [t["val_loss"] for t in done], "o-", color=colour(rec), label=rec["name"])
        pruned = [t for t in trials if t["state"] == "PRUNED" and t["curve"]]
        ax.plot([t["lr"] for t in pruned], [list(t["curve"].values())[-1] for t in pruned], "x", color=colour(rec))
        best = next(t for t in done if t["lr"] == rec["search"]["best_lr"])
        ax.plot([best["lr"]], [best["val_loss"]], "*", markersize=14, color=colour(rec))
    ax.set(xscale="log", xlabel="learning rate", ylabel="validation loss (nats / summary token)",
           title="Learning-rate search (star: chosen; x: stopped early)")
    ax.legend(fontsize=8)
    return _save(fig, path)


PLOTS = {"pairwise.png": pairwise, "loss_curves.png": loss_curves, "val_loss.png": val_loss, "scores.png": score_bars,
         "quality_vs_cost.png": quality_vs_cost, "quality_vs_serving.png": quality_vs_serving,
         "resources.png": resource_timelines, "lr_schedule.png": lr_schedule, "lr_search.png": lr_search}
"""Every plot; each is drawn only where it carries information (its function returns None otherwise): nothing
about training for a folder written by `evaluate --data`, no validation curve for one epoch, no search plot
without a search."""


DRAW_S = {"scores.png": 0.9, "quality_vs_serving.png": 0.5, "quality_vs_cost.png": 0.4, "pairwise.png": 0.27,
          "lr_schedule.png": 0.19, "resources.png": 0.17, "loss_curves.png": 0.12, "val_loss.png": 0.12,
          "lr_search.png": 0.12}
"""Seconds each plot took to draw for `smoke` (2-core AMD EPYC, 2026-12-08; a figure's panels set it): only to deal
the plots out evenly when several processes draw them (`draw_all`'s share)."""


def _dealt(processes: int) -> list[list[str]]:
    """PLOTS dealt out to `processes`, the longest to draw first, each to the process with the least so far."""
    hands: list[list[str]] = [[] for _ in range(processes)]
    load = [0.0] * processes
    for name in sorted(PLOTS, key=lambda n: -DRAW_S.get(n, 0.0)):
        least = load.index(min(load))
        hands[least].append(name)
        load[least] += DRAW_S.get(name, 0.0)
    return hands


def draw_all(data: dict, folder: Path, share: tuple[int, int] = (0, 1)) -> list[Path]:
    """Every plot that has something to show into `folder`; returns the files written. `share` = (k, n): only the
    k-th of n hands of plots (`_dealt`: n processes drawing one report together, then `drawn`)."""
    folder.mkdir(parents=True, exist_ok=True)
    mine = set(_dealt(share[1])[share[0]])
    drawn = [PLOTS[name](data, folder / name) for name in PLOTS if name in mine]
    for name in mine:  # a plot that no longer carries information is not left from an earlier drawing
        if folder / name not in drawn:
            (folder / name).unlink(missing_ok=True)
    return [path for path in drawn if path is not None]


def drawn(folder: Path) -> list[Path]:
    """The plots `folder` holds, in PLOTS' order (after every share of draw_all was drawn)."""
    return [folder / name for name in PLOTS if (folder / name).is_file()]
