"""`tunebench data show --estimate`: a time per record measured here, adding up to the total."""

import re

from tunebench.cli import main


def test_estimate_names_every_record_and_adds_up(capsys):
    assert main(["data", "show", "--preset", "smoke", "--estimate", "--set", "methods=[lora,last-block]"]) == 0
    out = capsys.readouterr().out
    block = out.split("estimated time of `compare` here", 1)[1]
    loading = float(re.search(r"loading (\d+) s", block).group(1))
    seconds = [float(x) for x in re.findall(r"generation (\d+) s", block)]
    assert re.search(r"^  lora: training \d+ s \(\d+ steps x [\d.]+ s\)", block, re.M)
    assert re.search(r"^  last-block: training", block, re.M) and re.search(r"^  zero-shot: generation", block, re.M)
    training = [float(x) for x in re.findall(r"training (\d+) s", block)]
    validation = [float(x) for x in re.findall(r"validation (\d+) s", block)]
    total = float(re.search(r"total: about ([\d.]+) min", block).group(1)) * 60
    # rounded per line: the lines add up to the total within their rounding
    assert abs(loading + sum(seconds) + sum(training) + sum(validation) - total) <= 6 + 0.5 * 60 * 0.1


def test_data_show_without_estimate_says_how_to_get_one(capsys):
    assert main(["data", "show", "--preset", "smoke"]) == 0
    assert "add --estimate" in capsys.readouterr().out
