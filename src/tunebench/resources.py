"""Per-phase wall time, this process's peak memory, and CPU/GPU utilisation sampled in a background thread."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
from types import TracebackType

import numpy as np
import psutil
import torch

MAX_SAMPLES = 300
"""Samples kept per phase in the results (evenly thinned), so results.json stays small."""


def settle_imports() -> None:
    """Take every object alive now out of the cyclic garbage collector's scans (`gc.freeze`).

    The command line calls it once a command's modules are imported and before any data or model exists, so what is
    frozen is the imported code of torch, transformers and the rest (some 400,000 objects), which lives as long as
    the process anyway. Measured on `smoke` (2-core AMD EPYC, 2026-12-08): each `gc.collect()` between methods
    went from 0.20 s to nothing, and the interpreter's exit from 1.1 s to 0.15 s. Not for library calls: an object
    frozen while in use and later dropped inside a reference cycle would never be freed.
    """
    gc.collect()
    gc.freeze()


def release_free_memory() -> None:
    """Hand memory freed by an earlier method back to the OS before the next one starts.

    Without this, glibc keeps freed heap pages, and a method run later in the same process would show the
    memory of the ones before it in its peak RSS. (On GPU, the CUDA peaks are reset per phase anyway.)
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc = ctypes.util.find_library("c")
    if libc:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)  # glibc only; elsewhere nothing to do
        if trim is not None:
            trim(0)


class _Gpu:
    """GPU utilisation and memory through NVML (nvidia-ml-py), when a CUDA device and the library are present."""

    def __init__(self):
        self.handle = None
        if not torch.cuda.is_available():
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        except Exception:  # no NVML (driver, library): GPU utilisation is simply not sampled
            self.handle = None

    def sample(self) -> dict[str, float]:
        if self.handle is None:
            return {}
        util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
        memory = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
        return {"gpu_util_pct": float(util.gpu), "gpu_mem_used_mb": memory.used / 2**20}


class PhaseMonitor:
    """Context manager: wall seconds, peak RSS, CUDA peaks, and a time series of CPU %, RSS (and GPU) samples."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.wall_s = 0.0
        self.cpu_s = 0.0
        """CPU seconds of this process (all its threads) in the phase: moves less with other load than wall_s."""
        self.peak_rss_mb = 0.0
        self.start_rss_mb = 0.0
        self.peak_cuda_allocated_mb: float | None = None
        self.peak_cuda_reserved_mb: float | None = None
        self.samples: list[dict[str, float]] = []
        self._gpu = _Gpu()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _cpu_time(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def _take_sample(self) -> None:
        rss = self.process.memory_info().rss / 2**20
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        sample = {"t_s": round(time.perf_counter() - self._start, 3), "rss_mb": round(rss, 1),
                  # this process's share of all cores (100 = one full core)
                  "cpu_pct": self.process.cpu_percent(None)}
        self.samples.append({**sample, **self._gpu.sample()})

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take_sample()

    def __enter__(self) -> PhaseMonitor:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.start_rss_mb = self.peak_rss_mb = self.process.memory_info().rss / 2**20
        self.process.cpu_percent(None)  # starts psutil's CPU-time interval
        self._cpu_start = self._cpu_time()
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.wall_s = time.perf_counter() - self._start
        self.cpu_s = self._cpu_time() - self._cpu_start
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take_sample()
        if torch.cuda.is_available():
            self.peak_cuda_allocated_mb = torch.cuda.max_memory_allocated() / 2**20
            self.peak_cuda_reserved_mb = torch.cuda.max_memory_reserved() / 2**20

    def as_dict(self) -> dict:
        out = {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
               "start_rss_mb": round(self.start_rss_mb, 1), "peak_rss_mb": round(self.peak_rss_mb, 1)}
        if self.peak_cuda_allocated_mb is not None:
            out["peak_cuda_allocated_mb"] = round(self.peak_cuda_allocated_mb, 1)
            out["peak_cuda_reserved_mb"] = round(self.peak_cuda_reserved_mb, 1)
        # as PEFT's method comparison reports memory: max, mean and 99th percentile of the samples (every 0.5 s)
        for key, name in (("rss_mb", "rss"), ("gpu_mem_used_mb", "gpu_mem_used")):
            values = [s[key] for s in self.samples if key in s]
            if values:
                out[f"{name}_mean_mb"] = round(float(np.mean(values)), 1)
                out[f"{name}_p99_mb"] = round(float(np.percentile(values, 99)), 1)
                out[f"{name}_max_mb"] = round(float(np.max(values)), 1)
        step = max(1, len(self.samples) // MAX_SAMPLES)
        out["samples"] = self.samples[::step]
        cpu = [s["cpu_pct"] for s in self.samples]
        out["mean_cpu_pct"] = round(sum(cpu) / len(cpu), 1) if cpu else None
        return _across_ranks(out)


def _across_ranks(out: dict) -> dict:
    """Under torchrun (every rank measures the same phase): each rank's figures under `ranks`, the peaks as the
    largest rank's and `peak_rss_mb_sum` for all processes together; the time series stays rank 0's."""
    from tunebench import distributed

    if distributed.world_size() == 1:
        return out
    keys = ("wall_s", "cpu_s", "start_rss_mb", "peak_rss_mb", "peak_cuda_allocated_mb", "peak_cuda_reserved_mb",
            "mean_cpu_pct", "rss_mean_mb", "rss_p99_mb", "rss_max_mb")
    ranks = distributed.gather_objects({k: out[k] for k in keys if k in out})
    out["ranks"] = ranks
    for key in ("peak_rss_mb", "peak_cuda_allocated_mb", "peak_cuda_reserved_mb"):
        if key in out:
            out[key] = max(r[key] for r in ranks)
    out["peak_rss_mb_sum"] = round(sum(r["peak_rss_mb"] for r in ranks), 1)
    return out
