"""train.parallel=jobs without torchrun: the pieces a process relies on while it waits for the others (the
whole mode runs under torchrun in test_distributed.py)."""

from __future__ import annotations

import os
import time

import pytest

from tunebench.errors import TunebenchError
from tunebench.jobs import Heartbeat


def test_a_process_that_stops_beating_ends_the_wait_in_one_line(tmp_path):
    beat = Heartbeat(tmp_path, rank=0, timeout_s=0.3)
    try:
        (tmp_path / ".alive-1").touch()
        beat.check_others(3)  # rank 1 fresh, rank 2 not started yet (no file): nothing to say
        old = time.time() - 5
        os.utime(tmp_path / ".alive-1", (old, old))
        with pytest.raises(TunebenchError) as info:
            beat.check_others(3)
        assert "process 1 gave no sign of life for 5 s" in str(info.value) and "\n" not in str(info.value)
        assert f"tunebench compare --resume {tmp_path}" in str(info.value)
        # its own file is kept fresh by its thread: another process would not find it stale
        mine = tmp_path / ".alive-0"
        os.utime(mine, (old, old))
        time.sleep(0.3)
        assert time.time() - mine.stat().st_mtime < 0.3
    finally:
        beat.stop()
    assert not (tmp_path / ".alive-0").exists()


def test_the_processes_take_the_largest_jobs_first_and_keep_the_jobs_order_in_the_results(tmp_path, monkeypatch):
    """split_jobs (here with one process, which takes every job): jobs are claimed largest first, unsized ones last
    in their own order; results.json keeps the jobs' order."""
    from tunebench import jobs as jobs_module
    from tunebench.results import Record, ResultsFile
    from tunebench.track import Tracking

    monkeypatch.setattr(jobs_module, "write_outputs", lambda *args, **kwargs: None)  # no report: not tested here
    monkeypatch.setattr("tunebench.results.add_statistics", lambda data: data)  # nor statistics: no scores here
    ran: list[str] = []

    def job(name: str):
        def run() -> Record:
            ran.append(name)
            return Record(name, "method", "SUCCESS")
        return run

    names = ["lead-1", "zero-shot", "small", "large", "middle", "also-middle"]
    sizes = {"small": 1.0, "large": 3.0, "middle": 2.0, "also-middle": 2.0}
    results = ResultsFile(tmp_path / "results.json", {})
    jobs_module.split_jobs([(name, job(name)) for name in names], results, tmp_path, Tracking([], {}), sizes=sizes)
    assert ran == ["large", "middle", "also-middle", "small", "lead-1", "zero-shot"]
    assert [r["name"] for r in results.data["records"]] == names


def test_training_flops_is_counted_on_the_methods_as_they_are_built(tmp_path):
    """workbench.training_flops counts on each method built on `meta` modules: it trains and freezes what the real
    build does, and no random number is drawn; full fine-tuning counts most, a frozen trunk the cache replays
    (last-block over several epochs) least, and a learned prompt's positions add to its count."""
    import copy
    import dataclasses

    import torch

    from tunebench.config import load_config
    from tunebench.methods import METHODS
    from tunebench.models import count_parameters
    from tunebench.workbench import built_on_meta, prepare, training_flops

    cfg = load_config("smoke")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=4))
    bench, _ = prepare(cfg, tmp_path, show_progress=False)
    for name, method in METHODS.items():
        state = torch.random.get_rng_state()
        meta = built_on_meta(bench, method)
        assert torch.equal(state, torch.random.get_rng_state()), name
        assert meta.lm.get_input_embeddings().weight.is_meta, name  # the model takes no memory (a prompt may)
        real = method.build(copy.deepcopy(bench.base_lm), cfg, bench.tokenizer)
        assert count_parameters(meta) == count_parameters(real), name
        assert meta.frozen_depth() == real.frozen_depth(), name
    flops = {name: training_flops(bench, method) for name, method in METHODS.items()}
    assert max(flops, key=flops.get) == "full" and min(flops, key=flops.get) == "last-block", flops
    prompt = bench.cfg.method.prompt_tuning
    longer = dataclasses.replace(
        bench.cfg, method=dataclasses.replace(bench.cfg.method, prompt_tuning=dataclasses.replace(
            prompt, num_virtual_tokens=4 * prompt.num_virtual_tokens)))
    assert training_flops(dataclasses.replace(bench, cfg=longer), METHODS["prompt-tuning"]) > flops["prompt-tuning"]
