"""The forget/retain split: chosen by a seeded rule and persisted as a JSON index file.

All indices refer to the source's training pool. In order, with one seeded generator:
``test`` is carved first when the source has no test set, then ``val``; what is left is
the training set D, divided into the forget set D_f and the retain set D_r = D \\ D_f.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from unlearn_mc.atomic_write import write_text_atomically
from unlearn_mc.errors import UnlearnMCError

SPLIT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SplitSettings:
    """Everything that determines a split; a persisted split is reused only if these match."""

    dataset: str
    pool_size: int
    labels_sha256: str
    forget_rule: str
    forget_ratio: float | None
    forget_count: int | None
    forget_classes: tuple[int, ...] | None
    split_seed: int
    val_fraction: float
    test_fraction: float | None  # None when the source has its own test set
    memorisation_sha256: str | None = None  # the ``memorised`` rule: sha256 of the memorisation scores


def settings_dict(settings: SplitSettings) -> dict:
    """The settings as a dict; ``memorisation_sha256`` only when set, so splits written before it existed keep their fingerprint."""
    body = asdict(settings)
    if body.get("memorisation_sha256") is None:
        body.pop("memorisation_sha256", None)
    return body


@dataclass
class Split:
    """Index lists into the training pool."""

    settings: SplitSettings
    forget: list[int]
    retain: list[int]
    val: list[int]
    test: list[int] = field(default_factory=list)  # empty when the source has its own test set

    @property
    def train(self) -> list[int]:
        """D = D_f ∪ D_r, in ascending index order."""
        return sorted(self.forget + self.retain)

    def fingerprint(self) -> str:
        """sha256 over the settings and every index list, in a canonical JSON form."""
        body = {"settings": settings_dict(self.settings), "forget": self.forget, "retain": self.retain, "val": self.val, "test": self.test}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def labels_digest(labels: torch.Tensor) -> str:
    """sha256 of the pool's labels, so a split cannot be reused on other data of the same size."""
    return hashlib.sha256(labels.to(torch.int64).numpy().tobytes()).hexdigest()


def _carve(generator: np.random.Generator, indices: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    count = int(round(fraction * len(indices)))
    shuffled = generator.permutation(indices)
    return np.sort(shuffled[:count]), np.sort(shuffled[count:])


def make_split(settings: SplitSettings, labels: torch.Tensor, num_classes: int,
               memorisation: tuple[np.ndarray, ...] | None = None) -> Split:
    """Draw the split that ``settings`` describe, for a pool with these ``labels`` (``memorisation``: the scores the
    ``memorised`` rule ranks by)."""
    generator = np.random.default_rng(settings.split_seed)
    pool = np.arange(settings.pool_size)
    test = np.array([], dtype=np.int64)
    if settings.test_fraction is not None:
        test, pool = _carve(generator, pool, settings.test_fraction)
    val, train = _carve(generator, pool, settings.val_fraction)
    if settings.forget_rule == "class":
        for label in settings.forget_classes:
            if not 0 <= label < num_classes:
                raise UnlearnMCError(f"forget class {label} does not exist; {settings.dataset} has classes 0..{num_classes - 1}.")
        in_forget = np.isin(labels.numpy()[train], np.asarray(settings.forget_classes))
        forget = train[in_forget]
    else:
        count = settings.forget_count if settings.forget_count is not None else int(round(settings.forget_ratio * len(train)))
        if count > len(train):
            raise UnlearnMCError(f"forget_count={count} exceeds the {len(train)} training samples of {settings.dataset}.")
        if settings.forget_rule == "memorised":
            if memorisation is None:
                raise UnlearnMCError("forget_rule='memorised' needs memorisation scores (data.memorisation_file).")
            from unlearn_mc.data.memorised import memorised_forget

            forget = memorised_forget(train, memorisation, count)
        else:
            forget = np.sort(generator.permutation(train)[:count])
    if len(forget) == 0:
        raise UnlearnMCError(f"the forget set is empty for {settings.dataset} with rule {settings.forget_rule!r}; forget at least one sample.")
    if len(forget) == len(train):
        raise UnlearnMCError(f"the forget set holds all {len(train)} training samples, leaving nothing to retain; forget fewer.")
    retain = np.setdiff1d(train, forget)
    return Split(settings, forget.tolist(), retain.tolist(), val.tolist(), test.tolist())


def _split_to_json(split: Split) -> dict:
    return {
        "format_version": SPLIT_FORMAT_VERSION,
        "settings": settings_dict(split.settings),
        "fingerprint": split.fingerprint(),
        "sizes": {"forget": len(split.forget), "retain": len(split.retain), "val": len(split.val), "test": len(split.test)},
        "forget": split.forget,
        "retain": split.retain,
        "val": split.val,
        "test": split.test,
    }


def _settings_from_json(raw: dict) -> SplitSettings:
    raw = dict(raw)
    if raw.get("forget_classes") is not None:
        raw["forget_classes"] = tuple(raw["forget_classes"])
    return SplitSettings(**raw)


def read_split(path: Path) -> Split:
    """Read a persisted split and check its fingerprint."""
    try:
        raw = json.loads(path.read_text())
        split = Split(_settings_from_json(raw["settings"]), raw["forget"], raw["retain"], raw["val"], raw.get("test", []))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UnlearnMCError(f"split file {str(path)!r} is not a valid split ({error}); delete it to draw the split again.") from None
    if split.fingerprint() != raw.get("fingerprint"):
        raise UnlearnMCError(f"split file {str(path)!r} was edited after it was written (fingerprint mismatch); delete it to draw the split again.")
    return split


def write_split(split: Split, path: Path) -> None:
    """Write the split as JSON through a temporary file, so a reader never sees half a file."""
    write_text_atomically(path, json.dumps(_split_to_json(split), indent=1))


def _describe_mismatch(stored: SplitSettings, wanted: SplitSettings) -> str:
    for key, value in asdict(wanted).items():
        if key == "memorisation_sha256" and getattr(stored, key) != value:
            return "it was made from other memorisation scores (their sha256 differs)"
        old = getattr(stored, key)
        if old != value:
            if key == "labels_sha256":
                return "it was made for other data (the labels differ)"
            return f"it was made with {key}={old!r} but this run asks for {key}={value!r}"
    return "its settings differ"


def load_or_create_split(path: str | os.PathLike, settings: SplitSettings, labels: torch.Tensor, num_classes: int,
                         memorisation: tuple[np.ndarray, ...] | None = None) -> Split:
    """Reuse the split at ``path`` if its settings equal ``settings``; create and persist it if absent.

    A stored split whose settings differ is an error naming the first difference; it is never replaced.
    """
    path = Path(path)
    if path.exists():
        stored = read_split(path)
        if stored.settings != settings:
            raise UnlearnMCError(
                f"split file {str(path)!r} cannot be reused: {_describe_mismatch(stored.settings, settings)}; "
                "delete it or set data.split_file to another path."
            )
        return stored
    split = make_split(settings, labels, num_classes, memorisation)
    try:
        write_split(split, path)
    except OSError as error:
        raise UnlearnMCError(f"cannot write split file {str(path)!r}: {error.strerror}; choose a writable data.split_file.") from None
    return split
