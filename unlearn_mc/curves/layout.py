"""Where each parameter tensor of a network lives in the flat vectors that hold the curve's control points.

The interpolated tensors (the network's parameters, never its buffers) are laid end to end in
one vector of P = P_train + P_frozen fp32 values: first the tensors whose bends train, then the
others. Each control point is one row of length P, so φ(t) = Σ_j c_j(t)·θ_j is one
vector-matrix product instead of one small product per tensor.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unlearn_mc.errors import UnlearnMCError


@dataclass(frozen=True)
class TensorSlot:
    name: str
    shape: tuple[int, ...]
    numel: int


class FlatLayout:
    """The order, shapes and sizes of a network's parameters in the flat control-point vectors.

    Args:
        net: the network whose parameters are interpolated.
        trainable: ``fnmatch`` patterns of parameter names whose bends train (``None``: all of them).
    """

    def __init__(self, net: nn.Module, trainable: Sequence[str] | None = None) -> None:
        named = [(name, tuple(p.shape), p.numel()) for name, p in net.named_parameters()]
        if not named:
            raise UnlearnMCError(f"the network {type(net).__name__} has no parameters to connect by a curve.")
        floating = [name for name, p in net.named_parameters() if not p.is_floating_point()]
        if floating:
            raise UnlearnMCError(f"parameter {floating[0]!r} of {type(net).__name__} is not floating point, so it cannot be interpolated.")
        if trainable is None:
            selected = {name for name, _, _ in named}
        else:
            patterns = [trainable] if isinstance(trainable, str) else list(trainable)
            selected = {name for name, _, _ in named if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)}
            if not selected:
                raise UnlearnMCError(
                    f"trainable={patterns} matches no parameter of {type(net).__name__}; use fnmatch patterns of names such as {named[0][0]!r}."
                )
        self.train_slots = [TensorSlot(name, shape, numel) for name, shape, numel in named if name in selected]
        self.frozen_slots = [TensorSlot(name, shape, numel) for name, shape, numel in named if name not in selected]
        self.train_size = sum(slot.numel for slot in self.train_slots)
        self.frozen_size = sum(slot.numel for slot in self.frozen_slots)
        self.size = self.train_size + self.frozen_size
        self.names = [slot.name for slot in self.train_slots + self.frozen_slots]

    def flatten(self, tensors: Mapping[str, Tensor]) -> Tensor:
        """The fp32 vector of length P holding ``tensors[name]`` for every slot, in layout order."""
        return torch.cat([tensors[slot.name].detach().reshape(-1).float() for slot in self.train_slots + self.frozen_slots])

    @property
    def train_sizes(self) -> list[int]:
        return [slot.numel for slot in self.train_slots]

    @property
    def frozen_sizes(self) -> list[int]:
        return [slot.numel for slot in self.frozen_slots]

    def shaped(self, chunks: Sequence[Tensor]) -> dict[str, Tensor]:
        """``{parameter name: chunk viewed in the tensor's shape}`` for flat chunks in layout order."""
        return {slot.name: chunk.view(slot.shape) for slot, chunk in zip(self.train_slots + self.frozen_slots, chunks)}

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Per-tensor views of one full vector of length P, keyed by parameter name."""
        return self.shaped(flat.split(self.train_sizes + self.frozen_sizes))
