"""Resumable training state: tensors in safetensors, everything else in JSON; nothing is unpickled.

A checkpoint is a folder written beside the previous one and swapped in by rename, so a kill at any
moment leaves either the old complete checkpoint or the new complete one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tunebench import distributed
from tunebench.errors import TunebenchError
from tunebench.files import atomic_write_text, follow_umask
from tunebench.methods.base import load_trainable_state, trainable_tensors


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return tensors, {"python": [version, list(state), gauss],
                     "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


PART_BYTES = 256 * 2 ** 20
"""A checkpoint's tensors are written in files of about this size: the writer holds one part at a time (under
FSDP it gathers each sharded tensor whole), never the whole training state."""


class _Parts:
    """Tensors written to state.safetensors, state-1.safetensors, ... as they come, PART_BYTES at a time."""

    def __init__(self, folder: Path | None):
        self.folder, self.tensors, self.bytes, self.files = folder, {}, 0, []

    def add(self, name: str, tensor: torch.Tensor | None) -> None:
        if self.folder is None or tensor is None:  # not the writer: nothing to keep
            return
        self.tensors[name] = tensor
        self.bytes += tensor.numel() * tensor.element_size()
        if self.bytes >= PART_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.folder is None or (not self.tensors and self.files):
            return
        name = f"state-{len(self.files)}.safetensors" if self.files else "state.safetensors"
        save_file(self.tensors, str(self.folder / name))
        self.files.append(name)
        self.tensors, self.bytes = {}, 0


def save_training_state(folder: Path, model, optimizer, scheduler, position: dict, result) -> None:
    """Trainable weights, AdamW moments, scheduler, RNG states, loader position and the result so far."""
    # every rank's random state (rank 0's under the plain names, which a single process reads): a collective,
    # so every rank calls this; only the writer then writes. Sharded (FSDP) tensors are gathered whole one at a
    # time, a collective too: the other ranks drop each at once, the writer writes it with its part
    ranks = distributed.gather_objects(_rng_state())
    tmp = folder.with_name(folder.name + ".tmp")
    if distributed.is_writer():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    parts = _Parts(tmp if distributed.is_writer() else None)
    for name, whole in trainable_tensors(model):
        parts.add(f"model.{name}", whole)
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for name, value in state.items():
            whole = distributed.full(value.detach())
            parts.add(f"opt.{index}.{name}", whole.cpu().contiguous() if distributed.is_writer() else None)
    if not distributed.is_writer():
        return
    rng_tensors, rng_meta = ranks[0]
    for name, tensor in rng_tensors.items():
        parts.add(name, tensor)
    for number, (other_tensors, _) in enumerate(ranks[1:], start=1):
        for name, tensor in other_tensors.items():
            parts.add(f"rank{number}.{name}", tensor)
    parts.flush()
    meta = {"position": position, "result": asdict(result), "param_groups": opt["param_groups"],
            "scheduler": scheduler.state_dict(), "rng": rng_meta, "rng_ranks": [m for _, m in ranks[1:]],
            "files": parts.files}
    atomic_write_text(tmp / "state.json", json.dumps(meta))
    follow_umask(tmp)
    old = folder.with_name(folder.name + ".old")
    if folder.exists():  # complete (only a finished folder is renamed to it), so a `.old` beside it is an older one
        shutil.rmtree(old, ignore_errors=True)  # left by a save killed before its last line; a rename can't replace it
        os.replace(folder, old)  # the previous complete checkpoint stays until the new one is in place
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


META_KEYS = ("position", "result", "param_groups", "scheduler", "rng")
"""What state.json of a checkpoint holds (save_training_state)."""


def check_training_state(folder: Path) -> tuple[Path, dict]:
    """The folder that holds the checkpoint (the `.old` one if a save was killed between its two renames) and
    its state.json, read and checked, and its tensor file's header read; a damaged one raises one line."""
    if not (folder / "state.json").is_file() and (folder.with_name(folder.name + ".old") / "state.json").is_file():
        folder = folder.with_name(folder.name + ".old")  # killed between the two renames
    try:
        meta = json.loads((folder / "state.json").read_text())
        for name in tensor_files(meta):
            with safe_open(str(folder / name), framework="pt"):
                pass
    except (OSError, ValueError, SafetensorError) as exc:
        raise TunebenchError(f"checkpoint {folder} is damaged ({str(exc).splitlines()[0] if str(exc) else exc!r}); "
                             "delete it to restart this method from its start") from None
    missing = [key for key in META_KEYS if key not in meta] if isinstance(meta, dict) else list(META_KEYS)
    if missing:
        raise TunebenchError(f"checkpoint {folder}/state.json is damaged (no field {missing[0]}); delete the "
                             "checkpoint folder to restart this method from its start")
    return folder, meta


def load_training_state(folder: Path, model, optimizer, scheduler) -> tuple[dict, dict]:
    """Restore what save_training_state wrote; returns (position, result fields)."""
    folder, meta = check_training_state(folder)
    try:
        tensors = TensorFile([folder / name for name in tensor_files(meta)])
    except (OSError, ValueError, SafetensorError) as exc:
        raise TunebenchError(f"checkpoint {folder} is damaged ({exc}); delete it to restart this method") from None
    load_trainable_state(model, TensorFile([folder / name for name in tensor_files(meta)], prefix="model."))
    opt_state: dict[int, dict] = {}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key in [k for k in tensors if k.startswith("opt.")]:  # read only these (the weights were read above)
        value = tensors[key]
        _, index, name = key.split(".", 2)
        # moments are laid out as their parameter (sharded under FSDP); the step count stays as saved
        opt_state.setdefault(int(index), {})[name] = distributed.like(value, params[int(index)]) \
            if value.shape == params[int(index)].shape else value
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    number = distributed.rank()
    if number and f"rank{number}.rng.torch" in tensors:  # this rank's own state (else: the same world, rank 0's)
        own = {k[len(f"rank{number}."):]: tensors[k] for k in tensors if k.startswith(f"rank{number}.")}
        _set_rng_state(own, meta["rng_ranks"][number - 1])
    else:
        _set_rng_state(tensors, meta["rng"])
    return meta["position"], meta["result"]


def tensor_files(meta: dict) -> list[str]:
    """The tensor files of a checkpoint (one, state.safetensors, before checkpoints were written in parts)."""
    files = meta.get("files", ["state.safetensors"]) if isinstance(meta, dict) else ["state.safetensors"]
    return [name for name in files if isinstance(name, str) and "/" not in name and name.endswith(".safetensors")]


class TensorFile(Mapping):
    """The tensors of safetensors files by name (those under `prefix`, named without it), each read when asked for
    (safe_open): a process that keeps only its shards of them (FSDP) never holds them all at once, as `load_file`
    would."""

    def __init__(self, paths: Path | list[Path], prefix: str = ""):
        self.prefix, self.where = prefix, {}
        for path in paths if isinstance(paths, list) else [paths]:
            opened = safe_open(str(path), framework="pt")
            self.where.update({k[len(prefix):]: opened for k in opened.keys() if k.startswith(prefix)})

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.where:
            raise KeyError(name)
        return self.where[name].get_tensor(self.prefix + name)

    def __contains__(self, name: object) -> bool:  # from the file's header, without reading the tensor
        return name in self.where

    def __iter__(self):
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)


def has_training_state(folder: Path) -> bool:
    return (folder / "state.json").is_file() or (folder.with_name(folder.name + ".old") / "state.json").is_file()
