"""Data: dataset sources, the persisted forget/retain split and the ``UnlearningDataModule``."""

from unlearn_mc.data.datamodule import UnlearningDataModule
from unlearn_mc.data.splits import Split, SplitSettings, load_or_create_split, make_split

__all__ = ["UnlearningDataModule", "Split", "SplitSettings", "load_or_create_split", "make_split"]
