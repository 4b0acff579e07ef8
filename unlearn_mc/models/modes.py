"""``module_mode``: run a block with a network in training or eval mode, then give every submodule its own mode back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def module_mode(net: nn.Module, training: bool = False) -> Iterator[nn.Module]:
    """Set ``net`` (every submodule) to training mode if ``training`` else eval mode for the block; afterwards each
    submodule is back in the mode it had, even when the block raised (``net.train(old)`` would instead give every
    submodule the root's old mode, e.g. unfreeze a BatchNorm that was deliberately kept in eval mode)."""
    modes = [(module, module.training) for module in net.modules()]
    net.train(training)
    try:
        yield net
    finally:
        for module, mode in modes:
            module.training = mode
