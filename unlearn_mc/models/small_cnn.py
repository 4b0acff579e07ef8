"""A small convolutional network with BatchNorm for digits, MNIST-sized and CIFAR-sized images."""

from __future__ import annotations

from torch import Tensor, nn


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """conv(w) → conv(w) → max-pool → conv(2w) → conv(2w) → global average pool → Linear.

    Works on any input of at least 2×2 pixels (8×8 digits, 28×28 MNIST, 32×32 CIFAR).

    Args:
        in_channels: image channels (1 for digits/MNIST, 3 for CIFAR/SVHN).
        num_classes: number of output logits.
        width: channels of the first two convolutions.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, width),
            _conv_bn_relu(width, width),
            nn.MaxPool2d(2),
            _conv_bn_relu(width, 2 * width),
            _conv_bn_relu(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
