"""A torchrun entry point for test_distributed.py: tunebench's command line, with rank 1 failing in every training
step of prefix tuning (the method with a key/value prefix), as a process that runs out of memory on its own GPU
would, and only there."""

from __future__ import annotations

import os
import sys

import tunebench.train
from tunebench.cli import main

original = tunebench.train.per_example_loss


def failing(model, batch):
    if os.environ.get("RANK") == "1" and model.kv_prefix is not None and model.training:
        raise RuntimeError("out of memory (injected on rank 1)")
    return original(model, batch)


tunebench.train.per_example_loss = failing
sys.exit(main(sys.argv[1:]))
