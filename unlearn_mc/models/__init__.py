"""Plain ``nn.Module`` networks, each usable through a config's ``class_path``."""

from unlearn_mc.models.cifar_resnet import ResNet18, ResNet20
from unlearn_mc.models.hf_causal_lm import HFCausalLM
from unlearn_mc.models.hf_classifier import HFSequenceClassifier
from unlearn_mc.models.mlp import MLP
from unlearn_mc.models.small_cnn import SmallCNN
from unlearn_mc.models.torchvision_net import TorchvisionNet

__all__ = ["MLP", "SmallCNN", "ResNet18", "ResNet20", "TorchvisionNet", "HFSequenceClassifier", "HFCausalLM"]
