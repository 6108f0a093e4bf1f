"""Issue 12: equal budgets, and a learning-rate search on validation loss that recovers from a bad learning rate."""

import copy

import pytest

from tunebench import search as search_module
from tunebench.config import load_config
from tunebench.methods import METHODS
from tunebench.runtime import resolve_runtime, seed_everything
from tunebench.train import plan, train
from tunebench.workbench import prepare

BAD_LR = 1e-5  # full fine-tuning of the tiny model works at 1e-3: this is 100x too small
GRID = [1e-5, 1e-4, 1e-3, 1e-2]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    cfg = load_config("smoke", overrides=["methods=[full]", "train.epochs=2", "train.batch_size=2",
                                          "method.full.lr_range=[1e-5,1e-2]", "search.trials=4", "search.rungs=2",
                                          "search.budget_fraction=1.0"])
    bench, _ = prepare(cfg, tmp_path_factory.mktemp("run"), show_progress=False)
    return bench


def _val_loss_at(bench, lr, tmp_path):
    seed_everything(0)
    tuned = METHODS["full"].build(copy.deepcopy(bench.base_lm), bench.cfg, bench.tokenizer)
    result = train(tuned, bench.encoded["train"], bench.encoded["val"], bench.cfg.train, lr, bench.runtime,
                   tmp_path / "w.safetensors", bench.tokenizer.pad_token_id, show_progress=False)
    return result.best_val_loss


def test_search_recovers_from_a_learning_rate_100x_too_small(bench, tmp_path):
    bad = _val_loss_at(bench, BAD_LR, tmp_path)
    found = search_module.search_lr(bench, METHODS["full"], bench.cfg, tmp_path / "search")
    assert [t["lr"] for t in found["trials"]] == GRID
    assert found["best_lr"] >= 100 * BAD_LR
    best = next(t for t in found["trials"] if t["lr"] == found["best_lr"])
    assert best["val_loss"] < bad - 0.5, (best, bad)  # far below the bad learning rate's
    assert _val_loss_at(bench, found["best_lr"], tmp_path) == pytest.approx(best["val_loss"], rel=1e-5)
    assert found["seconds"] > 0 and all(t["state"] in ("COMPLETE", "PRUNED") for t in found["trials"])


def test_a_killed_search_resumes_where_it_stopped(bench, tmp_path, monkeypatch):
    reference = search_module.search_lr(bench, METHODS["full"], bench.cfg, tmp_path / "ref")
    calls = []
    real_train = search_module.train

    def dies_on_third(*args, **kwargs):
        calls.append(args[4])
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is stopped in the middle of the third trial
        return real_train(*args, **kwargs)

    monkeypatch.setattr(search_module, "train", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        search_module.search_lr(bench, METHODS["full"], bench.cfg, tmp_path / "cut")
    first = list(calls)
    calls.clear()
    monkeypatch.setattr(search_module, "train", lambda *a, **k: (calls.append(a[4]), real_train(*a, **k))[1])
    resumed = search_module.search_lr(bench, METHODS["full"], bench.cfg, tmp_path / "cut")
    assert calls == [lr for lr in GRID if lr not in first[:2]]  # only what was not done
    strip = [{k: v for k, v in t.items() if k != "seconds"} for t in resumed["trials"]]
    assert strip == [{k: v for k, v in t.items() if k != "seconds"} for t in reference["trials"]]
    assert resumed["best_lr"] == reference["best_lr"]


@pytest.mark.parametrize("budget, amount", [("steps", 12), ("tokens", 3000)])
def test_every_method_gets_the_same_budget(bench, tmp_path, budget, amount):
    key = {"steps": "max_steps", "tokens": "max_tokens"}[budget]
    cfg = load_config("smoke", overrides=[f"train.budget={budget}", f"train.{key}={amount}", "train.batch_size=2"])
    planned = plan(bench.encoded["train"], cfg.train)
    used = {}
    for name in ("lora", "prompt-tuning"):
        tuned = METHODS[name].build(copy.deepcopy(bench.base_lm), cfg, bench.tokenizer)
        result = train(tuned, bench.encoded["train"], bench.encoded["val"], cfg.train, 1e-3, resolve_runtime("fp32"),
                       tmp_path / f"{name}.st", bench.tokenizer.pad_token_id, show_progress=False)
        used[name] = (result.steps, result.train_tokens)
        assert result.budget == planned
    assert used["lora"] == used["prompt-tuning"]
    steps, tokens = used["lora"]
    if budget == "steps":
        assert steps == amount and steps > planned["steps_per_epoch"]  # more than one pass over the data
    else:
        last = max(len(ex) for ex in bench.encoded["train"]) * 2
        assert amount <= tokens < amount + last  # the last step may go past the budget, by less than a step


def test_a_seconds_budget_stops_when_the_time_is_up(bench, tmp_path):
    cfg = load_config("smoke", overrides=["train.budget=seconds", "train.max_seconds=0.000001", "train.epochs=5"])
    tuned = METHODS["full"].build(copy.deepcopy(bench.base_lm), cfg, bench.tokenizer)
    result = train(tuned, bench.encoded["train"], bench.encoded["val"], cfg.train, 1e-3, resolve_runtime("fp32"),
                   tmp_path / "w.st", bench.tokenizer.pad_token_id, show_progress=False)
    assert result.steps == 1 and result.budget["planned_steps"] == 5 * result.budget["steps_per_epoch"]


def test_a_budget_without_its_amount_is_refused():
    from tunebench.errors import TunebenchError

    with pytest.raises(TunebenchError, match="train.budget=tokens needs train.max_tokens"):
        load_config("smoke", overrides=["train.budget=tokens"])


@pytest.mark.e2e
def test_compare_with_search_records_plots_and_reports_it(tmp_path):
    import json

    from matplotlib import image

    from tunebench.cli import main

    args = ["compare", "--preset", "smoke", "--runs-dir", str(tmp_path), "--name", "s", "--quiet", "--set",
            "methods=[lora,prompt-tuning]", "eval.baselines=[zero-shot]", "search.enabled=true", "search.trials=3",
            "train.budget=tokens", "train.max_tokens=4000"]
    assert main(args) == 0
    run = tmp_path / "s"
    data = json.loads((run / "results.json").read_text())
    report = (run / "report.md").read_text()
    for rec in data["records"][1:]:
        assert rec["train"]["lr"] == rec["search"]["best_lr"] and len(rec["search"]["trials"]) == 3
        assert rec["phases"]["search"]["wall_s"] > 0 and rec["train"]["train_tokens"] >= 4000
        assert f"| {rec['name']} | {rec['train']['lr']:.3g} (searched) |" in report
        assert not (run / rec["name"] / "search").exists()  # the journal goes once the method is done
    assert "## Learning-rate search" in report and "Every method had the same training tokens: 4,000." in report
    assert image.imread(run / "plots" / "lr_search.png").std() > 0.01



def test_a_trial_left_running_by_a_kill_is_run_again(bench, tmp_path):
    """SIGKILL leaves the trial in flight RUNNING in the journal: the resumed search runs its rate again."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    folder = tmp_path / "killed"
    folder.mkdir()
    storage = JournalStorage(JournalFileBackend(str(folder / "search.journal")))
    study = optuna.create_study(study_name="full", storage=storage, direction="minimize")
    study.enqueue_trial({"lr": GRID[0]})
    study.ask().suggest_float("lr", GRID[0], GRID[-1], log=True)  # started, never told: as after a kill
    found = search_module.search_lr(bench, METHODS["full"], bench.cfg, folder)
    assert [t["lr"] for t in found["trials"]] == GRID
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in found["trials"])
