"""Issue 7: a compare killed with SIGKILL and resumed ends with the results of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tunebench.methods import METHODS

SETTINGS = ["methods=[lora,last-block]", "eval.baselines=[zero-shot]", "train.epochs=3", "train.batch_size=2",
            "train.checkpoint_every_steps=1"]


def _compare(runs, name, *extra):
    cmd = [sys.executable, "-m", "tunebench", "compare", "--runs-dir", str(runs), "--name", name, "--quiet", *extra]
    if "--resume" not in extra:  # a resumed run keeps its own config: --preset and --set are refused with --resume
        cmd += ["--preset", "smoke", "--set", *SETTINGS]
    return cmd


def _comparable(run):
    data = json.loads((run / "results.json").read_text())
    out = {}
    for rec in data["records"]:
        train = rec.get("train") or {}
        out[rec["name"]] = (rec["status"], train.get("train_loss_per_step"), train.get("val_loss_per_epoch"),
                            train.get("best_epoch"), rec["eval"]["per_article"])
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    runs = tmp_path_factory.mktemp("ref")
    subprocess.run(_compare(runs, "ref"), check=True, capture_output=True, timeout=600)
    return runs / "ref"


def _kill_when(cmd, ready, timeout=300):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return killed


def _lora_done(run):
    try:
        return any(r["name"] == "lora" for r in json.loads((run / "results.json").read_text())["records"])
    except (OSError, ValueError):
        return False


@pytest.mark.parametrize("when", ["lora checkpoint written", "lora finished", "last-block checkpoint written"])
def test_killed_and_resumed_equals_uninterrupted(reference, tmp_path, when):
    run = tmp_path / "k"
    ready = {"lora checkpoint written": lambda: (run / "lora" / "checkpoint" / "state.json").exists(),
             "lora finished": lambda: _lora_done(run),
             "last-block checkpoint written": lambda: (run / "last-block" / "checkpoint" / "state.json").exists()}
    killed = _kill_when(_compare(tmp_path, "k"), ready[when])
    assert killed, "the run finished before it could be killed"
    json.loads((run / "results.json").read_text())  # never left half-written
    subprocess.run(_compare(tmp_path, "k", "--resume", str(run)), check=True, capture_output=True, timeout=600)
    assert _comparable(run) == _comparable(reference)
    for method in ("lora", "last-block"):
        assert (run / method / "weights.safetensors").read_bytes() == \
            (reference / method / "weights.safetensors").read_bytes()
        assert not (run / method / "checkpoint").exists()


def test_resume_of_something_that_is_not_a_run(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tunebench", "compare", "--resume", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "cannot resume" in proc.stderr


def test_a_diverging_method_fails_alone(tmp_path, monkeypatch):
    import torch

    from tunebench.cli import main
    from tunebench.methods import prompt_tuning

    real = prompt_tuning.initial_prompt
    monkeypatch.setattr(prompt_tuning, "initial_prompt",  # inject a NaN into this method's parameters only
                        lambda *a: real(*a).index_fill_(0, torch.tensor([0]), float("nan")))
    args = ["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "nan", "--quiet"]
    assert main(args) == 0
    data = json.loads((tmp_path / "nan" / "results.json").read_text())
    status = {r["name"]: r["status"] for r in data["records"]}
    assert status == {"lead-1": "SUCCESS", "zero-shot": "SUCCESS",
                      **{name: "FAILED" if name == "prompt-tuning" else "SUCCESS" for name in METHODS}}
    failed = next(r for r in data["records"] if r["name"] == "prompt-tuning")
    assert "training loss became" in failed["error"] and "at step 1" in failed["error"]
    assert "prompt-tuning FAILED: FloatingPointError" in (tmp_path / "nan" / "report.md").read_text()


def test_train_resume_continues_a_killed_single_method_run(tmp_path):
    base = [sys.executable, "-m", "tunebench", "train", "--runs-dir", str(tmp_path), "--quiet"]
    settings = ["--preset", "smoke", "--set", "train.epochs=3", "train.batch_size=2", "train.checkpoint_every_steps=1"]
    subprocess.run([*base, "--method", "lora", "--name", "ref", *settings], check=True, capture_output=True,
                   timeout=600)
    run = tmp_path / "k"
    assert _kill_when([*base, "--method", "lora", "--name", "k", *settings],
                      lambda: (run / "lora" / "checkpoint" / "state.json").exists())
    subprocess.run([*base, "--resume", str(run)], check=True, capture_output=True, timeout=600)
    assert _comparable(run) == _comparable(tmp_path / "ref")


def test_resume_refuses_a_damaged_checkpoint_before_running_anything(tmp_path):
    import shutil

    run = tmp_path / "k"
    killed = _kill_when(_compare(tmp_path, "k"), lambda: (run / "lora" / "checkpoint" / "state.json").exists())
    assert killed, "the run finished before it could be killed"
    time.sleep(0.2)
    damages = {"state.json": "{\"position\": ", "state.safetensors": "not a tensor file"}
    for index, (file, content) in enumerate([*damages.items(), ("state.json", "{\"position\": {}}")]):
        copy = tmp_path / f"copy{index}"
        shutil.copytree(run, copy)
        checkpoint = copy / "lora" / "checkpoint"
        if not (checkpoint / file).exists():  # killed between the two renames: the .old folder is the one read
            checkpoint = checkpoint.with_name("checkpoint.old")
        (checkpoint / file).write_text(content)
        before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != ".tunebench.lock"}
        done = subprocess.run(_compare(tmp_path, f"copy{index}", "--resume", str(copy)), capture_output=True,
                              text=True, timeout=300)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and "is damaged" in lines[0] and "lora" in lines[0], done.stderr
        after = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != ".tunebench.lock"}
        assert after == before  # nothing run, nothing written


LOOKS = ["methods=[lora,prompt-tuning]", "eval.baselines=[lead,zero-shot]", "eval.decide=true", "train.epochs=1"]


def _looks_cmd(runs, name, *extra):
    cmd = [sys.executable, "-m", "tunebench", "compare", "--runs-dir", str(runs), "--name", name, "--quiet", *extra]
    return cmd if "--resume" in extra else cmd + ["--preset", "smoke", "--set", *LOOKS]


def _inside_a_later_look(run):
    """A look after the first is under way and at least one record already has its articles."""
    try:
        data = json.loads((run / "results.json").read_text())
    except (OSError, ValueError):
        return False
    looks = data.get("looks") or {}
    first = len(looks.get("ids", [[]])[0])
    return bool(looks.get("pending")) and any(len(r["eval"]["per_article"]) > first for r in data["records"]
                                              if r["status"] == "SUCCESS")


def test_sequential_evaluation_end_to_end_and_killed_inside_a_look(tmp_path):
    """Issue 22 on `smoke`: ties at the first look get more articles, each record's predictions and per-article
    scores grow with its looks, the report shows the looks; killed inside a later look and resumed, the run ends
    as the uninterrupted one."""
    subprocess.run(_looks_cmd(tmp_path, "ref"), check=True, capture_output=True, timeout=600)
    ref = tmp_path / "ref"
    data = json.loads((ref / "results.json").read_text())
    looks = data["looks"]
    assert looks["sizes"] == [4, 8, 12, 16, 20] and len(looks["ids"]) > 1 and looks["taken"]
    split = json.loads((ref / "splits.json").read_text())
    seen = set(split["train"]) | set(split["val"])
    later = [i for batch in looks["ids"][1:] for i in batch]
    assert later == split["test_reserve"][:len(later)] and not seen & set(later)  # never a training pair
    for rec in data["records"]:
        ids = [row["id"] for row in rec["eval"]["per_article"]]
        assert ids == [i for batch in looks["ids"][:len(ids) // 4] for i in batch]  # whole looks, in order
        lines = (ref / rec["name"] / "predictions.jsonl").read_text().splitlines()
        assert [json.loads(line)["id"] for line in lines] == ids
    assert "Sequential evaluation: " in (ref / "report.md").read_text()
    assert data["verdict"]["looks_taken"] == len(looks["ids"])

    run = tmp_path / "k"
    assert _kill_when(_looks_cmd(tmp_path, "k"), lambda: _inside_a_later_look(run)), "finished before the kill"
    subprocess.run(_looks_cmd(tmp_path, "k", "--resume", str(run)), check=True, capture_output=True, timeout=600)
    resumed = json.loads((run / "results.json").read_text())
    assert {k: resumed["looks"][k] for k in ("sizes", "ids", "taken", "stopped")} == \
        {k: looks[k] for k in ("sizes", "ids", "taken", "stopped")}
    assert _comparable(run) == _comparable(ref)
    assert resumed["verdict"]["action"] == data["verdict"]["action"]


def _split_files(folder, rows=(20, 4, 8)):
    """A folder of per-split CSV files (train, validation, test) of article/summary pairs."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    for name, count in zip(("train", "validation", "test"), rows, strict=True):
        with (folder / f"{name}.csv").open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["id", "article", "summary"])
            for i in range(count):
                out.writerow([f"{name}{i}", f"In {name} town {i} the council met on Monday and agreed a new plan "
                              f"for the roads, the schools and the library after a long debate number {i}.",
                              f"Town {i} agrees a plan."])
    return folder


