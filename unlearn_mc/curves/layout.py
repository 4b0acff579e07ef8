"""Which tensors of a network a curve bends, which it carries along, and where the bent ones live in flat vectors.

One rule per kind of tensor (docs/curves.md, "Tensors"):

- **bent**: parameters with ``requires_grad=True``. Each distinct ``nn.Parameter`` is one control
  point, however many names it has: tied parameters (an output projection sharing the embedding's
  weight) are found with ``named_parameters(remove_duplicate=False)`` and every alias name is
  filled with the same tensor of φ(t). Bent tensors are laid end to end in one vector of
  P = P_train + P_frozen fp32 values, first the tensors whose bends train, then the others; each
  control point is one row of length P, so φ(t) = Σ_j c_j(t)·θ_j is one vector-matrix product.
- **fixed**: parameters with ``requires_grad=False`` and every buffer except BatchNorm's running
  statistics. They are never bent and never stored per bend: equal at both endpoints, one shared
  copy; otherwise (floating point only) the straight line lerp(θ_0, θ_{n−1}, t).
- **batchnorm**: the running statistics of BatchNorm layers (``running_mean``, ``running_var``,
  ``num_batches_tracked``), recalibrated at each evaluated t; each endpoint's own are kept for
  t = 0 and t = 1.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from unlearn_mc.errors import UnlearnMCError


@dataclass(frozen=True)
class TensorSlot:
    """One control point of a bent parameter: its first name, shape, size and every name it has (ties)."""

    name: str
    shape: tuple[int, ...]
    numel: int
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return self.aliases or (self.name,)


@dataclass(frozen=True)
class FixedTensor:
    """A tensor the curve carries without bending it: a frozen parameter or a buffer, with all its names."""

    name: str
    aliases: tuple[str, ...]
    is_parameter: bool
    persistent: bool


def _grouped(named: Sequence[tuple[str, Tensor | None]]) -> list[tuple[str, tuple[str, ...], Tensor]]:
    """(first name, all names, tensor) per distinct tensor object, in order of first appearance."""
    groups: dict[int, tuple[str, list[str], Tensor]] = {}
    for name, tensor in named:
        if tensor is None:
            continue
        groups.setdefault(id(tensor), (name, [], tensor))[1].append(name)
    return [(first, tuple(names), tensor) for first, names, tensor in groups.values()]


def batchnorm_buffer_names(net: nn.Module) -> set[str]:
    """The names of the running statistics of every BatchNorm layer of ``net`` that tracks them."""
    names = set()
    for module_name, module in net.named_modules(remove_duplicate=False):
        if isinstance(module, _BatchNorm) and module.track_running_stats:
            prefix = f"{module_name}." if module_name else ""
            names.update(f"{prefix}{leaf}" for leaf, buffer in module._buffers.items() if buffer is not None)
    return names


def _persistent(net: nn.Module, name: str) -> bool:
    module_name, _, leaf = name.rpartition(".")
    return leaf not in net.get_submodule(module_name)._non_persistent_buffers_set


class FlatLayout:
    """The kinds of a network's tensors and the order, shapes and sizes of the bent ones in the flat control-point vectors.

    Args:
        net: the network the curve runs.
        trainable: ``fnmatch`` patterns of parameter names whose bends train (``None``: all bent
            parameters); a tied parameter trains when any of its names matches.
    """

    def __init__(self, net: nn.Module, trainable: Sequence[str] | None = None) -> None:
        parameters = _grouped(list(net.named_parameters(remove_duplicate=False)))
        if not parameters:
            raise UnlearnMCError(f"the network {type(net).__name__} has no parameters to connect by a curve.")
        bent = [(name, aliases, p) for name, aliases, p in parameters if p.requires_grad]
        if not bent:
            raise UnlearnMCError(
                f"every parameter of {type(net).__name__} has requires_grad=False, so a curve has nothing to bend; "
                "set requires_grad=True on the parameters the curve should connect."
            )
        if trainable is None:
            selected = {name for name, _, _ in bent}
        else:
            patterns = [trainable] if isinstance(trainable, str) else list(trainable)
            selected = {
                name for name, aliases, _ in bent if any(fnmatch.fnmatchcase(alias, pattern) for alias in aliases for pattern in patterns)
            }
            if not selected:
                raise UnlearnMCError(
                    f"trainable={patterns} matches no trainable parameter of {type(net).__name__}; use fnmatch patterns of names such as {bent[0][0]!r}."
                )
        slots = [(TensorSlot(name, tuple(p.shape), p.numel(), aliases), name in selected) for name, aliases, p in bent]
        self.train_slots = [slot for slot, trains in slots if trains]
        self.frozen_slots = [slot for slot, trains in slots if not trains]
        self.train_size = sum(slot.numel for slot in self.train_slots)
        self.frozen_size = sum(slot.numel for slot in self.frozen_slots)
        self.size = self.train_size + self.frozen_size
        self.names = [slot.name for slot in self.train_slots + self.frozen_slots]

        norm_names = batchnorm_buffer_names(net)
        buffers = _grouped(list(net.named_buffers(remove_duplicate=False)))
        self.fixed = [FixedTensor(name, aliases, True, True) for name, aliases, p in parameters if not p.requires_grad]
        self.fixed += [
            FixedTensor(name, aliases, False, _persistent(net, name)) for name, aliases, _ in buffers if not set(aliases) & norm_names
        ]
        self.batchnorm = [name for name, aliases, _ in buffers if set(aliases) & norm_names]

    @property
    def slots(self) -> list[TensorSlot]:
        return self.train_slots + self.frozen_slots

    @property
    def parameter_names(self) -> list[str]:
        """Every name of every parameter, aliases included (the slots the curve empties in the network)."""
        return [alias for slot in self.slots for alias in slot.names] + [
            alias for tensor in self.fixed if tensor.is_parameter for alias in tensor.aliases
        ]

    def flatten(self, tensors: Mapping[str, Tensor]) -> Tensor:
        """The fp32 vector of length P holding ``tensors[name]`` for every bent slot, in layout order."""
        return torch.cat([tensors[slot.name].detach().reshape(-1).float() for slot in self.slots])

    @property
    def train_sizes(self) -> list[int]:
        return [slot.numel for slot in self.train_slots]

    @property
    def frozen_sizes(self) -> list[int]:
        return [slot.numel for slot in self.frozen_slots]

    def shaped(self, chunks: Sequence[Tensor]) -> dict[str, Tensor]:
        """``{first name: chunk viewed in the tensor's shape}`` for flat chunks in layout order."""
        return {slot.name: chunk.view(slot.shape) for slot, chunk in zip(self.slots, chunks)}

    def with_aliases(self, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``tensors`` keyed by first names, with the same tensor repeated under every alias of a tied parameter."""
        return {alias: tensors[slot.name] for slot in self.slots if slot.name in tensors for alias in slot.names}

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Per-tensor views of one full vector of length P, keyed by first parameter name."""
        return self.shaped(flat.split(self.train_sizes + self.frozen_sizes))
