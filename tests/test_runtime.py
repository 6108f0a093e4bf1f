"""`train.precision=auto` on a CPU: bf16 only where this machine's bf16 matmuls are measured to pay (issue 28: on a
2-core Xeon VM with AVX512-BF16 and no AMX, bf16 matmuls ran at 0.55x fp32, and `auto` chose bf16 by the flag)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tunebench import runtime
from tunebench.cli import main
from tunebench.report.sections import precision_line
from tunebench.runtime import BF16_PAYS, Runtime, matmul_rate, resolve_runtime


@pytest.fixture
def rates(monkeypatch, tmp_path):
    """A CPU with native bf16 instructions whose matmul rates are what the test says; counts the measurements."""
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    table = {"calls": 0}

    def rate(dtype, **kwargs):
        table["calls"] += 1
        return table[dtype]

    monkeypatch.setattr(runtime, "matmul_rate", rate)
    return table


@pytest.mark.parametrize("fp32, bf16, chosen", [(268.0, 148.0, "fp32"), (100.0, 400.0, "bf16"),
                                                (100.0, 100.0 * BF16_PAYS - 1, "fp32"),
                                                (100.0, 100.0 * BF16_PAYS, "bf16")])
def test_auto_trains_in_bf16_only_where_it_is_measured_faster(rates, fp32, bf16, chosen):
    rates.update({torch.float32: fp32, torch.bfloat16: bf16})
    chosen_now = resolve_runtime("auto", device="cpu")
    assert chosen_now.precision == chosen
    assert f"measured at {bf16:.0f} GFLOP/s against fp32's {fp32:.0f} ({bf16 / fp32:.2f}x" in chosen_now.chosen_because
    assert chosen_now.as_dict()["precision_chosen_because"] == chosen_now.chosen_because
    # measured once per machine: the next run reads the cache (the same answer, no second measurement)
    assert rates["calls"] == 2
    assert resolve_runtime("auto", device="cpu") == chosen_now and rates["calls"] == 2


def test_auto_without_native_bf16_is_fp32_without_measuring(rates, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    chosen = resolve_runtime("auto", device="cpu")
    assert chosen.precision == "fp32" and "no native bf16" in chosen.chosen_because and rates["calls"] == 0


@pytest.mark.parametrize("asked", ["bf16", "fp32"])
def test_a_precision_asked_for_is_taken_as_asked(rates, asked):
    chosen = resolve_runtime(asked, device="cpu")
    assert (chosen.precision, chosen.chosen_because, rates["calls"]) == (asked, "", 0)
    assert "precision_chosen_because" not in chosen.as_dict()


def test_the_measurement_is_real():
    assert matmul_rate(torch.float32, size=256, repeats=2, rounds=2) > 0.1  # GFLOP/s


def test_the_report_says_why(rates):
    rates.update({torch.float32: 268.0, torch.bfloat16: 148.0})
    env = resolve_runtime("auto", device="cpu").as_dict()
    assert precision_line(env).startswith("Precision fp32, chosen by auto: bf16 matmuls measured at 148 GFLOP/s")
    assert precision_line(resolve_runtime("fp32", device="cpu").as_dict()) == ""


def test_a_resumed_run_keeps_the_precision_it_started_with():
    started = {"precision": "bf16", "precision_chosen_because": "auto: bf16 matmuls measured at 400 GFLOP/s"}
    now = Runtime("cpu", "fp32", 2, "auto: bf16 matmuls measured at 90 GFLOP/s")
    kept = now.resumed(started)
    assert kept.precision == "bf16" and kept.chosen_because.endswith("400 GFLOP/s, when the run started")
    asked = Runtime("cpu", "fp32", 2)  # set in the config: a change there is refused by the config check
    assert asked.resumed(started) is asked


@pytest.mark.e2e
def test_compare_resume_trains_in_the_started_precision(rates, tmp_path, monkeypatch):
    """A run started where `auto` measured bf16 faster, resumed where it now measures fp32 faster (another machine
    of a cluster, or the cache cleared): the method trained again trains in bf16, as the others did."""
    from tunebench import compare

    rates.update({torch.float32: 100.0, torch.bfloat16: 400.0})
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "r", "--quiet", "--set",
                 "methods=[lora]", "eval.baselines=[]", "train.epochs=1", "train.precision=auto"]) == 0
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["environment"]["precision"] == "bf16"
    shutil.rmtree(tmp_path / "r" / "lora")
    shutil.rmtree(tmp_path / "cache")
    rates.update({torch.float32: 400.0, torch.bfloat16: 100.0})
    seen = []
    real_train = compare.train
    monkeypatch.setattr(compare, "train", lambda *args, **kwargs: seen.append(args[5].precision) or
                        real_train(*args, **kwargs))
    assert main(["compare", "--resume", str(tmp_path / "r"), "--quiet"]) == 0
    assert seen == ["bf16"]