def _run_and_resume(tmp_path, change) -> subprocess.CompletedProcess:
    data = _split_files(tmp_path / "data")
    settings = ["methods=[lora]", "eval.baselines=[lead]", "train.epochs=1", f"data.source={data}"]
    base = [sys.executable, "-m", "tunebench", "compare", "--runs-dir", str(tmp_path), "--quiet"]
    subprocess.run([*base, "--name", "r", "--preset", "smoke", "--set", *settings], check=True, capture_output=True,
                   timeout=600)
    change(tmp_path / "r", data)
    return subprocess.run([*base, "--resume", str(tmp_path / "r")], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("what, change, message", [
    ("training data", lambda run, data: (data / "train.csv").write_text((data / "train.csv").read_text()
                                                                        .replace("council met", "mayor met")),
     "its data changed since the run started (the train pairs differ)"),
    ("validation data", lambda run, data: (data / "validation.csv").write_text(
        (data / "validation.csv").read_text().replace("Town 1 agrees", "Town 1 rejects")),
     "(the val pairs differ)"),
    ("config", lambda run, data: (run / "config.yaml").write_text((run / "config.yaml").read_text()
                                                                  .replace("lr: 0.001", "lr: 0.002", 1)),
     "its config.yaml no longer says what the run started with: train.lr (0.001 when started, 0.002 now)"),
])
def test_resume_refuses_what_changed_since_the_run_started(tmp_path, what, change, message):
    """Issue 24: a resume continues from what it checks: data and config hashed/stored when the run started."""
    done = _run_and_resume(tmp_path, change)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr, done.stderr


def test_resume_runs_again_a_finished_method_whose_folder_is_gone(tmp_path):
    import shutil

    done = _run_and_resume(tmp_path, lambda run, data: shutil.rmtree(run / "lora"))
    assert done.returncode == 0, done.stderr
    assert "lora: its weights" in done.stdout + done.stderr
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    lora = next(r for r in data["records"] if r["name"] == "lora")
    assert lora["status"] == "SUCCESS" and (tmp_path / "r" / "lora" / "weights.safetensors").is_file()
    # the weights trained again are the ones scored: reloaded as `summarize` loads them, they write its predictions
    from tunebench.data import load_examples, select_splits
    from tunebench.trained import load_trained, summarize_articles

    cfg, tuned, tokenizer = load_trained(tmp_path / "r", "lora")
    test = select_splits(load_examples(cfg.data), cfg.data).test
    predictions = [json.loads(line)["prediction"]
                   for line in (tmp_path / "r" / "lora" / "predictions.jsonl").read_text().splitlines()]
    assert summarize_articles(cfg, tuned, tokenizer, [ex.article for ex in test]).texts == predictions


def test_ctrl_c_names_the_run_to_resume(tmp_path, monkeypatch, capsys):
    """Issue 24: the message after Ctrl-C gives the real run folder, not a placeholder."""
    from tunebench import compare
    from tunebench.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "run_compare", interrupted)
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "r", "--quiet"]) == 130
    assert f"`tunebench compare --resume {tmp_path / 'r'}`" in capsys.readouterr().err
