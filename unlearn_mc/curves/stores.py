"""What a curve keeps in buffers besides its control points: tensors by network name (``TensorStore``) and one t (``t_bits``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn


def _store_key(name: str) -> str:
    return name.replace(".", "/")


class TensorStore(nn.Module):
    """Tensors keyed by network names, kept as buffers (so they move, convert and save with the curve).

    Which tensors a curve keeps where depends on its endpoints (shared or per endpoint), so loading
    adopts every saved entry under the store's prefix instead of expecting a fixed set.
    """

    def __init__(self, tensors: Mapping[str, Tensor] | None = None) -> None:
        super().__init__()
        for name, tensor in (tensors or {}).items():
            self.register_buffer(_store_key(name), tensor)

    def __contains__(self, name: str) -> bool:
        return self._buffers.get(_store_key(name)) is not None

    def __getitem__(self, name: str) -> Tensor:
        return self._buffers[_store_key(name)]

    def __len__(self) -> int:
        return len(self._buffers)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs) -> None:
        for key, value in state_dict.items():
            leaf = key[len(prefix):]
            if key.startswith(prefix) and leaf and "." not in leaf and leaf not in self._buffers and isinstance(value, Tensor):
                self.register_buffer(leaf, torch.empty_like(value))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)


def t_bits(t: float | None) -> Tensor:
    """t as the int64 bit pattern of a float64 (NaN for none): exact, and untouched by ``.half()``/``.double()``."""
    return torch.tensor([math.nan if t is None else float(t)], dtype=torch.float64).view(torch.int64)


def t_from_bits(bits: Tensor) -> float | None:
    """The t that ``t_bits`` recorded (``None`` for none)."""
    value = float(bits.view(torch.float64)[0])
    return None if math.isnan(value) else value
