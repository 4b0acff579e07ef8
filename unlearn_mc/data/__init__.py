"""Data: dataset sources, the persisted forget/retain split and the ``UnlearningDataModule``."""

from unlearn_mc.data.datamodule import UnlearningDataModule
from unlearn_mc.data.splits import Split, SplitSettings, load_or_create_split, make_split
from unlearn_mc.data.text_datamodule import TextDataModule
from unlearn_mc.data.tofu_datamodule import TofuDataModule

__all__ = ["UnlearningDataModule", "TextDataModule", "TofuDataModule", "Split", "SplitSettings", "load_or_create_split", "make_split"]
