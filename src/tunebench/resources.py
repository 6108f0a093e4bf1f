"""Wall time and this process's peak memory per phase (a background sampler; issue 5 extends this)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import psutil
import torch


class PhaseMonitor:
    """Context manager: wall seconds, peak RSS (sampled every `interval_s`) and peak CUDA memory of a phase."""

    def __init__(self, interval_s: float = 0.1):
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.wall_s = 0.0
        self.peak_rss_mb = 0.0
        self.start_rss_mb = 0.0
        self.peak_cuda_allocated_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_rss_mb = max(self.peak_rss_mb, self.process.memory_info().rss / 2**20)

    def __enter__(self) -> PhaseMonitor:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.start_rss_mb = self.peak_rss_mb = self.process.memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._start = time.perf_counter()
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.wall_s = time.perf_counter() - self._start
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, self.process.memory_info().rss / 2**20)
        if torch.cuda.is_available():
            self.peak_cuda_allocated_mb = torch.cuda.max_memory_allocated() / 2**20

    def as_dict(self) -> dict:
        out = {"wall_s": round(self.wall_s, 3), "start_rss_mb": round(self.start_rss_mb, 1),
               "peak_rss_mb": round(self.peak_rss_mb, 1)}
        if self.peak_cuda_allocated_mb is not None:
            out["peak_cuda_allocated_mb"] = round(self.peak_cuda_allocated_mb, 1)
        return out
