"""Issue 5: plots, a self-contained HTML report, TensorBoard events and resource figures, all from results.json."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib import image

from tunebench.cli import main
from tunebench.plots import OPTIONAL, PLOTS, pareto_front


@pytest.fixture
def run(smoke_run):
    return smoke_run


def test_every_plot_is_drawn_and_not_blank(run):
    for name in set(PLOTS) - OPTIONAL:  # the smoke run searches no learning rate
        path = run / "plots" / name
        assert path.stat().st_size > 5_000, name
        pixels = image.imread(path)
        assert pixels.std() > 0.01, name  # not one flat colour


def test_html_report_is_self_contained(run):
    text = (run / "report.html").read_text()
    assert text.count('src="data:image/png;base64,') == len(PLOTS) - len(OPTIONAL)
    assert not re.search(r"(href|src)=\"(?!data:)", text)  # nothing to fetch: no links, scripts or files
    assert "http://" not in text and "https://" not in text
    data = json.loads((run / "results.json").read_text())
    for rec in data["records"]:
        assert f"<td>{rec['name']}</td>" in text


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
        setup, search, train, val, gen, total = (float(x) for x in row.strip("| ").split(" | ")[1:])
        assert total == pytest.approx(setup + search + train + val + gen, abs=0.15) and search == 0
        assert train > 0 if rec.get("train") else train == 0


def test_tensorboard_events_hold_the_training_curves(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = json.loads((run / "results.json").read_text())
    lora = next(r for r in data["records"] if r["name"] == "lora")
    events = EventAccumulator(str(run / "tb" / "lora"))
    events.Reload()
    logged = [e.value for e in events.Scalars("train/loss")]
    assert logged == pytest.approx(lora["train"]["train_loss_per_step"], rel=1e-6)
    assert len(events.Scalars("val/loss")) == len(lora["train"]["val_loss_per_epoch"])


def test_report_rebuilds_from_results_alone_and_merges_runs(run, tmp_path):
    before = (run / "report.md").read_text()
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(run / "results.json", copy / "results.json")
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.md").read_text() == before
    assert (copy / "report.html").is_file() and (copy / "plots" / "rouge.png").is_file()
    assert main(["report", str(run), str(copy), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    names = [r["name"] for r in merged["records"]]
    assert "s/lora" in names and "copy/lora" in names and merged["merged_from"] == ["s", "copy"]
    assert "- s/lora vs copy/lora: " in (tmp_path / "merged" / "report.md").read_text()


def test_pareto_front():
    assert pareto_front([1, 2, 3, 4], [1.0, 3.0, 2.0, 4.0]) == [0, 1, 3]


def test_report_renders_in_headless_chromium(run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("TUNEBENCH_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (TUNEBENCH_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("chromium not installed (CI installs it and sets TUNEBENCH_REQUIRE_BROWSER)")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    (run / "report.html").as_uri()], capture_output=True, timeout=120, check=True)
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[0] >= 1000
    assert pixels.std() > 0.05  # text, table and plots, not a blank page
    assert (np.abs(pixels - pixels[0, 0]).sum(axis=-1) > 0.1).mean() > 0.02
