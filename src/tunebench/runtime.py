"""Device, precision and seeding decisions, made once per run and recorded in the results."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch

from tunebench import distributed
from tunebench.errors import TunebenchError


@dataclass(frozen=True)
class Runtime:
    device: str
    precision: str
    """`bf16` (autocast, fp32 master weights) or `fp32`."""
    threads: int
    chosen_because: str = ""
    """Why `auto` chose this precision (the measured matmul rates on a CPU); empty when the precision was set."""

    def autocast(self) -> AbstractContextManager:
        if self.precision != "bf16":
            return nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)

    def as_dict(self) -> dict:
        out = {"device": self.device, "precision": self.precision, "torch_threads": self.threads}
        return {**out, "precision_chosen_because": self.chosen_because} if self.chosen_because else out

    def resumed(self, started: dict) -> Runtime:
        """A resumed run trains in the precision it started with (`started`: its results' environment): `auto`
        might measure the other way today, and a method must not change precision half-way."""
        if not self.chosen_because or started.get("precision", self.precision) == self.precision:
            return self
        return replace(self, precision=started["precision"],
                       chosen_because=f"{started.get('precision_chosen_because', 'auto')}, when the run started")


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 matmul instructions (AVX512-BF16 or AMX); elsewhere bf16 is emulated and
    slow. Native instructions are not enough: see `cpu_precision`."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


BF16_PAYS = 1.25
"""`auto` trains a CPU run in bf16 only where bf16 matmuls run at least this many times as fast as fp32 ones:
autocast adds casts and bf16 saves little memory in tunebench's runs (fp32 master weights), so a tie is fp32."""


def matmul_rate(dtype: torch.dtype, size: int = 1024, repeats: int = 4, rounds: int = 3, device: str = "cpu") -> float:
    """GFLOP/s of square `size` matmuls in `dtype` on `device` (a CPU: this process's threads): the best of `rounds`
    timings. (Also the peak benchmarks/ divide by for MFU.)"""
    a, b = torch.randn(size, size).to(device, dtype), torch.randn(size, size).to(device, dtype)
    cuda = device.startswith("cuda")
    a @ b  # warm-up: kernel choice, page faults
    best = float("inf")
    for _ in range(rounds):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        if cuda:
            torch.cuda.synchronize()  # kernels run asynchronously: time them to their end
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best / 1e9


def measured_rates() -> dict[str, float]:
    """fp32 and bf16 matmul GFLOP/s of this CPU, measured once per machine, torch version and thread count and
    kept in the cache folder (about a second; the same answer every time on one machine)."""
    from tunebench.files import atomic_write_json, cache_dir

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = "".join(sorted({line for line in info if line.startswith(("model name", "flags"))}))
    except OSError:
        cpu = ""
    key = hashlib.sha256(f"{cpu}|{torch.__version__}|{torch.get_num_threads()}".encode()).hexdigest()[:16]
    path = cache_dir() / "runtime" / f"matmul-{key}.json"
    try:
        kept = json.loads(path.read_text())
        if all(isinstance(kept.get(rate), (int, float)) and kept[rate] > 0 for rate in ("fp32_gflops", "bf16_gflops")):
            return kept
    except (OSError, ValueError, AttributeError):
        pass  # no file, or not one this version wrote: measure again
    rates = {"fp32_gflops": round(matmul_rate(torch.float32), 1), "bf16_gflops": round(matmul_rate(torch.bfloat16), 1)}
    try:
        atomic_write_json(path, rates)
    except OSError:
        pass  # a read-only cache folder: measure again next time
    return rates


def cpu_precision() -> tuple[str, str]:
    """`auto` on a CPU: bf16 where its matmuls are measured at least BF16_PAYS x as fast as fp32, else fp32; and why.
    (Some CPUs with AVX512-BF16 run bf16 matmuls slower than fp32: seen 0.6x on a 2-core Xeon VM without AMX.)"""
    if not cpu_has_fast_bf16():
        return "fp32", "auto: this CPU has no native bf16 (no AVX512-BF16 or AMX), so bf16 would be emulated"
    rates = measured_rates()
    ratio = rates["bf16_gflops"] / rates["fp32_gflops"]
    choice = "bf16" if ratio >= BF16_PAYS else "fp32"
    return choice, (f"auto: bf16 matmuls measured at {rates['bf16_gflops']:.0f} GFLOP/s against fp32's "
                    f"{rates['fp32_gflops']:.0f} ({ratio:.2f}x; bf16 needs >= {BF16_PAYS}x) on this CPU")


def resolve_runtime(precision: str = "auto", threads: int | None = None, device: str = "auto") -> Runtime:
    """Pick the device and precision: `auto` uses the GPU if there is one, and bf16 only where the hardware runs
    it natively."""
    if threads:
        torch.set_num_threads(threads)
    if device == "auto":  # under torchrun, this process's own GPU
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise TunebenchError(f"train.device={device} but torch sees no CUDA GPU; use train.device=cpu or auto")
    if device.startswith("cuda:"):
        torch.cuda.set_device(device)  # memory peaks, NVML, RNG state and bf16 checks all read the current device
    because = ""
    if precision == "auto" and device.startswith("cuda"):
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        because = f"auto: this GPU {'supports' if precision == 'bf16' else 'does not support'} bf16"
    elif precision == "auto":  # under torchrun rank 0 decides (and measures) and every process takes its answer
        precision, because = distributed.from_writer(cpu_precision() if distributed.is_writer() else None)
    return Runtime(device=device, precision=precision, threads=torch.get_num_threads(), chosen_because=because)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
