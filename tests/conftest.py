"""Shared fixtures: tiny random models built in-process (no network), a test config."""

from __future__ import annotations

import copy

import pytest
import torch

from tunebench.config import Config, load_config
from tunebench.models import byte_tokenizer, random_model


def sharpen(lm: torch.nn.Module, std: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Re-draw a random model's weights wider, so greedy decoding is not a near-tie everywhere."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in lm.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return lm


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
