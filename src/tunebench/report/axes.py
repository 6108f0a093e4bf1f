"""The axes a record is read on besides its scores: what it cost to train, to keep and to serve; and the points of
the report's Pareto view (plots.py draws static pairs of them, html.py an interactive one).

Read from results.json only; no matplotlib here (sections.py imports this for the report's text).
"""

from __future__ import annotations

from tunebench.verdict import pareto_front, peak_rss_mb, scores_described, train_cpu_s

COSTS = {"time": "training CPU seconds (from 0)", "memory": "peak RSS (MB)", "params": "trained parameters (log)"}
"""The training costs the verdict weighs (its Pareto front is over these three)."""
SERVING = {"checkpoint": "checkpoint beside the base model (MB, log)", "positions": "prompt positions added",
           "serving": "serving tokens/s, fixed job (from 0; higher is faster)"}
"""What keeping and serving a method costs."""
HIGHER_IS_BETTER = {"serving"}
"""Axes on which more is better (every other cost: less is)."""
LOG_AXES = {"params", "checkpoint"}
FROM_ZERO = {"time", "serving", "serving_memory"}


def cost_of(rec: dict, what: str, data: dict | None = None) -> float | None:
    """A trained record's value on one axis (None where it has none: baselines train nothing)."""
    if not rec.get("train"):
        return None
    return axis_value(rec, what, data or {})


def axis_value(rec: dict, what: str, data: dict) -> float | None:
    """Any successful record's value on one axis, baselines included where the axis applies to them (serving,
    prompt positions); None where it has none."""
    train, serving = rec.get("train"), rec.get("serving") or {}
    if what == "params":
        return rec["params"]["trainable"] if train else None
    if what == "time":
        return train_cpu_s(rec) if train else None
    if what == "memory":
        return peak_rss_mb(rec) if train else None
    if what == "checkpoint":
        artifacts = rec.get("artifacts") or {}
        size = artifacts.get("peft_adapter_bytes") or artifacts.get("weights_bytes")
        return size / 2**20 if size else None
    if what == "positions":
        return float((rec.get("params") or {}).get("positions_added", 0))
    if what == "serving":
        return serving.get("tokens_per_s")
    if what == "serving_memory":
        return serving.get("added_rss_mb")
    if what == "first_token":
        return serving.get("first_token_s")
    if what == "generation":
        phase = rec.get("phases", {}).get("generation", {})
        return phase["wall_s"] / max(rec["eval"].get("n_articles") or 1, 1) if phase.get("wall_s") else None
    return _versus_base(rec, what, data)


def _versus_base(rec: dict, key: str, data: dict) -> float | None:
    """A record's mean on a score read against the base model, minus the base model's (e.g. forgetting)."""
    base = next((r for r in data.get("records", []) if r["status"] == "SUCCESS" and r["kind"] == "baseline"
                 and key in r["eval"]["scores"]), None)
    if base is None or key not in rec["eval"]["scores"]:
        return None
    return rec["eval"]["scores"][key]["mean"] - base["eval"]["scores"][key]["mean"]


AXES = {"time": ("training CPU seconds", "train CPU s", "{:,.1f}"),
        "memory": ("peak RSS while training (MB)", "peak RSS MB", "{:,.0f}"),
        "params": ("trained parameters", "trained params", "{:,.0f}"),
        "checkpoint": ("checkpoint beside the base model (MB)", "checkpoint MB", "{:,.3f}"),
        "positions": ("prompt positions added", "positions added", "{:.0f}"),
        "serving": ("serving tokens/s (fixed job)", "serving tok/s", "{:,.1f}"),
        "serving_memory": ("memory the serving job added (MB RSS)", "serving added MB", "{:,.0f}"),
        "first_token": ("serving: seconds to the first token", "first token s", "{:.3f}")}
"""The cost axes of the Pareto view: key -> (axis title, table header, format)."""


def explorer_axes(data: dict) -> dict[str, dict]:
    """Every axis the Pareto view offers: key -> label, short (a table header), fmt, whether higher is better, log
    scale. The judged scores come first (the deciding one leads), then training, keeping and serving costs, then
    the scores read against the base model (forgetting), as method minus base."""
    described = scores_described(data)
    decide_on = (data.get("verdict") or {}).get("decide_on")
    out = {}
    for key in sorted(described, key=lambda k: k != decide_on):
        d = described[key]
        if d.get("versus_base") or d.get("descriptive"):
            continue
        out[f"score:{key}"] = {"label": d.get("title", key), "short": d.get("label", key), "fmt": "{:.2f}",
                               "higher": d.get("higher_is_better", True), "log": False}
    for what, (text, short, fmt) in AXES.items():
        out[what] = {"label": text, "short": short, "fmt": fmt, "higher": what in HIGHER_IS_BETTER,
                     "log": what in LOG_AXES}
    for key, d in described.items():
        if d.get("versus_base"):
            out[key] = {"label": f"{d.get('label', key)}, method minus base model",
                        "short": f"{d.get('label', key)} vs base", "fmt": "{:+.3f}",
                        "higher": d.get("higher_is_better", True), "log": False}
    return out


def explorer_points(data: dict) -> list[dict]:
    """One point per successful record: name, kind and its value on every axis it has (scores with their 95%
    interval)."""
    points = []
    for rec in data["records"]:
        if rec["status"] != "SUCCESS":
            continue
        values, intervals = {}, {}
        for axis in explorer_axes(data):
            if axis.startswith("score:"):
                stats = rec["eval"]["scores"].get(axis[len("score:"):])
                if stats is not None:
                    values[axis] = stats["mean"]
                    if stats.get("ci95"):
                        intervals[axis] = list(stats["ci95"])
            else:
                value = axis_value(rec, axis, data)
                if value is not None:
                    values[axis] = float(value)
        points.append({"name": rec["name"], "kind": rec["kind"], "values": values, "ci95": intervals})
    return points


def front(data: dict, x: str, y: str) -> list[str]:
    """The records no other dominates on axes x and y (each read in its own better direction), among the records
    that have both: what the interactive view rings (the same rule as the verdict's `pareto_front`)."""
    axes = explorer_axes(data)
    sign = {a: -1.0 if axes[a]["higher"] else 1.0 for a in (x, y)}
    points = {p["name"]: (sign[x] * p["values"][x], sign[y] * p["values"][y]) for p in explorer_points(data)
              if x in p["values"] and y in p["values"]}
    return pareto_front(points)
