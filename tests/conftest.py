"""Shared fixtures: tiny random models built in-process (no network), a test config, the session's smoke run and
its one run on the real embedded model."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from tunebench.config import Config, load_config
from tunebench.models import byte_tokenizer, random_model
from tunebench.resources import settle_imports


def sharpen(lm: torch.nn.Module, std: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Re-draw a random model's weights wider, so greedy decoding is not a near-tie everywhere."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in lm.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return lm


# What the imports made (torch, transformers, tunebench, pytest) lives as long as the test process: out of the garbage
# collector's scans, as `tunebench` itself does (resources.settle_imports), so the collection before each method of an
# in-process run walks what the tests made, not some 400,000 objects of imported code each time
settle_imports()

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one thread each (and in the processes they start), as two torch
    # processes of two threads each on two cores spend their time waiting on each other
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    return byte_tokenizer()


@pytest.fixture(scope="session")
def _tiny_models(tokenizer):
    return {arch: sharpen(random_model(arch, len(tokenizer))) for arch in ("llama-tiny", "gpt2-tiny")}


@pytest.fixture(params=["llama-tiny", "gpt2-tiny"])
def tiny_lm(request, _tiny_models):
    """A fresh copy of a tiny random model of each architecture (Llama-style Linear, GPT-2 Conv1D)."""
    return copy.deepcopy(_tiny_models[request.param])


@pytest.fixture
def cfg() -> Config:
    return load_config("smoke")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One `tunebench compare --preset smoke` run folder, shared by the tests that read its outputs."""
    from tunebench.cli import main

    runs = tmp_path_factory.mktemp("runs")
    assert main(["compare", "--preset", "smoke", "--runs-dir", str(runs), "--name", "s", "--quiet"]) == 0
    return runs / "s"


REAL_METHODS = ["prompt-tuning", "lora", "last-block", "dora", "ia3", "prefix-tuning"]
"""The real run's methods: the demo's three, then the other methods PEFT can express (test_outside.py's round trip
loads every PEFT method's adapter in PEFT alone)."""


@pytest.fixture(scope="session")
def real_run(tmp_path_factory):
    """One `tunebench compare --preset demo` on the real SmolLM2 (from its GGUF), its real tokenizer and real XSum
    pairs, shared by test_embedded.py and test_outside.py's round trip: the demo's baselines and REAL_METHODS, two
    optimizer steps each (8 pairs, articles cut to 64 tokens, batches of 4) at learning rates that change what every
    method writes, 4 test articles, one look (more looks are tested on tiny models: test_sequential.py,
    test_resume.py), a serving job of one prompt and 4 tokens per record. Precision is the demo's `auto`; the round
    trip decodes it in fp32."""
    from tunebench.cli import main

    runs = tmp_path_factory.mktemp("real")
    assert main(["compare", "--preset", "demo", "--runs-dir", str(runs), "--name", "real", "--quiet", "--set",
                 f"methods=[{','.join(REAL_METHODS)}]", "data.max_train=8", "data.n_val=2", "data.n_test=4",
                 "data.max_article_tokens=64", "train.batch_size=4", "train.warmup_steps=0", "eval.max_new_tokens=16",
                 "eval.batch_size=4", "eval.decide=false", "eval.serving_prompts=1", "eval.serving_new_tokens=4",
                 "method.lora.lr=3e-3", "method.dora.lr=3e-3", "method.ia3.lr=3e-2", "method.prefix_tuning.lr=3e-2",
                 "method.prompt_tuning.lr=1e-1", "method.last_block.lr=1e-3"]) == 0
    return runs / "real"



SHARED_RUNS = ("smoke_run", "real_run")
"""Session fixtures that are whole runs: computed once, so every test reading one runs on the same xdist worker."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """`make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`). A fixture shared by several tests
    (module scope, or a whole run in SHARED_RUNS) is computed once per worker that needs it, so the tests sharing one
    get one `xdist_group`: tests linked by any such fixture (union-find over the items) land on one worker. Without
    xdist the groups are unused."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    shared_by = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        keys = [f"{defs[-1].baseid}::{name}" for name, defs in (info.name2fixturedefs.items() if info else ())
                if defs and (defs[-1].scope == "module" or name in SHARED_RUNS)]
        for key in keys[1:]:
            parent[root(key)] = root(keys[0])
        if keys:
            shared_by[item] = keys[0]
    for item, key in shared_by.items():
        item.add_marker(pytest.mark.xdist_group(root(key).replace("/", ".").replace("::", ".")))


def pytest_configure(config):
    """xdist sends a group to one worker by the `@group` its nodeid gets on the worker, which pytest 9.2 silently
    drops (pytest-xdist#1386; constraints.txt keeps pytest below 9.2): every shared run would then be computed once
    per worker. Say so in one line instead of running a slower suite."""
    if config.getoption("dist", "no") != "loadgroup":
        return
    import xdist
    from packaging.version import Version

    if Version(pytest.__version__) >= Version("9.2") and Version(xdist.__version__) <= Version("3.8.0"):
        raise pytest.UsageError(f"pytest {pytest.__version__} with pytest-xdist {xdist.__version__} ignores "
                                "--dist loadgroup (pytest-xdist#1386): pip install -c constraints.txt pytest, or "
                                "run pytest without -n and --dist")
