"""Issue 5: plots, a self-contained HTML report, TensorBoard events and resource figures, all from results.json."""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib import image

from tunebench import metrics
from tunebench.cli import main
from tunebench.report.axes import explorer_points, front
from tunebench.report.plots import PLOTS, lr_schedule, pairwise, quality_vs_cost, resource_timelines, val_loss

NOT_IN_SMOKE = {"lr_search.png"}  # the smoke run (2 epochs) searches no learning rate


@pytest.fixture
def run(smoke_run):
    return smoke_run


@pytest.mark.e2e
def test_every_plot_is_drawn_and_not_blank(run):
    assert {p.name for p in (run / "plots").iterdir()} == set(PLOTS) - NOT_IN_SMOKE
    for name in set(PLOTS) - NOT_IN_SMOKE:
        path = run / "plots" / name
        assert path.stat().st_size > 5_000, name
        pixels = image.imread(path)
        assert pixels.std() > 0.01, name  # not one flat colour


@pytest.mark.e2e
def test_plots_drawn_in_shares_make_the_report_one_drawing_makes(run, tmp_path):
    """Processes that split the jobs also split the plots (report.draw_share): every plot is drawn by exactly one
    of them, the shares together are what one drawing gives, and the writer's report.md and report.html, put
    together from the drawn files, equal the one-drawing documents."""
    from tunebench.report import draw_share, write_outputs
    from tunebench.report.plots import _dealt

    for processes in (1, 2, 3, 5):
        hands = _dealt(processes)
        assert sorted(sum(hands, [])) == sorted(PLOTS) and all(hands[:min(processes, len(PLOTS))])
    data = json.loads((run / "results.json").read_text())
    one, shared = tmp_path / "one", tmp_path / "shared"
    write_outputs(data, one)
    (shared / "plots").mkdir(parents=True)
    (shared / "plots" / "lr_search.png").write_bytes(b"from an earlier drawing")  # shows nothing now: removed
    for rank in range(3):
        draw_share(data, shared, rank, 3)
    write_outputs(data, shared, drawn=True)
    assert sorted(p.name for p in (shared / "plots").iterdir()) == sorted(p.name for p in (one / "plots").iterdir())
    assert (shared / "report.md").read_text() == (one / "report.md").read_text()
    assert (shared / "report.html").read_text().count("data:image/png") == len(PLOTS) - len(NOT_IN_SMOKE)


@pytest.mark.e2e
def test_html_report_is_self_contained(run):
    text = (run / "report.html").read_text()
    assert text.count('src="data:image/png;base64,') == len(PLOTS) - len(NOT_IN_SMOKE)
    assert not re.search(r"(href|src)=\"(?!data:)", text)  # nothing to fetch: no links, scripts or files
    assert "http://" not in text and "https://" not in text
    data = json.loads((run / "results.json").read_text())
    for rec in data["records"]:
        assert f"<td>{rec['name']}</td>" in text


@pytest.mark.e2e
def test_resource_and_efficiency_figures_are_recorded(run):
    data = json.loads((run / "results.json").read_text())
    lora = next(r for r in data["records"] if r["name"] == "lora")
    for phase in ("setup", "train", "generation"):
        assert lora["phases"][phase]["peak_rss_mb"] >= lora["phases"][phase]["start_rss_mb"] > 0
    assert lora["phases"]["train"]["samples"] and {"t_s", "rss_mb", "cpu_pct"} <= set(lora["phases"]["train"]
                                                                                         ["samples"][0])
    train, trainable = lora["train"], lora["params"]["trainable"]
    assert 8 * trainable <= train["optimizer_state_bytes"] <= 8 * trainable + 4096  # AdamW: two fp32 moments
    assert train["steps_per_s"] > 0 and train["target_tokens_per_s"] < train["train_tokens_per_s"]
    assert lora["artifacts"]["weights_bytes"] >= 4 * trainable


