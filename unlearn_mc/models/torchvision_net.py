"""Any ``torchvision.models`` architecture by name, built with random weights and ``num_classes`` outputs."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from unlearn_mc.errors import UnlearnMCError


class TorchvisionNet(nn.Module):
    """Wraps ``torchvision.models.get_model(name, weights=None, num_classes=…)``.

    Pretrained weights are never downloaded here; start from a checkpoint instead.

    Args:
        name: a torchvision model name, e.g. ``resnet18``, ``vgg16_bn``, ``mobilenet_v3_small``.
        num_classes: number of output logits.
        kwargs: further keyword arguments of the torchvision builder.
    """

    def __init__(self, name: str = "resnet18", num_classes: int = 10, kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        from torchvision import models

        available = models.list_models()
        if name not in available:
            raise UnlearnMCError(f"torchvision has no model {name!r}; choose one of torchvision.models.list_models(), e.g. resnet18.")
        self.model = models.get_model(name, weights=None, num_classes=num_classes, **(kwargs or {}))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
