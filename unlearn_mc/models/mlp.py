"""A multi-layer perceptron over flattened inputs."""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """Flatten → [Linear → ReLU] × len(hidden) → Linear.

    Args:
        in_features: number of input values per sample (64 for 8×8 digits, 784 for MNIST).
        num_classes: number of output logits.
        hidden: widths of the hidden layers.
    """

    def __init__(self, in_features: int = 64, num_classes: int = 10, hidden: list[int] = [256, 256]) -> None:  # noqa: B006
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