@pytest.mark.e2e
def test_frozen_cache_and_phase_times_are_reported(run):
    data = json.loads((run / "results.json").read_text())
    last_block = next(r for r in data["records"] if r["name"] == "last-block")
    cache = last_block["train"]["frozen_cache"]
    assert cache["frozen_blocks"] == 1 and cache["bytes"] > 0 and cache["where"] == "disk" and cache["build_s"] > 0
    assert all(not r["train"].get("frozen_cache") for r in data["records"] if r.get("method") in ("lora",
                                                                                                 "prompt-tuning"))
    assert not (run / ".frozen-cache").exists()  # removed once the run is complete
    text = (run / "report.md").read_text()
    assert "- last-block: the 1 frozen lower block ran once per example" in text
    section = text.split("## Where the time went", 1)[1].split("\n## ", 1)[0]
    assert data["prepare_s"] > 0 and f"took {data['prepare_s']:.1f} s" in section
    for rec in data["records"]:
        row = next(line for line in section.splitlines() if line.startswith(f"| {rec['name']} |"))
        setup, search, train, val, gen, serve, more, total = (float(x) for x in row.strip("| ").split(" | ")[1:])
        # each of the 7 cells is rounded to 0.1 s, the total from the unrounded seconds
        assert total == pytest.approx(setup + search + train + val + gen + serve + more, abs=7 * 0.05 + 1e-9)
        assert search == 0
        assert (serve > 0) == bool(rec.get("serving"))
        assert train > 0 if rec.get("train") else train == 0


