"""Device, precision and seeding decisions, made once per run and recorded in the results."""

from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from tunebench.errors import TunebenchError


@dataclass(frozen=True)
class Runtime:
    device: str
    precision: str
    """`bf16` (autocast, fp32 master weights) or `fp32`."""
    threads: int

    def autocast(self) -> AbstractContextManager:
        if self.precision != "bf16":
            return nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)

    def as_dict(self) -> dict:
        return {"device": self.device, "precision": self.precision, "torch_threads": self.threads}


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 matmul (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


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
    if precision == "auto":
        fast = torch.cuda.is_bf16_supported() if device.startswith("cuda") else cpu_has_fast_bf16()
        precision = "bf16" if fast else "fp32"
    return Runtime(device=device, precision=precision, threads=torch.get_num_threads())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
