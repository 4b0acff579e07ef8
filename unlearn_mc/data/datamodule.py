"""``UnlearningDataModule``: full / forget / retain / val / test datasets over one persisted split."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, Subset

from unlearn_mc.data.sharding import distributed_eval_loader
from unlearn_mc.data.sources import SOURCES, SourceData, load_source
from unlearn_mc.data.splits import Split, SplitSettings, labels_digest, load_or_create_split
from unlearn_mc.errors import UnlearnMCError

TRAIN_STREAMS = ("full", "retain", "forget")
DEFAULT_TEST_FRACTION = 0.2  # for sources without a test set of their own


class UnlearningDataModule(L.LightningDataModule):
    """Serves the training streams a module asks for and the evaluation splits of an unlearning study.

    Training streams (augmented): ``full`` = D_f ∪ D_r, ``retain`` = D_r, ``forget`` = D_f. The
    LightningModule declares the streams it needs in its ``train_streams`` attribute; several
    streams come as one ``CombinedLoader`` dict batch ``{name: (x, y)}``.

    Evaluation splits (never augmented), in the order of ``eval_split_names``: ``forget``,
    ``retain`` (optionally a seeded subset of at most ``eval_retain_max`` samples), ``test``,
    then ``val`` when ``val_fraction > 0`` and ``test_forget_class`` under class forgetting.

    Args:
        dataset: one of ``digits`` (embedded), ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``,
            ``svhn``, ``image_folder``, ``npz``.
        data_dir: folder of the torchvision files or the image tree; for ``npz``, the file.
        download: let torchvision fetch missing files.
        forget_rule: ``random`` (a fraction or count of D), ``class`` (all of D's samples of some classes) or
            ``memorised`` (the fraction or count of D with the highest memorisation score, Zhao et al. 2024).
        forget_ratio: fraction of D to forget, in (0, 1), for the random and memorised rules.
        forget_count: number of samples to forget, for the random and memorised rules (instead of ``forget_ratio``).
        forget_classes: class ids to forget, for the class rule.
        exclude_forget_classes_from_test: under the class rule, leave the forgotten classes out of
            ``test`` (they are always reported on their own as ``test_forget_class``).
        split_seed: seed of every random choice of the split.
        val_fraction: fraction of the training pool carved off as a validation set, in [0, 1).
        test_fraction: fraction carved off as the test set when the source has none.
        split_file: where the split is persisted; default ``checkpoints/<dataset>/split.json``.
        train_streams: override the streams the module declares.
        combined_mode: ``CombinedLoader`` mode when several streams are served.
        eval_retain_max: cap on the retain evaluation subset (None: all of D_r).
        batch_size, eval_batch_size, num_workers: loader settings.
        image_size: resize target for ``image_folder``.
        shadow_count, shadow_index, shadow_seed: with ``shadow_count`` = K set, the training streams are those of
            shadow model ``shadow_index`` of K (``unlearn_mc.data.shadows``): ``full`` its seeded half of D ∪ V,
            ``forget`` its members among D_f and the attacked non-members, ``retain`` the rest of its half.
            Evaluation splits are unchanged.
        memorisation_file: for ``forget_rule='memorised'``: a ``lira_shadows.npz`` (``unlearn_mc.study.lira.ShadowSet``)
            whose shadows give mem_i = P(correct | i ∈ train) − P(correct | i ∉ train); a sha256 of the scores is part of the split.
    """

    sources: tuple[str, ...] = SOURCES  # the dataset names this DataModule reads (a subclass reading others sets its own)

    def __init__(
        self,
        dataset: str = "digits",
        data_dir: str = "datasets",
        download: bool = False,
        forget_rule: Literal["random", "class", "memorised"] = "random",
        forget_ratio: float | None = 0.1,
        forget_count: int | None = None,
        forget_classes: list[int] | None = None,
        exclude_forget_classes_from_test: bool = False,
        split_seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = DEFAULT_TEST_FRACTION,
        split_file: str | None = None,
        train_streams: list[str] | None = None,
        combined_mode: Literal["max_size_cycle", "min_size", "max_size", "sequential"] = "max_size_cycle",
        eval_retain_max: int | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        image_size: int = 32,
        shadow_count: int | None = None,
        shadow_index: int = 0,
        shadow_seed: int = 0,
        memorisation_file: str | None = None,
    ) -> None:
        super().__init__()
        if dataset not in self.sources:
            raise UnlearnMCError(f"unknown dataset {dataset!r}; choose one of {', '.join(self.sources)}.")
        if forget_rule not in ("random", "class", "memorised"):
            raise UnlearnMCError(f"forget_rule={forget_rule!r} is not a rule; use 'random', 'class' or 'memorised'.")
        if forget_rule == "memorised" and not memorisation_file:
            raise UnlearnMCError("forget_rule='memorised' needs memorisation_file, the lira_shadows.npz of a study with analyses.lira.")
        if forget_rule != "memorised":
            memorisation_file = None
        if forget_rule in ("random", "memorised"):
            if forget_count is not None:
                if forget_count < 1:
                    raise UnlearnMCError(f"forget_count={forget_count} must be at least 1.")
                forget_ratio = None
            elif forget_ratio is None or not 0.0 < forget_ratio < 1.0:
                raise UnlearnMCError(f"forget_ratio={forget_ratio} must lie strictly between 0 and 1.")
            forget_classes = None
        else:
            if not forget_classes:
                raise UnlearnMCError("forget_rule='class' needs forget_classes, a non-empty list of class ids.")
            forget_ratio, forget_count = None, None
        if not 0.0 <= val_fraction < 1.0:
            raise UnlearnMCError(f"val_fraction={val_fraction} must lie in [0, 1).")
        if not 0.0 < test_fraction < 1.0:
            raise UnlearnMCError(f"test_fraction={test_fraction} must lie strictly between 0 and 1.")
        if train_streams is not None:
            unknown = [name for name in train_streams if name not in TRAIN_STREAMS]
            if unknown or not train_streams:
                raise UnlearnMCError(f"train_streams={train_streams} is invalid; use a non-empty list of {', '.join(TRAIN_STREAMS)}.")
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise UnlearnMCError(f"{name}={value} must be at least 1.")
        if eval_retain_max is not None and eval_retain_max < 1:
            raise UnlearnMCError(f"eval_retain_max={eval_retain_max} must be at least 1 (or null for all of D_r).")
        if shadow_count is not None and (shadow_count < 2 or not 0 <= shadow_index < shadow_count):
            raise UnlearnMCError(f"shadow_count={shadow_count}, shadow_index={shadow_index}: use at least 2 shadows and an index in 0..K-1.")
        self.save_hyperparameters()
        self.dataset_name = dataset
        self.split_file = Path(split_file) if split_file else Path("checkpoints") / dataset / "split.json"
        self.source: SourceData | None = None
        self.split: Split | None = None
        self.memorisation: tuple[np.ndarray, ...] | None = None  # the memorised rule's scores, once set up
        # stream → (epoch → positions within the stream released that epoch); set by a data curriculum
        self.stream_schedules: dict[str, Callable[[int], Sequence[int]]] = {}

    # ------------------------------------------------------------------ set-up
    @property
    def num_classes(self) -> int:
        self._require_setup()
        return self.source.num_classes

    def _require_setup(self) -> None:
        if self.split is None:
            self.setup("fit")

    def setup(self, stage: str | None = None) -> None:
        """Load the source and reuse or draw the persisted split (same result on every process)."""
        if self.split is not None:
            return
        hp = self.hparams
        source = self.load_source()
        settings = SplitSettings(
            dataset=hp.dataset,
            pool_size=len(source.train_targets),
            labels_sha256=labels_digest(source.train_targets),
            forget_rule=hp.forget_rule,
            forget_ratio=hp.forget_ratio,
            forget_count=hp.forget_count,
            forget_classes=tuple(hp.forget_classes) if hp.forget_classes else None,
            split_seed=hp.split_seed,
            val_fraction=hp.val_fraction,
            test_fraction=None if source.test is not None else hp.test_fraction,
            memorisation_sha256=None,
        )
        memorisation = None
        if hp.forget_rule == "memorised":
            from unlearn_mc.data.memorised import read_memorisation

            memorisation, digest = read_memorisation(hp.memorisation_file)
            settings = dataclasses.replace(settings, memorisation_sha256=digest)
        self.split = load_or_create_split(self.split_file, settings, source.train_targets, source.num_classes, memorisation)
        self.memorisation = memorisation
        self.source = source

    def load_source(self) -> SourceData:
        """The training pool and test set of ``dataset`` (a subclass reading other data overrides this)."""
        hp = self.hparams
        return load_source(hp.dataset, hp.data_dir, hp.download, hp.image_size)

    # ----------------------------------------------------------- the datasets
    def _train_view(self, indices: Sequence[int], augmented: bool) -> Dataset:
        base = self.source.train_augmented if augmented else self.source.train_eval
        return Subset(base, list(indices))

    def _stream_indices(self, stream: str) -> list[int]:
        self._require_setup()
        hp = self.hparams
        if hp.get("shadow_count") is not None:  # a subclass with its own arguments records none of the shadow ones
            from unlearn_mc.data.shadows import shadow_streams

            classes = hp.forget_classes if hp.forget_rule == "class" else None
            indices = shadow_streams(self.split, self.source.train_targets.numpy(), classes, hp.shadow_count, hp.shadow_index,
                                     hp.shadow_seed, self.memorisation)
        else:
            indices = {"full": self.split.train, "retain": self.split.retain, "forget": self.split.forget}
        if stream not in indices:
            raise UnlearnMCError(f"unknown training stream {stream!r}; use one of {', '.join(TRAIN_STREAMS)}.")
        return list(indices[stream])

    def train_dataset(self, stream: str) -> Dataset:
        """The augmented training dataset of a stream: ``full``, ``retain`` or ``forget``.

        With a schedule in ``stream_schedules[stream]`` (a data curriculum), only the positions it
        releases at the trainer's current epoch are served.
        """
        indices = self._stream_indices(stream)
        schedule = self.stream_schedules.get(stream)
        if schedule is not None:
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            indices = [indices[position] for position in schedule(epoch)]
        return self._train_view(indices, augmented=True)

    def attack_non_members(self) -> np.ndarray:
        """The held-out non-members membership inference attacks against D_f (``unlearn_mc.data.shadows``)."""
        from unlearn_mc.data.shadows import attack_non_members

        self._require_setup()
        classes = self.hparams.forget_classes if self.hparams.forget_rule == "class" else None
        return attack_non_members(self.split, self.source.train_targets.numpy(), classes, self.memorisation)

    def pool_dataset(self, indices: Sequence[int]) -> Dataset:
        """Examples of the training pool by pool index, without augmentation (e.g. for membership inference)."""
        self._require_setup()
        return self._train_view(indices, augmented=False)

    def scoring_dataset(self, stream: str) -> Dataset:
        """All of a training stream without augmentation, in the order the positions of ``stream_schedules`` refer to."""
        return self._train_view(self._stream_indices(stream), augmented=False)

    def _test_parts(self) -> tuple[Dataset, np.ndarray]:
        if self.source.test is not None:
            return self.source.test, self.source.test_targets.numpy()
        indices = np.asarray(self.split.test)
        return self._train_view(indices, augmented=False), self.source.train_targets.numpy()[indices]

    def eval_datasets(self) -> dict[str, Dataset]:
        """Evaluation datasets by split name, in the order of ``eval_split_names``."""
        self._require_setup()
        hp = self.hparams
        retain = np.asarray(self.split.retain)
        if hp.eval_retain_max is not None and len(retain) > hp.eval_retain_max:
            retain = np.sort(np.random.default_rng(hp.split_seed).permutation(retain)[: hp.eval_retain_max])
        test, test_labels = self._test_parts()
        datasets = {
            "forget": self._train_view(self.split.forget, augmented=False),
            "retain": self._train_view(retain, augmented=False),
        }
        if hp.forget_rule == "class":
            in_forget_classes = np.isin(test_labels, np.asarray(hp.forget_classes))
            datasets["test"] = Subset(test, np.flatnonzero(~in_forget_classes).tolist()) if hp.exclude_forget_classes_from_test else test
            datasets["test_forget_class"] = Subset(test, np.flatnonzero(in_forget_classes).tolist())
        else:
            datasets["test"] = test
        if self.split.val:
            datasets["val"] = self._train_view(self.split.val, augmented=False)
        return {name: datasets[name] for name in self.eval_split_names}

    @property
    def eval_split_names(self) -> list[str]:
        """Names of the evaluation loaders, in the order ``val_dataloader`` returns them."""
        self._require_setup()
        names = ["forget", "retain", "test"]
        if self.split.val:
            names.append("val")
        if self.hparams.forget_rule == "class":
            names.append("test_forget_class")
        return names

    # ------------------------------------------------------------ the loaders
    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        hp = self.hparams
        return DataLoader(
            dataset,
            batch_size=hp.batch_size if train else hp.eval_batch_size,
            shuffle=train,
            drop_last=False,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            collate_fn=self.source.collate_fn,
        )

    def requested_streams(self) -> tuple[str, ...]:
        """The training streams to serve: this module's override, else the LightningModule's declaration, else ``full``."""
        if self.hparams.train_streams:
            return tuple(self.hparams.train_streams)
        module = self.trainer.lightning_module if self.trainer is not None else None
        return tuple(getattr(module, "train_streams", ("full",)))

    def train_dataloader(self):
        streams = self.requested_streams()
        loaders = {name: self._loader(self.train_dataset(name), train=True) for name in streams}
        if len(loaders) == 1:
            return next(iter(loaders.values()))
        return CombinedLoader(loaders, mode=self.hparams.combined_mode)

    def eval_dataloaders(self) -> dict[str, DataLoader]:
        """Evaluation loaders by split name (no augmentation, no shuffling)."""
        return {name: self._loader(dataset, train=False) for name, dataset in self.eval_datasets().items()}

    def val_dataloader(self) -> list[DataLoader]:
        """The evaluation loaders; under DDP each process reads its share of every split, none repeated."""
        return [distributed_eval_loader(loader) for loader in self.eval_dataloaders().values()]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()

    def summary(self) -> dict[str, int]:
        """Sizes of every split, for logs and reports."""
        self._require_setup()
        sizes = {"full": len(self.split.train), "forget": len(self.split.forget), "retain": len(self.split.retain)}
        sizes.update({f"eval_{name}": len(dataset) for name, dataset in self.eval_datasets().items()})
        return sizes

