"""`tunebench data show --estimate`: a time per record measured here in about a minute, adding up to the total,
and within 2x of what the comparison then takes (issue 23)."""

import json
import re
import time

import pytest

from tunebench.cli import main

RANGE = r"(\d+)-(\d+) s"


def _estimate(capsys, *settings) -> tuple[str, float, float]:
    assert main(["data", "show", "--preset", "smoke", "--estimate", "--set", *settings]) == 0
    captured = capsys.readouterr()
    block = captured.out.split("estimated time of `compare` here", 1)[1]
    assert "tunebench: estimating: lora: two training steps" in captured.err  # progress while it runs
    return block, _seconds(re.search(r"total: about ([\d.]+ (?:s|min))", block).group(1)), \
        _seconds(re.search(r"at least ([\d.]+ (?:s|min))", block).group(1))


def _seconds(text: str) -> float:
    value, unit = text.split()
    return float(value) * (60 if unit == "min" else 1)


def test_estimate_names_every_record_and_adds_up(capsys):
    block, high, low = _estimate(capsys, "methods=[lora,last-block]")
    loading = float(re.search(r"loading (\d+) s", block).group(1))
    generation = [(float(a), float(b)) for a, b in re.findall(r"generation " + RANGE, block)]
    assert re.search(r"^  lora: training \d+ s \(\d+ steps x [\d.]+ s, peak memory [\d,]+ MB\)", block, re.M)
    assert re.search(r"^  last-block: training", block, re.M) and re.search(r"^  zero-shot: generation", block, re.M)
    training = [float(x) for x in re.findall(r"training (\d+) s", block)]
    validation = [float(x) for x in re.findall(r"validation (\d+) s", block)]
    # rounded per line: the lines add up to the total within their rounding
    assert abs(loading + sum(b for _, b in generation) + sum(training) + sum(validation) - high) <= 6 + 3
    assert low <= high


def test_estimate_shows_each_methods_peak_memory_and_warns_when_the_machine_has_less(capsys, monkeypatch):
    """The peak memory of each method's measured steps (the run's own training step) is printed; a machine with less
    memory than a method's steps took gets one warning line naming that method and the settings that lower it."""
    import psutil

    block, _, _ = _estimate(capsys, "methods=[lora,last-block]")
    lines = re.findall(r"^  (\S+): training .*peak memory ([\d,]+) MB", block, re.M)
    peaks = {name: float(mb.replace(",", "")) for name, mb in lines}
    assert set(peaks) == {"lora", "last-block"} and all(mb > 100 for mb in peaks.values())  # a process's RSS
    assert "warning:" not in block  # this machine has the memory
    small = psutil.virtual_memory()._replace(total=int(min(peaks.values()) * 0.5 * 2**20))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: small)
    block, _, _ = _estimate(capsys, "methods=[lora,last-block]")
    warnings = [line for line in block.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "train.activation_checkpointing=true or train.memory_limit_mb=" in warnings[0]
    assert re.match(r"warning: (lora|last-block)'s training steps peaked at", warnings[0])


@pytest.mark.e2e
def test_estimate_is_within_2x_of_the_comparison_it_estimates(capsys, tmp_path):
    """The estimate, then the run it estimates, back to back. The whole run takes about a second, so another test
    worker's load starting or ending between the two can move it past 2x: a second try (estimate and run again)
    decides; an estimate off by more than 2x fails both."""
    settings = ["methods=[lora,last-block]", "eval.baselines=[lead,zero-shot]"]
    tries = []
    for attempt in ("r1", "r2"):
        tick = time.perf_counter()
        _, high, low = _estimate(capsys, *settings)
        assert time.perf_counter() - tick < 60
        assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", attempt, "--quiet",
                     "--set", *settings]) == 0
        data = json.loads((tmp_path / attempt / "results.json").read_text())
        measured = data["prepare_s"] + sum(p["wall_s"] for r in data["records"] for p in r["phases"].values())
        tries.append((low, high, measured))
        if measured / 2 <= high and low <= measured * 2:
            return
    pytest.fail(f"estimate (low, high) and measured seconds, twice: {tries}")


def test_data_show_without_estimate_says_how_to_get_one(capsys):
    assert main(["data", "show", "--preset", "smoke"]) == 0
    assert "add --estimate" in capsys.readouterr().out
