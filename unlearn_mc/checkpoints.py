"""Reading network weights from Lightning checkpoints or plain state_dicts, safely.

Every file is read with ``torch.load(..., weights_only=True)``: a file that would need
arbitrary unpickling (and so could run code) is refused, never executed.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import torch
from torch import nn

from unlearn_mc.atomic_write import atomic_path
from unlearn_mc.errors import UnlearnMCError

WRAPPER_PREFIXES = ("net.", "model.", "module.", "_orig_mod.")


def _first_sentence(error: BaseException) -> str:
    """The first sentence of an error's text, without its final full stop."""
    return str(error).strip().splitlines()[0].split(". ")[0].rstrip(".")


def _unpickler_reason(error: BaseException) -> str:
    """What torch's weights-only unpickler rejected, e.g. "Trying to load unsupported GLOBAL posix.system
    whose module posix is blocked": the first paragraph of its message after the generic preamble,
    other than the pointer to the documentation; else the message's first sentence."""
    paragraphs = [part.strip() for part in str(error).split("\n\n")]
    for part in paragraphs[1:]:
        if part and not part.startswith("Check the documentation"):
            return part.splitlines()[0].rstrip(".")
    return _first_sentence(error)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file with ``weights_only=True``; raise one clear error on failure."""
    path = Path(path)
    if not path.is_file():
        raise UnlearnMCError(f"checkpoint file {str(path)!r} does not exist; train that stage first or fix the path.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnlearnMCError(
            f"checkpoint {str(path)!r} holds objects other than tensors and plain containers, so it was refused "
            f"unread (weights_only=True; the unpickler stopped at: {_unpickler_reason(error)})."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise UnlearnMCError(
            f"checkpoint {str(path)!r} is not a readable torch file (corrupted or truncated?): {_first_sentence(error)}."
        ) from None
    if not isinstance(payload, Mapping):
        raise UnlearnMCError(f"checkpoint {str(path)!r} holds a {type(payload).__name__}, not a state_dict.")
    return dict(payload)


def raw_state_dict(payload: Mapping) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint payload: Lightning's ``state_dict`` entry or the payload itself."""
    state = payload.get("state_dict", payload)
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def match_state_dict(state: Mapping[str, torch.Tensor], net: nn.Module, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Return the sub-dict of ``state`` whose keys and shapes are exactly those of ``net.state_dict()``.

    Keys may carry wrapper prefixes (``net.``, ``model.``, ``module.``, ``_orig_mod.``, possibly
    nested, as a LightningModule or DDP adds them); the first candidate, stripping prefixes
    greedily, whose key set equals the network's is taken. Otherwise the error names the
    first tensor that is missing or has another shape.
    """
    expected = net.state_dict()
    candidates = [dict(state)]
    frontier = [dict(state)]
    while frontier:
        current = frontier.pop()
        for prefix in WRAPPER_PREFIXES:
            stripped = _strip(current, prefix)
            if stripped:
                candidates.append(stripped)
                frontier.append(stripped)
    best = max(candidates, key=lambda c: len(set(c) & set(expected)))
    for key, target in expected.items():
        if key not in best:
            raise UnlearnMCError(
                f"{source} does not fit {type(net).__name__}: tensor {key!r} is missing "
                f"(is it a checkpoint of another architecture?)."
            )
        if tuple(best[key].shape) != tuple(target.shape):
            raise UnlearnMCError(
                f"{source} does not fit {type(net).__name__}: tensor {key!r} has shape {tuple(best[key].shape)} "
                f"in the checkpoint but {tuple(target.shape)} in the network."
            )
    return {key: best[key] for key in expected}


def load_network_weights(net: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Copy the weights stored at ``path`` into ``net`` (in place) and return it."""
    state = match_state_dict(raw_state_dict(read_checkpoint(path)), net, source=f"checkpoint {str(path)!r}")
    net.load_state_dict(state, strict=True)
    return net


def network_state_from_file(net: nn.Module, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state_dict for ``net`` stored at ``path``, checked against the network's keys and shapes."""
    return match_state_dict(raw_state_dict(read_checkpoint(path)), net, source=f"checkpoint {str(path)!r}")


def save_state_dict_atomically(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file, then rename it into place."""
    with atomic_path(path) as temporary:
        torch.save(dict(state), temporary)
    return Path(path)


WeightSource = Union[str, os.PathLike, nn.Module, Mapping[str, torch.Tensor]]
"""Where a model's weights come from: a checkpoint path, a module, or a state_dict held in memory."""


def describe_source(source: WeightSource | None) -> str | None:
    """A plain string naming a weight source, for hyper-parameters: the path, or ``<in memory: …>``."""
    if source is None:
        return None
    if isinstance(source, nn.Module):
        return f"<in memory: {type(source).__name__}>"
    if isinstance(source, Mapping):
        return "<in memory: state_dict>"
    return os.fspath(source)


def network_state_from_source(net: nn.Module, source: WeightSource, name: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state_dict for ``net`` from a path (as ``network_state_from_file``), an ``nn.Module`` of the same
    architecture (its ``state_dict()``) or a state_dict / Lightning checkpoint dict held in memory.

    Tensors of an in-memory source are copied to the CPU, so later changes to that source do not reach the result.
    """
    if isinstance(source, (str, os.PathLike)):
        return network_state_from_file(net, source)
    if isinstance(source, nn.Module):
        state, what = source.state_dict(), f"{name} (an in-memory {type(source).__name__})"
    elif isinstance(source, Mapping):
        state, what = raw_state_dict(source), f"{name} (an in-memory state_dict)"
    else:
        raise UnlearnMCError(f"{name}={source!r} is not a source of weights; give a checkpoint path, an nn.Module or a state_dict.")
    matched = match_state_dict(state, net, source=what)
    return {key: value.detach().to("cpu", copy=True) for key, value in matched.items()}
