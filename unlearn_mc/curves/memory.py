"""How much memory a curve holds: the bytes of every distinct tensor storage of a module, by role."""

from __future__ import annotations

from torch import nn

from unlearn_mc.curves.curve import curve_of


def held_bytes(module: nn.Module) -> int:
    """Σ over the distinct storages behind ``module``'s parameters and buffers of their size in bytes
    (tied or viewed tensors count once)."""
    storages: dict[int, int] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def curve_memory(curve: nn.Module) -> dict[str, int]:
    """Bytes a ``Curve`` (or the ``CurveModule`` holding it) holds: ``total`` (``held_bytes``), ``bends`` (the trainable
    bends, fp32: these and their gradients and optimiser state scale with the bent tensors) and ``bent_values``
    (numbers per control point)."""
    curve, _ = curve_of(curve)
    bends = sum(p.numel() * p.element_size() for p in curve.parameters() if p.requires_grad)
    return {"total": held_bytes(curve), "bends": bends, "bent_values": int(curve.endpoints.shape[1])}
