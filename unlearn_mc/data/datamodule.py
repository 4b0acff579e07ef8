"""``UnlearningDataModule``: full / forget / retain / val / test datasets over one persisted split."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from torch.utils.data import Dataset, Subset

from unlearn_mc.data.arguments import TRAIN_STREAMS, check_fractions, check_loader_arguments, check_shadows, forget_rule_arguments
from unlearn_mc.data.loaders import ServesLoaders
from unlearn_mc.data.sources import SOURCES, SourceData, load_source
from unlearn_mc.data.splits import Split, SplitSettings, labels_digest, load_or_create_split
from unlearn_mc.errors import UnlearnMCError

DEFAULT_TEST_FRACTION = 0.2  # for sources without a test set of their own


class UnlearningDataModule(ServesLoaders):
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
        forget_ratio, forget_count, forget_classes, memorisation_file = forget_rule_arguments(
            forget_rule, forget_ratio, forget_count, forget_classes, memorisation_file)
        check_fractions(val_fraction, test_fraction)
        check_loader_arguments(train_streams, batch_size, eval_batch_size, eval_retain_max)
        check_shadows(shadow_count, shadow_index)
        self.save_hyperparameters()  # the arguments as given (a subclass's own ones too), for loggers and checkpoints
        # the settings, checked (forget_classes is None unless the rule is class, and so on): the rest of the module reads these,
        # while hparams keeps what the constructors were given
        self.dataset_name, self.data_dir, self.download, self.image_size = dataset, data_dir, download, image_size
        self.forget_rule, self.forget_ratio, self.forget_count, self.forget_classes = forget_rule, forget_ratio, forget_count, forget_classes
        self.exclude_forget_classes_from_test, self.memorisation_file = exclude_forget_classes_from_test, memorisation_file
        self.split_seed, self.val_fraction, self.test_fraction, self.eval_retain_max = split_seed, val_fraction, test_fraction, eval_retain_max
        self.train_streams, self.combined_mode = train_streams, combined_mode
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.shadow_count, self.shadow_index, self.shadow_seed = shadow_count, shadow_index, shadow_seed
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
        source = self.load_source()
        settings = SplitSettings(
            dataset=self.dataset_name,
            pool_size=len(source.train_targets),
            labels_sha256=labels_digest(source.train_targets),
            forget_rule=self.forget_rule,
            forget_ratio=self.forget_ratio,
            forget_count=self.forget_count,
            forget_classes=tuple(self.forget_classes) if self.forget_classes else None,
            split_seed=self.split_seed,
            val_fraction=self.val_fraction,
            test_fraction=None if source.test is not None else self.test_fraction,
            memorisation_sha256=None,
        )
        memorisation = None
        if self.forget_rule == "memorised":
            from unlearn_mc.data.memorised import read_memorisation

            memorisation, digest = read_memorisation(self.memorisation_file)
            settings = dataclasses.replace(settings, memorisation_sha256=digest)
        self.split = load_or_create_split(self.split_file, settings, source.train_targets, source.num_classes, memorisation)
        self.memorisation = memorisation
        self.source = source

    def load_source(self) -> SourceData:
        """The training pool and test set of ``dataset`` (a subclass reading other data overrides this)."""
        return load_source(self.dataset_name, self.data_dir, self.download, self.image_size)

    # ----------------------------------------------------------- the datasets
    def _train_view(self, indices: Sequence[int], augmented: bool) -> Dataset:
        base = self.source.train_augmented if augmented else self.source.train_eval
        return Subset(base, list(indices))

    def _stream_indices(self, stream: str) -> list[int]:
        self._require_setup()
        if self.shadow_count is not None:
            from unlearn_mc.data.shadows import shadow_streams

            indices = shadow_streams(self.split, self.source.train_targets.numpy(), self.forget_classes, self.shadow_count,
                                     self.shadow_index, self.shadow_seed, self.memorisation)
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
        return attack_non_members(self.split, self.source.train_targets.numpy(), self.forget_classes, self.memorisation)

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
        retain = np.asarray(self.split.retain)
        if self.eval_retain_max is not None and len(retain) > self.eval_retain_max:
            retain = np.sort(np.random.default_rng(self.split_seed).permutation(retain)[: self.eval_retain_max])
        test, test_labels = self._test_parts()
        datasets = {
            "forget": self._train_view(self.split.forget, augmented=False),
            "retain": self._train_view(retain, augmented=False),
        }
        if self.forget_rule == "class":
            in_forget_classes = np.isin(test_labels, np.asarray(self.forget_classes))
            datasets["test"] = Subset(test, np.flatnonzero(~in_forget_classes).tolist()) if self.exclude_forget_classes_from_test else test
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
        if self.forget_rule == "class":
            names.append("test_forget_class")
        return names
