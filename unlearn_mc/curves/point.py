"""``PointForward``: the network at one point φ of a curve as a function of its inputs, ``inputs → logits``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn
from torch.func import functional_call

from unlearn_mc.data.batches import ModelInputs
from unlearn_mc.errors import UnlearnMCError


def logits_of(output: Any) -> Tensor:
    """The logits of a network's output: the tensor itself, ``output.logits`` (Hugging Face style), ``output["logits"]`` or ``output[0]``."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise UnlearnMCError(f"the network returned a {type(output).__name__}; return logits, or an object with a .logits tensor.")


class PointForward:
    """The network at one point φ of the curve as a function of the inputs (``inputs → logits``).

    ``parameters`` fills every parameter slot (all names of tied ones); ``buffers`` are the fixed
    buffers at φ, copied afresh for each call so that a forward that updates a buffer in place (a
    running mean, a step counter) never changes the curve; ``batchnorm()`` gives the BatchNorm
    statistics to pass at each call (none: the network's own). ``params`` (first name → tensor of
    the bent parameters) exposes the weights, for losses with a term on them (e.g. ‖θ‖₁, see
    ``unlearn_mc.unlearning.common.forward_parameters``).
    """

    def __init__(self, net: nn.Module, parameters: dict[str, Tensor], buffers: dict[str, Tensor], params: dict[str, Tensor],
                 batchnorm: Callable[[], dict[str, Tensor]] | None = None) -> None:
        self.net = net
        self.parameters_and_buffers = parameters
        self.buffers = buffers
        self.params = params
        self.batchnorm = batchnorm

    def tensors(self) -> dict[str, Tensor]:
        """What ``functional_call`` receives for one call: every tensor of φ under every name."""
        copies: dict[int, Tensor] = {}
        tensors = dict(self.parameters_and_buffers)
        for name, buffer in self.buffers.items():
            tensors[name] = copies.setdefault(id(buffer), buffer.clone())
        if self.batchnorm is not None:
            tensors.update(self.batchnorm())
        return tensors

    def output(self, *args, **kwargs) -> Any:
        """The network's own output on ``net(*args, **kwargs)`` at φ."""
        return functional_call(self.net, self.tensors(), args, kwargs)

    def __call__(self, *args, **kwargs) -> Tensor:
        """Logits at φ; one ``ModelInputs`` argument is unpacked into positional and keyword inputs."""
        if len(args) == 1 and not kwargs and isinstance(args[0], ModelInputs):
            args, kwargs = args[0].args, args[0].kwargs
        return logits_of(self.output(*args, **kwargs))
