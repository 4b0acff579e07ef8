"""Dataset sources: each returns the training pool and (when it has one) the test set.

A source yields two views of the same training images: ``train_eval`` (normalised, no
augmentation) for evaluation loaders and ``train_augmented`` (plus the dataset's training
augmentation, if any) for training streams. Indices are shared between the two views.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from unlearn_mc.errors import UnlearnMCError

SOURCES = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "image_folder", "npz")

# Per-channel (mean, std) of the training images, the values commonly used for each dataset.
NORMALISATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "image_folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass
class SourceData:
    """The raw material of an unlearning split."""

    name: str
    train_eval: Dataset
    train_augmented: Dataset
    train_targets: torch.Tensor
    test: Dataset | None
    test_targets: torch.Tensor | None
    num_classes: int
    collate_fn: Callable | None = None  # how loaders batch samples (None: torch's default_collate)


class LabelledTensors(TensorDataset):
    """A ``TensorDataset`` of (image, label) pairs with an optional per-sample transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None) -> None:
        super().__init__(images, labels)
        self.transform = transform

    def __getitem__(self, index: int):
        image, label = super().__getitem__(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def _standardise(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    return torch.from_numpy(((images - mean) / std).astype(np.float32))


def load_digits_source() -> SourceData:
    """scikit-learn's 1,797 8×8 handwritten digits (shipped with the wheel), as 1×8×8 tensors in [0, 1], standardised."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None] / 16.0
    tensors = _standardise(images, float(images.mean()), float(images.std()))
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    dataset = LabelledTensors(tensors, labels)
    return SourceData("digits", dataset, dataset, labels, None, None, 10)


def _check_finite(array: np.ndarray, name: str, path: Path) -> None:
    if not np.issubdtype(array.dtype, np.number):
        raise UnlearnMCError(f"array {name!r} in {str(path)!r} has dtype {array.dtype}, not numbers.")
    if not np.all(np.isfinite(array)):
        bad = int((~np.isfinite(array)).reshape(len(array), -1).any(axis=1).sum())
        raise UnlearnMCError(f"array {name!r} in {str(path)!r} holds NaN or infinite values in {bad} samples; clean the data first.")


def _check_labels(labels: np.ndarray, name: str, path: Path) -> None:
    """Labels are one integer class id in 0, 1, … per sample."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise UnlearnMCError(f"array {name!r} in {str(path)!r} has shape {labels.shape}; labels must be one class id per sample, shape (N,).")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        raise UnlearnMCError(f"array {name!r} in {str(path)!r} has dtype {labels.dtype}; labels must be integers 0 … num_classes−1.")
    if len(labels) and labels.min() < 0:
        raise UnlearnMCError(f"array {name!r} in {str(path)!r} holds the label {int(labels.min())}; labels must be integers 0 … num_classes−1.")


def _check_npz_shapes(contents: dict[str, np.ndarray], path: Path) -> None:
    """``x`` is (N, …) with one sample per row of ``y``; ``x_test`` has the sample shape of ``x``; labels are class ids."""
    for inputs, labels in (("x", "y"), ("x_test", "y_test")):
        if inputs not in contents:
            continue
        x, y = contents[inputs], contents[labels]
        if x.ndim < 2:
            raise UnlearnMCError(f"array {inputs!r} in {str(path)!r} has shape {x.shape}; it must be (N, …) with one sample per row.")
        _check_labels(y, labels, path)
        if len(x) != len(y):
            raise UnlearnMCError(f"npz file {str(path)!r}: {inputs!r} has {len(x)} samples but {labels!r} has {len(y)}.")
    if "x_test" in contents and contents["x_test"].shape[1:] != contents["x"].shape[1:]:
        raise UnlearnMCError(
            f"npz file {str(path)!r}: 'x_test' samples have shape {contents['x_test'].shape[1:]} but 'x' samples {contents['x'].shape[1:]}; they must match."
        )


def load_npz_source(path: str | Path) -> SourceData:
    """A user's ``.npz`` with arrays ``x`` (N, …) and ``y`` (N,), optionally ``x_test``/``y_test``; x is used as given."""
    path = Path(path)
    if not path.is_file():
        raise UnlearnMCError(f"npz file {str(path)!r} does not exist; set data.data_dir to the .npz path.")
    with np.load(path, allow_pickle=False) as arrays:
        contents = {key: arrays[key] for key in arrays.files}
    for required in ("x", "y"):
        if required not in contents:
            raise UnlearnMCError(f"npz file {str(path)!r} lacks array {required!r}; it must hold 'x' and 'y' (and optionally 'x_test', 'y_test').")
    if ("x_test" in contents) != ("y_test" in contents):
        raise UnlearnMCError(f"npz file {str(path)!r} must hold both 'x_test' and 'y_test' or neither.")
    for key, array in contents.items():
        _check_finite(array, key, path)
    _check_npz_shapes(contents, path)
    labels = torch.as_tensor(contents["y"]).long().reshape(-1)
    train = LabelledTensors(torch.as_tensor(contents["x"]).float(), labels)
    test, test_labels = None, None
    if "x_test" in contents:
        test_labels = torch.as_tensor(contents["y_test"]).long().reshape(-1)
        test = LabelledTensors(torch.as_tensor(contents["x_test"]).float(), test_labels)
    num_classes = int(max(labels.max(), test_labels.max() if test_labels is not None else 0)) + 1
    return SourceData("npz", train, train, labels, test, test_labels, num_classes)


def _missing_files(name: str, root: Path, download: bool, error: Exception) -> UnlearnMCError:
    if download:
        why = f"the download failed ({str(error).splitlines()[0]})"
    else:
        why = "download is off (set data.download=true to fetch them)"
    return UnlearnMCError(f"the {name} files are not under {str(root)!r} and {why}; put the torchvision {name} files in that folder.")


def _torchvision_transforms(name: str, augment: bool):
    from torchvision import transforms

    mean, std = NORMALISATION[name]
    steps = []
    if augment and name in ("cifar10", "cifar100", "svhn"):
        steps.append(transforms.RandomCrop(32, padding=4))
        if name != "svhn":  # flipping changes the meaning of house-number digits
            steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def _targets(dataset) -> torch.Tensor:
    for attribute in ("targets", "labels"):
        if hasattr(dataset, attribute):
            return torch.as_tensor(np.asarray(getattr(dataset, attribute)), dtype=torch.long)
    return torch.as_tensor([label for _, label in dataset], dtype=torch.long)


def load_torchvision_source(name: str, data_dir: str | Path, download: bool) -> SourceData:
    """MNIST, Fashion-MNIST, CIFAR-10/100 or SVHN through torchvision, from ``data_dir``."""
    from torchvision import datasets

    root = Path(data_dir)
    builders = {
        "mnist": (datasets.MNIST, 10),
        "fashion_mnist": (datasets.FashionMNIST, 10),
        "cifar10": (datasets.CIFAR10, 10),
        "cifar100": (datasets.CIFAR100, 100),
        "svhn": (datasets.SVHN, 10),
    }
    builder, num_classes = builders[name]

    def build(train: bool, augment: bool):
        split = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
        try:
            return builder(str(root), download=download, transform=_torchvision_transforms(name, augment), **split)
        except (RuntimeError, OSError) as error:  # torchvision raises RuntimeError for missing files
            raise _missing_files(name, root, download, error) from None

    train_eval, train_augmented, test = build(True, False), build(True, True), build(False, False)
    return SourceData(name, train_eval, train_augmented, _targets(train_eval), test, _targets(test), num_classes)


def load_image_folder_source(data_dir: str | Path, image_size: int) -> SourceData:
    """A torchvision ``ImageFolder`` tree: ``data_dir/train/<class>/…`` and optionally ``data_dir/test/<class>/…``.

    A folder without ``train/`` is read whole as the training pool.
    """
    from torchvision import datasets, transforms

    root = Path(data_dir)
    if not root.is_dir():
        raise UnlearnMCError(f"image folder {str(root)!r} does not exist; point data.data_dir at a folder of class sub-folders.")
    mean, std = NORMALISATION["image_folder"]
    plain = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor(), transforms.Normalize(mean, std)])
    augmented = transforms.Compose(
        [transforms.RandomResizedCrop(image_size, scale=(0.6, 1.0)), transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    train_root = root / "train" if (root / "train").is_dir() else root
    try:
        train_eval = datasets.ImageFolder(str(train_root), transform=plain)
        train_augmented = datasets.ImageFolder(str(train_root), transform=augmented)
        test = datasets.ImageFolder(str(root / "test"), transform=plain) if (root / "test").is_dir() else None
    except (FileNotFoundError, RuntimeError) as error:
        raise UnlearnMCError(f"image folder {str(train_root)!r} holds no readable images: {str(error).splitlines()[0]}") from None
    if test is not None and test.classes != train_eval.classes:
        raise UnlearnMCError(f"image folder {str(root)!r}: test classes {test.classes} differ from train classes {train_eval.classes}.")
    return SourceData(
        "image_folder", train_eval, train_augmented, _targets(train_eval), test, _targets(test) if test else None, len(train_eval.classes)
    )


def load_source(name: str, data_dir: str | Path, download: bool = False, image_size: int = 32) -> SourceData:
    """Dispatch on the source name; ``data_dir`` is the folder (or, for ``npz``, the file) to read."""
    if name == "digits":
        return load_digits_source()
    if name == "npz":
        return load_npz_source(data_dir)
    if name == "image_folder":
        return load_image_folder_source(data_dir, image_size)
    if name in NORMALISATION:
        return load_torchvision_source(name, data_dir, download)
    raise UnlearnMCError(f"unknown dataset {name!r}; choose one of {', '.join(SOURCES)}.")
