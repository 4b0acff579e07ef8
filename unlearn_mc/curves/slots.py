"""A network's parameter and buffer slots: emptied for ``functional_call``, or filled to make a standalone network."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from torch import Tensor, nn

from unlearn_mc.curves.layout import FlatLayout


def set_slot(net: nn.Module, name: str, value: Tensor | None, parameter: bool) -> None:
    """Put ``value`` (or ``None``, an empty slot ``functional_call`` fills) into the parameter or buffer slot ``name``."""
    module_name, _, leaf = name.rpartition(".")
    module = net.get_submodule(module_name)
    (module._parameters if parameter else module._buffers)[leaf] = value


def empty_slots(net: nn.Module, layout: FlatLayout) -> nn.Module:
    """``net`` with every parameter slot (all names of tied ones, frozen ones too) and every fixed buffer slot emptied;
    the BatchNorm statistics stay, as the network's own."""
    for name in layout.parameter_names:
        set_slot(net, name, None, parameter=True)
    for tensor in layout.fixed:
        if not tensor.is_parameter:
            for alias in tensor.aliases:
                set_slot(net, alias, None, parameter=False)
    return net


def filled_copy(net: nn.Module, layout: FlatLayout, state: Mapping[str, Tensor]) -> nn.Module:
    """A copy of ``net`` holding ``state`` (every tensor under its first name): one ``nn.Parameter`` under every name of
    a tied parameter, frozen parameters with ``requires_grad=False``, buffers and BatchNorm statistics as plain tensors."""
    net = copy.deepcopy(net)
    for slot in layout.slots:
        parameter = nn.Parameter(state[slot.name].clone())
        for alias in slot.names:
            set_slot(net, alias, parameter, parameter=True)
    for tensor in layout.fixed:
        value = nn.Parameter(state[tensor.name].clone(), requires_grad=False) if tensor.is_parameter else state[tensor.name].clone()
        for alias in tensor.aliases:
            set_slot(net, alias, value, parameter=tensor.is_parameter)
    for name in layout.batchnorm:
        set_slot(net, name, state[name].clone(), parameter=False)
    return net
