"""Where a curve's tensors start: the endpoints' states, the bends' initial placement (``init``) and the stores of
the tensors that are not bent (docs/curves.md, "Tensors")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from unlearn_mc.checkpoints import network_state_from_source
from unlearn_mc.curves.layout import FlatLayout
from unlearn_mc.errors import UnlearnMCError

INIT_KINDS = ("midpoint", "original: <path>", "checkpoint: <path>")
STORES = ("fixed_shared", "fixed_start", "fixed_end", "bn_start", "bn_end")


def parse_init(init: str | Mapping[str, Any]) -> tuple[str, Any]:
    """``"midpoint"`` → (midpoint, None); ``"original: p"`` or ``{"original": p}`` → (original, p); same for checkpoint.

    In a mapping the source may also be an ``nn.Module`` or a state_dict.
    """
    if isinstance(init, Mapping):
        if len(init) != 1:
            raise UnlearnMCError(f"init={dict(init)} must name exactly one source; use one of {', '.join(INIT_KINDS)}.")
        kind, source = next(iter(init.items()))
        kind = str(kind).strip().lower()
        if kind in ("original", "checkpoint") and isinstance(source, (nn.Module, Mapping)):
            return kind, source
        path = str(source).strip() if source is not None else ""
    else:
        kind, _, path = str(init).partition(":")
        kind, path = kind.strip().lower(), path.strip()
    if kind == "midpoint" and not path:
        return "midpoint", None
    if kind in ("original", "checkpoint") and path:
        return kind, path
    raise UnlearnMCError(f"init={init!r} is not a way to place the bends; use one of {', '.join(INIT_KINDS)}.")


def endpoint_state(net: nn.Module, layout: FlatLayout, source, which: str) -> dict[str, Tensor]:
    """The endpoint's state_dict for ``net``, checked to hold one value for each tied tensor."""
    state = network_state_from_source(net, source, which)
    tied = [(slot.name, slot.aliases) for slot in layout.slots] + [(t.name, t.aliases) for t in layout.fixed]
    for name, aliases in tied:
        for alias in aliases[1:]:
            if alias in state and name in state and not torch.equal(state[alias], state[name]):
                raise UnlearnMCError(
                    f"the {which} weights hold different values for {name!r} and {alias!r}, which are one tied tensor in "
                    f"{type(net).__name__}; give weights of a model whose ties hold."
                )
    return state


def initial_bends(layout: FlatLayout, kind: str, source, net: nn.Module, endpoints: Tensor, count: int) -> Tensor:
    """The ``count`` bends as rows of length P: with ``midpoint`` bend j = (1 − j/(count+1))·θ_0 + j/(count+1)·θ_{n−1}
    (evenly on the straight line), otherwise every bend the flat vector of the model ``source``."""
    if count == 0:
        return endpoints.new_zeros(0, endpoints.shape[1])
    if kind == "midpoint":
        fractions = torch.arange(1, count + 1, dtype=torch.float32) / (count + 1)
        return (1.0 - fractions)[:, None] * endpoints[0] + fractions[:, None] * endpoints[1]
    point = layout.flatten(network_state_from_source(net, source, f"init {kind}"))
    return point.expand(count, -1).clone()


def fixed_stores(net: nn.Module, layout: FlatLayout, start: Mapping[str, Tensor], end: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """Where each fixed and BatchNorm tensor is kept: ``fixed_shared`` when both endpoints agree (non-persistent
    buffers: the architecture's own), else ``fixed_start``/``fixed_end``; BatchNorm statistics in ``bn_start``/``bn_end``."""
    stores: dict[str, dict[str, Tensor]] = {name: {} for name in STORES}
    own = dict(net.named_buffers(remove_duplicate=False))
    for tensor in layout.fixed:
        if not tensor.persistent:
            stores["fixed_shared"][tensor.name] = own[tensor.name].detach().clone()
            continue
        first, last = start[tensor.name], end[tensor.name]
        kind = "parameter (requires_grad=False)" if tensor.is_parameter else "buffer"
        if first.dtype == last.dtype and torch.equal(first, last):
            stores["fixed_shared"][tensor.name] = first.detach().clone()
        elif first.is_floating_point() and last.is_floating_point():
            stores["fixed_start"][tensor.name] = first.detach().clone()
            stores["fixed_end"][tensor.name] = last.detach().to(first.dtype, copy=True)
        else:
            raise UnlearnMCError(
                f"{kind} {tensor.name!r} of {type(net).__name__} is a {first.dtype} tensor that differs between start and end, "
                "so a curve can neither share nor interpolate it; make it equal in both endpoints."
            )
    for name in layout.batchnorm:
        if name in start:
            stores["bn_start"][name] = start[name].detach().clone()
            stores["bn_end"][name] = end[name].detach().clone()
    return stores
