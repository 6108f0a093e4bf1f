"""Issue 7: a compare killed with SIGKILL and resumed ends with the results of an uninterrupted run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tunebench.cli import main

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


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A compare killed with SIGKILL while last-block, the second method, trains: lora's record is finished and
    last-block's checkpoint is on disk. Tests resume or damage copies of it."""
    runs = tmp_path_factory.mktemp("killed")
    run = runs / "k"
    killed = _kill_when(_compare(runs, "k"), lambda: (run / "last-block" / "checkpoint" / "state.json").exists())
    assert killed, "the run finished before it could be killed"
    time.sleep(0.2)
    return run


@pytest.mark.e2e
def test_killed_and_resumed_equals_uninterrupted(reference, killed, tmp_path):
    """One SIGKILL case for `compare` (issue 25): killed inside the second method's training, the resume keeps the
    finished method and continues the other from its checkpoint. (Every method's resume from a checkpoint equals
    its uninterrupted training: test_every_method.py; `train`, a later look and torchrun: below and
    test_distributed.py.)"""
    run = tmp_path / "k"
    shutil.copytree(killed, run)
    assert any(r["name"] == "lora" for r in json.loads((run / "results.json").read_text())["records"])
    checkpoint = run / "last-block" / "checkpoint"
    if checkpoint.is_dir() and not checkpoint.with_name("checkpoint.old").exists():
        # the kill's hardest moment: a new checkpoint in place, the one before not yet removed (the next save
        # once failed on it, "Directory not empty", under torchrun's jobs mode)
        shutil.copytree(checkpoint, checkpoint.with_name("checkpoint.old"))
    subprocess.run(_compare(tmp_path, "k", "--resume", str(run)), check=True, capture_output=True, timeout=600)
    assert _comparable(run) == _comparable(reference)
    for method in ("lora", "last-block"):
        assert (run / method / "weights.safetensors").read_bytes() == \
            (reference / method / "weights.safetensors").read_bytes()
        assert not (run / method / "checkpoint").exists()


DIVERGING = ["lora", "prompt-tuning", "prefix-tuning", "last-block"]
"""A method before the diverging one, and after it another soft-prompt method and one that trains a block."""


@pytest.mark.e2e
def test_a_diverging_method_fails_alone(tmp_path, monkeypatch):
    import torch

    from tunebench.methods import prompt_tuning

    real = prompt_tuning.initial_prompt
    monkeypatch.setattr(prompt_tuning, "initial_prompt",  # inject a NaN into this method's parameters only
                        lambda *a: real(*a).index_fill_(0, torch.tensor([0]), float("nan")))
    args = ["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "nan", "--quiet", "--set",
            f"methods=[{','.join(DIVERGING)}]"]
    assert main(args) == 0
    data = json.loads((tmp_path / "nan" / "results.json").read_text())
    status = {r["name"]: r["status"] for r in data["records"]}
    assert status == {"lead-1": "SUCCESS", "zero-shot": "SUCCESS",
                      **{name: "FAILED" if name == "prompt-tuning" else "SUCCESS" for name in DIVERGING}}
    failed = next(r for r in data["records"] if r["name"] == "prompt-tuning")
    assert "training loss became" in failed["error"] and "at step 1" in failed["error"]
    assert "prompt-tuning FAILED: FloatingPointError" in (tmp_path / "nan" / "report.md").read_text()


@pytest.mark.e2e
def test_train_resume_continues_a_killed_single_method_run(reference, tmp_path):
    """One SIGKILL case for `train`: resumed, its one record is the uninterrupted run's, which is the compare's lora
    record on the same settings (`train --method M` is a compare of M alone)."""
    base = [sys.executable, "-m", "tunebench", "train", "--runs-dir", str(tmp_path), "--quiet"]
    settings = ["--preset", "smoke", "--set", "train.epochs=3", "train.batch_size=2", "train.checkpoint_every_steps=1"]
    run = tmp_path / "k"
    assert _kill_when([*base, "--method", "lora", "--name", "k", *settings],
                      lambda: (run / "lora" / "checkpoint" / "state.json").exists())
    subprocess.run([*base, "--resume", str(run)], check=True, capture_output=True, timeout=600)
    assert _comparable(run) == {"lora": _comparable(reference)["lora"]}
    assert (run / "lora" / "weights.safetensors").read_bytes() == \
        (reference / "lora" / "weights.safetensors").read_bytes()


@pytest.mark.e2e
def test_resume_refuses_a_damaged_checkpoint_before_running_anything(killed, tmp_path, capsys):
    for index, (file, content) in enumerate([("state.json", "{\"position\": "),
                                             ("state.safetensors", "not a tensor file"),
                                             ("state.json", "{\"position\": {}}")]):
        copy = tmp_path / f"copy{index}"
        shutil.copytree(killed, copy)
        checkpoint = copy / "last-block" / "checkpoint"
        if not (checkpoint / file).exists():  # killed between the two renames: the .old folder is the one read
            checkpoint = checkpoint.with_name("checkpoint.old")
        (checkpoint / file).write_text(content)
        before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != ".tunebench.lock"}
        capsys.readouterr()
        assert main(["compare", "--resume", str(copy), "--quiet"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "is damaged" in lines[0] and "last-block" in lines[0], lines
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


@pytest.mark.e2e
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


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run on a folder of per-split CSV files named by a relative data.source: the tests copy the run and
    its data side by side into their own folder, change something there and resume from there."""
    root = tmp_path_factory.mktemp("finished")
    _split_files(root / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert main(["compare", "--runs-dir", str(root), "--name", "r", "--quiet", "--preset", "smoke", "--set",
                     "methods=[lora]", "eval.baselines=[lead]", "train.epochs=1", "data.source=./data"]) == 0
    return root


def _resume_a_copy(finished, tmp_path, monkeypatch, capsys, change) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `compare --resume` on a copy of the finished run changed by `change`."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    change(tmp_path / "r", tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # data.source=./data: this copy's data
    capsys.readouterr()
    code = main(["compare", "--resume", str(tmp_path / "r"), "--quiet"])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.e2e
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
def test_resume_refuses_what_changed_since_the_run_started(finished, tmp_path, monkeypatch, capsys, what, change,
                                                           message):
    """Issue 24: a resume continues from what it checks: data and config hashed/stored when the run started."""
    code, _, err = _resume_a_copy(finished, tmp_path, monkeypatch, capsys, change)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err, err


@pytest.mark.e2e
def test_resume_runs_again_a_finished_method_whose_folder_is_gone(finished, tmp_path, monkeypatch, capsys):
    code, out, err = _resume_a_copy(finished, tmp_path, monkeypatch, capsys, lambda run, data: shutil.rmtree(run /
                                                                                                           "lora"))
    assert code == 0, err
    assert "lora: its weights" in out + err
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

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "run_compare", interrupted)
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "r", "--quiet"]) == 130
    assert f"`tunebench compare --resume {tmp_path / 'r'}`" in capsys.readouterr().err
