"""A network as a fixed reference: a copy that never trains."""

from __future__ import annotations

import copy

from torch import nn


def frozen_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` in eval mode with ``requires_grad=False`` everywhere (a teacher or reference)."""
    teacher = copy.deepcopy(net).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher
