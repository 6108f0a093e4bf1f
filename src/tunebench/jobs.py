"""Running a comparison's jobs (one per record): one after another on every process (`train.parallel=data`: under
torchrun the processes share each job's batches), or split over the processes (`train.parallel=jobs`: each trains
and scores its own records alone; rank 0 gathers them into results.json).

In the jobs mode a process takes the next job no other has claimed, the largest first (the jobs' `sizes`: the
training FLOPs workbench.training_flops counts; a long job taken last would leave the other processes idle at the
end), and writes each record it finishes to
`<run>/<record>/record.json` at once (so a kill loses no finished record); rank 0 adds them to results.json as they
arrive. Processes meet only in short collectives before and after the jobs, never while one waits for another's
long job (the collective timeout would end the run), so waiting is done by polling the run folder.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tunebench import distributed
from tunebench.errors import TunebenchError
from tunebench.files import atomic_write_json
from tunebench.report import write_outputs
from tunebench.results import Record, ResultsFile
from tunebench.track import Tracking, record_params

RECORD_FILE = "record.json"
CLAIM_FILE = ".claim"
Jobs = list[tuple[str, Callable[[], Record]]]


def run_jobs(jobs: Jobs, results: ResultsFile, run_dir: Path, tracking: Tracking | None = None,
             parallel: str = "data", sizes: dict[str, float] | None = None) -> None:
    """Run each job not finished before; each record is saved (and the report redrawn) as it ends. A job that fails
    is recorded FAILED and the others go on. `tracking`: each job is a tracker run, from its start to its status.
    `parallel="jobs"` under torchrun: the processes split the jobs (`split_jobs`), the largest of `sizes` first."""
    tracking = tracking or Tracking([], {})
    if parallel == "jobs" and distributed.is_writer():  # records finished before a kill, not yet in results.json
        gathered: set[str] = set()  # (also when resumed with another number of processes)
        _collect(results, run_dir, [name for name, _ in jobs], tracking, gathered, live=set())
        _remove(run_dir, {name for name, _ in jobs})
        for stale in run_dir.glob(".alive-*"):  # a killed run's heartbeats
            stale.unlink(missing_ok=True)
    if parallel == "jobs" and distributed.job_rank()[1] > 1:
        split_jobs(jobs, results, run_dir, tracking, sizes=sizes)
        return
    done = {r["name"] for r in results.data["records"] if r["status"] == "SUCCESS"}
    for name, job in jobs:
        if name in done:
            distributed.say(f"tunebench: {name} finished before, kept")
            continue
        distributed.say(f"tunebench: {name} ...")
        tracking.start(name)
        record = _run(name, job)
        tracking.end(name, record.status)
        _add(results, record.as_dict(), run_dir)


def _run(name: str, job: Callable[[], Record]) -> Record:
    try:
        return job()
    except Exception as exc:  # one method failing must not sink the others (KeyboardInterrupt still stops)
        distributed.say(f"tunebench: {name} FAILED: {exc}")
        return Record.failed(name, "method", exc, traceback.format_exc())


def _add(results: ResultsFile, record: dict, run_dir: Path) -> None:
    results.add(record)
    write_outputs(results.data, run_dir, figures=False)  # the table grows as records come in


def split_jobs(jobs: Jobs, results: ResultsFile, run_dir: Path, tracking: Tracking, poll_s: float = 0.2,
               sizes: dict[str, float] | None = None) -> None:
    """train.parallel=jobs: each process takes the next job no process has claimed (claimed by creating
    `<run>/<record>/.claim`, which only one process can), so a process that finishes early takes more; the jobs are
    taken largest first (`sizes`; a job without one counts 0; equal sizes keep the jobs' order): the longest-job-
    first rule, which keeps a long job from starting when the others are nearly done. Results keep the jobs' order.
    Each runs alone (`distributed.own_job`), on its own device and threads, with the seeds a single process would
    use, so every record equals the one-process run's whichever process ran it."""
    rank, processes = distributed.job_rank()
    order = [name for name, _ in jobs]
    done = distributed.from_writer({r["name"] for r in results.data["records"] if r["status"] == "SUCCESS"})
    for name in order:
        if name in done:
            distributed.say(f"tunebench: {name} finished before, kept")
    pending = sorted(((name, job) for name, job in jobs if name not in done),
                     key=lambda item: -(sizes or {}).get(item[0], 0.0))  # a stable sort: ties keep their order
    ran: set[str] = set()
    collected: set[str] = set()
    heartbeat = Heartbeat(run_dir, rank, distributed.dist_timeout_s())
    for name, job in pending:
        if not _claim(run_dir / name):
            continue
        ran.add(name)
        with distributed.own_job():
            distributed.line(f"tunebench: {name} ... (process {rank})")
            if rank == 0:
                tracking.start(name)  # rank 0's trackers follow its own jobs live
            record = _run(name, job).as_dict()
            atomic_write_json(run_dir / name / RECORD_FILE, record)
        if distributed.is_writer():
            tracking.end(name, record["status"])
            _collect(results, run_dir, order, tracking, collected, live=ran)
    waiting = {name for name, _ in pending}
    while True:  # every process waits here until the last record is written, then they go on together
        if distributed.is_writer():
            _collect(results, run_dir, order, tracking, collected, live=ran)
            waiting -= collected
        else:
            waiting = {name for name in waiting if not (run_dir / name / RECORD_FILE).is_file()}
        if not waiting:
            break
        heartbeat.check_others(processes)
        time.sleep(poll_s)
    heartbeat.stop()
    distributed.barrier()
    if distributed.is_writer():
        _remove(run_dir, set(order))
        results.data["records"].sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
        results.save()
    # every process goes on with the same records (the later looks of the evaluation are shared again)
    results.data["records"] = distributed.from_writer(results.data["records"])


def _claim(folder: Path) -> bool:
    """Whether this process is the first to claim the job of the record folder (an exclusive create)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(folder / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


def _collect(results: ResultsFile, run_dir: Path, order: list[str], tracking: Tracking, collected: set[str],
             live: set[str]) -> None:
    """On the writer: each record file the processes have written since the last call, added to results.json (and,
    for a record another process ran (not in `live`), logged to the trackers with its training curves replayed);
    their names join `collected`."""
    from tunebench.train import replay_training

    for name in order:
        path = run_dir / name / RECORD_FILE
        if name in collected or not path.is_file():
            continue
        record = json.loads(path.read_text())
        if name not in live:
            tracking.start(name)
            tracking.params(name, record_params(record))
            if record.get("train"):
                replay_training(record["train"], tracking.logger(name) or (lambda values, step: None))
            tracking.end(name, record["status"])
        _add(results, record, run_dir)
        collected.add(name)


def _remove(run_dir: Path, names: set[str]) -> None:
    """The record files and claims of these records (a run folder that does not exist yet holds none)."""
    for name in names:
        for file in (RECORD_FILE, CLAIM_FILE):
            (run_dir / name / file).unlink(missing_ok=True)


class Heartbeat:
    """`<run>/.alive-<rank>`, touched every few seconds by a thread while this process takes part in the jobs: a
    process waiting for the others' records ends the run with one line when another process's file stops being
    touched for `timeout_s` (train.dist_timeout_s), as a collective would, instead of waiting for ever for a process
    that died (a launcher that does not end the whole job when one process dies, e.g. srun without
    --kill-on-bad-exit)."""

    def __init__(self, run_dir: Path, rank: int, timeout_s: float):
        self.run_dir, self.rank, self.timeout_s = run_dir, rank, timeout_s
        self.every = max(0.05, min(10.0, timeout_s / 6))
        self.done = threading.Event()
        self.beat()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def path(self, rank: int) -> Path:
        return self.run_dir / f".alive-{rank}"

    def beat(self) -> None:
        self.path(self.rank).touch()

    def _run(self) -> None:
        while not self.done.wait(self.every):
            try:
                self.beat()
            except OSError:
                pass  # the next beat tries again

    def check_others(self, processes: int) -> None:
        now = time.time()
        for rank in range(processes):
            path = self.path(rank)
            if rank != self.rank and path.exists() and now - path.stat().st_mtime > self.timeout_s:
                raise TunebenchError(f"process {rank} gave no sign of life for {now - path.stat().st_mtime:.0f} s "
                                     f"(train.dist_timeout_s={self.timeout_s:g}) while the processes shared the "
                                     f"jobs; it died or hangs: continue with `tunebench compare --resume "
                                     f"{self.run_dir}` under the same launcher")

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self.path(self.rank).unlink(missing_ok=True)
