"""unlearn-mc: machine unlearning through the lens of mode connectivity, in PyTorch Lightning."""

__version__ = "0.1.0"