@pytest.mark.e2e
def test_tensorboard_events_hold_the_training_curves(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = json.loads((run / "results.json").read_text())
    lora = next(r for r in data["records"] if r["name"] == "lora")
    events = EventAccumulator(str(run / "tb" / "lora"))
    events.Reload()
    logged = [e.value for e in events.Scalars("train/loss")]
    assert logged == pytest.approx(lora["train"]["train_loss_per_step"], rel=1e-6)
    assert len(events.Scalars("val/loss")) == len(lora["train"]["val_loss_per_epoch"])


@pytest.mark.e2e
def test_report_rebuilds_from_results_alone_and_merges_runs(run, tmp_path):
    before = (run / "report.md").read_text()
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(run / "results.json", copy / "results.json")
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.md").read_text() == before
    assert (copy / "report.html").is_file() and (copy / "plots" / "scores.png").is_file()
    assert main(["report", str(run), str(copy), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    names = [r["name"] for r in merged["records"]]
    assert "s/lora" in names and "copy/lora" in names and merged["merged_from"] == ["s", "copy"]
    assert "- s/lora vs copy/lora: " in (tmp_path / "merged" / "report.md").read_text()


@pytest.mark.e2e
def test_pairwise_picture_needs_two_records(run, tmp_path):
    data = json.loads((run / "results.json").read_text())
    assert pairwise({**data, "records": data["records"][:1]}, tmp_path / "p.png") is None
    assert pairwise(data, tmp_path / "p.png") is not None


def _browser(tmp_path, *args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("TUNEBENCH_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (TUNEBENCH_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("chromium not installed (CI installs it and sets TUNEBENCH_REQUIRE_BROWSER)")
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", *args], capture_output=True, text=True,
                          timeout=120, check=True)


@pytest.mark.e2e
def test_report_renders_in_headless_chromium(run, tmp_path):
    shot = tmp_path / "shot.png"
    _browser(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", (run / "report.html").as_uri())
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[0] >= 1000
    assert pixels.std() > 0.05  # text, table and plots, not a blank page
    assert (np.abs(pixels - pixels[0, 0]).sum(axis=-1) > 0.1).mean() > 0.02


@pytest.mark.e2e
@pytest.mark.parametrize("x, y", [("memory", "serving"), ("params", "score:rouge1"), ("checkpoint", "text_loss")])
def test_pareto_view_rings_the_front_in_a_browser(run, tmp_path, x, y):
    """The interactive view, run by a real browser from the file: every record with both values drawn, and the
    records it rings are the Pareto front Python computes from results.json for the same axes."""
    data = json.loads((run / "results.json").read_text())
    dom = _browser(tmp_path, "--dump-dom", f"{(run / 'report.html').as_uri()}#x={x}&y={y}").stdout
    drawn = re.findall(r'<circle [^>]*data-name="([^"]+)"[^>]*class="(point(?: front)?)"', dom)
    having = [p["name"] for p in explorer_points(data) if x in p["values"] and y in p["values"]]
    assert sorted(name for name, _ in drawn) == sorted(having) and len(having) >= 8
    ringed = sorted(name for name, cls in drawn if cls == "point front")
    assert ringed == sorted(front(data, x, y)) and ringed
    assert sorted(re.search(r'data-front="([^"]*)"', dom).group(1).split(",")) == ringed


@pytest.mark.e2e
def test_serving_cost_is_the_same_job_for_every_record(run):
    data = json.loads((run / "results.json").read_text())
    ok = [r for r in data["records"] if r["status"] == "SUCCESS"]
    served = {r["name"]: r["serving"] for r in ok if r.get("serving")}
    assert set(served) == {r["name"] for r in ok if not r["name"].startswith("lead")}  # Lead-k runs no model
    cfg = data["config"]["eval"]
    assert {(s["prompts"], s["new_tokens"]) for s in served.values()} == {(cfg["serving_prompts"],
                                                                          cfg["serving_new_tokens"])}
    assert served["lora"]["layers_merged"] > 0 and served["zero-shot"]["layers_merged"] == 0
    pt = next(r for r in ok if r["name"] == "prompt-tuning")
    assert served["prompt-tuning"]["positions_added"] == pt["params"]["positions_added"] > 0
    assert all(s["tokens_per_s"] > 0 and s["first_token_s"] > 0 for s in served.values())
    section = (run / "report.md").read_text().split("## Serving cost as deployed", 1)[1].split("\n## ", 1)[0]
    assert f"| lora | {served['lora']['layers_merged']} |" in section
    assert f"{served['prompt-tuning']['prompt_tokens_mean']:.0f} + {pt['params']['positions_added']}" in section


class _Text(HTMLParser):
    """The text of an HTML page by element: headings, paragraphs, cells, list items; image alts."""

    def __init__(self):
        super().__init__()
        self.stack, self.found, self.alts = [], {"h": [], "p": [], "td": [], "li": []}, []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.alts.append(dict(attrs)["alt"])
        elif tag in ("h1", "h2", "p", "td", "th", "li"):
            self.stack.append([tag, ""])

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1][0] == tag:
            kind, text = self.stack.pop()
            self.found[{"h1": "h", "h2": "h", "th": "td"}.get(kind, kind)].append(" ".join(text.split()))

    def handle_data(self, data):
        if self.stack:
            self.stack[-1][1] += data


def _markdown_parts(text: str) -> dict:
    found = {"h": [], "p": [], "td": [], "li": [], "img": []}
    for line in text.splitlines():
        line = line.replace("`", "")
        if line.startswith("> **") and line.endswith("**"):  # the decision, boxed (html: p class="decision")
            line = line[4:-2]
        if line.startswith("|---"):
            continue
        if line.startswith("#"):
            found["h"].append(line.lstrip("# "))
        elif line.startswith("|"):
            found["td"] += [cell.strip() for cell in line.strip("|").split(" | ")]
        elif line.startswith("- "):
            found["li"].append(line[2:])
        elif line.startswith("!["):
            found["img"].append(line[2:line.index("](")])
        elif line.strip():
            found["p"].append(" ".join(line.split()))
    return found


@pytest.mark.e2e
def test_html_and_markdown_reports_hold_the_same_sections(run, tmp_path):
    """Both come from one description of the sections: every heading, paragraph, table cell, list item and
    figure of report.md is in report.html, in the same order of sections, and the HTML has no other section."""
    md = _markdown_parts((run / "report.md").read_text())
    page = _Text()
    page.feed((run / "report.html").read_text())
    assert md["h"] == page.found["h"]
    for kind in ("p", "td", "li"):
        assert md[kind] == page.found[kind], kind
    assert md["img"] == page.alts and len(md["img"]) == len(set(PLOTS) - NOT_IN_SMOKE)
    for needed in ("Where the time went", "Notes", "Which method to pick", "Every record", "Budget"):
        assert needed in md["h"]
    assert md["h"].index("Which method to pick") == 1  # the answer first: the quality-vs-cost picture and verdict
    assert "quality_vs_cost" in (run / "report.md").read_text().split("## Every record")[0]
    assert any(p.startswith("Decoding: greedy") or "Decoding: greedy" in p for p in md["p"])


def _record(name, kind, rouge2, trained=True, epochs=1, samples=5):
    per = {"mean": rouge2, "ci95": [rouge2 - 1, rouge2 + 1]}
    rec = {"name": name, "kind": kind, "status": "SUCCESS", "method": name,
           "eval": {"scores": {k: per for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")}},
           "params": {"trainable": 1000 if trained else 0},
           "phases": {"generation": {"wall_s": 2.0, "peak_rss_mb": 100.0,
                                     "samples": [{"t_s": i, "cpu_pct": 90.0, "rss_mb": 100.0}
                                                 for i in range(samples)]}}}
    if trained:
        rec["train"] = {"train_time_s": 10.0, "lr_per_step": [1e-4, 5e-5, 0.0], "val_loss_per_epoch": [1.0] * epochs,
                        "train_loss_per_step": [2.0, 1.5, 1.0], "train_tokens": 300}
    return rec


DESCRIBED = metrics.catalogue(metrics.chosen(["rouge"]))


def test_plots_are_drawn_only_where_they_carry_information(tmp_path):
    baselines = {"records": [_record("zero-shot", "baseline", 3.0, trained=False),
                             _record("lead-1", "baseline", 5.0, trained=False, samples=1)]}
    assert quality_vs_cost(baselines, tmp_path / "q.png") is None  # nothing trained: no cost to plot against
    assert lr_schedule(baselines, tmp_path / "l.png") is None
    one_epoch = {"records": [*baselines["records"], _record("lora", "method", 4.0)], "metrics": DESCRIBED}
    assert val_loss(one_epoch, tmp_path / "v.png") is None  # one point per method: the table says it
    assert val_loss({"records": [_record("lora", "method", 4.0, epochs=2)]}, tmp_path / "v.png") is not None
    assert quality_vs_cost(one_epoch, tmp_path / "q.png") is not None
    assert resource_timelines({"records": [_record("lead-1", "baseline", 5.0, False, samples=1)]},
                              tmp_path / "r.png") is None


@pytest.mark.e2e
def test_tensorboard_holds_hparams_and_predictions(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb" / "lora"), size_guidance={"tensors": 0})
    events.Reload()
    assert "test/predictions/text_summary" in events.Tags()["tensors"]
    shown = events.Tensors("test/predictions/text_summary")[0].tensor_proto.string_val[0].decode()
    first = json.loads((run / "lora" / "predictions.jsonl").read_text().splitlines()[0])
    assert first["prediction"] in shown and first["reference"] in shown
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["record"].string_value == "lora"
    data = json.loads((run / "results.json").read_text())
    lora = next(r for r in data["records"] if r["name"] == "lora")
    assert info.hparams["train.lr_used"].number_value == pytest.approx(lora["train"]["lr"])
    assert info.hparams["method.r"].number_value == lora["settings"]["r"]


@pytest.mark.e2e
def test_merge_refuses_runs_that_cannot_be_compared(run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((run / "results.json").read_text())
    data["config"]["model"]["name"] = "random:gpt2-tiny"
    data["config"]["eval"]["max_new_tokens"] = 99
    (other / "results.json").write_text(json.dumps(data))
    assert main(["report", str(run), str(other), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model random:llama-tiny vs random:gpt2-tiny" in err
    assert "--allow-different" in err and not (tmp_path / "m").exists()
    # allowed: every row labelled by run, the differences named, no seed pooling across runs
    assert main(["report", str(run), str(other), "--out", str(tmp_path / "m"), "--allow-different"]) == 0
    text = (tmp_path / "m" / "report.md").read_text()
    assert "The runs differ in: s vs other: model random:llama-tiny vs random:gpt2-tiny; " in text
    assert "eval.max_new_tokens 8 vs 99" in text
    assert "| s/lora | SUCCESS |" in text and "| other/lora | SUCCESS |" in text
    assert "## Across seeds" not in text  # s/lora and other/lora are not two seeds of one method


@pytest.mark.e2e
def test_merge_never_writes_into_a_run(run, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(run / "results.json", copy / "results.json")
    before = (copy / "results.json").read_bytes()
    for out in (copy, run, run / "tb" / "merged", copy / "deeper" / "still"):  # a run, or anywhere inside one
        assert main(["report", str(run), str(copy), "--out", str(out)]) == 2
        assert "lies inside the run" in capsys.readouterr().err
    assert not (run / "tb" / "merged").exists() and not (copy / "deeper").exists()
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(run / "results.json", other / "results.json")  # not a merged run, but holds results
    assert main(["report", str(run), str(copy), "--out", str(other)]) == 2
    assert "already holds results" in capsys.readouterr().err
    assert (copy / "results.json").read_bytes() == before


@pytest.mark.e2e
def test_every_record_has_its_predictions_under_its_name_and_in_tensorboard(run):
    """Issue 25's bug: Lead-k wrote its predictions to lead/ while its record is lead-1, so TensorBoard (which finds
    predictions by record name) never showed them. Every record's predictions are found from its name."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = json.loads((run / "results.json").read_text())
    for rec in data["records"]:
        lines = (run / rec["name"] / "predictions.jsonl").read_text().splitlines()
        assert [json.loads(line)["id"] for line in lines] == [row["id"] for row in rec["eval"]["per_article"]]
        events = EventAccumulator(str(run / "tb" / rec["name"]), size_guidance={"tensors": 0})
        events.Reload()
        assert "test/predictions/text_summary" in events.Tags()["tensors"], rec["name"]
