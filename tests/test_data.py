"""The forget/retain split and the DataModule: determinism, disjointness, persistence, streams."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from lightning.pytorch.utilities import CombinedLoader

from unlearn_mc.data import UnlearningDataModule
from unlearn_mc.errors import UnlearnMCError


def _dm(tmp_path, name="split.json", **kw) -> UnlearningDataModule:
    settings = dict(dataset="digits", forget_rule="random", forget_ratio=0.1, split_seed=0, split_file=str(tmp_path / name))
    settings.update(kw)
    dm = UnlearningDataModule(**settings)
    dm.setup()
    return dm


def test_split_is_deterministic_and_persisted_identically(tmp_path):
    first, second = _dm(tmp_path, "a.json"), _dm(tmp_path, "b.json")
    assert first.split.forget == second.split.forget
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    other_seed = _dm(tmp_path, "c.json", split_seed=1)
    assert other_seed.split.forget != first.split.forget


def test_forget_and_retain_partition_the_training_set(tmp_path):
    split = _dm(tmp_path).split
    forget, retain, val, test = map(set, (split.forget, split.retain, split.val, split.test))
    assert not forget & retain
    assert forget | retain == set(split.train)
    assert not (forget | retain) & (val | test)
    assert not val & test
    assert len(forget | retain | val | test) == 1797
    assert len(forget) == round(0.1 * len(split.train))


def test_forget_count_draws_exactly_that_many(tmp_path):
    assert len(_dm(tmp_path, forget_count=37).split.forget) == 37


def test_persisted_split_is_reused_and_a_different_one_is_refused(tmp_path):
    dm = _dm(tmp_path)
    stored = json.loads((tmp_path / "split.json").read_text())
    assert stored["settings"]["forget_ratio"] == 0.1 and stored["fingerprint"]
    assert _dm(tmp_path).split.forget == dm.split.forget
    with pytest.raises(UnlearnMCError, match="forget_ratio=0.1 but this run asks for forget_ratio=0.05"):
        _dm(tmp_path, forget_ratio=0.05)
    with pytest.raises(UnlearnMCError, match="split_seed"):
        _dm(tmp_path, split_seed=7)
    assert json.loads((tmp_path / "split.json").read_text()) == stored  # never replaced


def test_an_edited_split_file_is_refused(tmp_path):
    _dm(tmp_path)
    stored = json.loads((tmp_path / "split.json").read_text())
    stored["forget"] = stored["forget"][1:]
    (tmp_path / "split.json").write_text(json.dumps(stored))
    with pytest.raises(UnlearnMCError, match="fingerprint"):
        _dm(tmp_path)


def test_class_forgetting_takes_exactly_those_classes(tmp_path):
    dm = _dm(tmp_path, forget_rule="class", forget_classes=[3, 7], exclude_forget_classes_from_test=True)
    labels = dm.source.train_targets.numpy()
    assert set(labels[dm.split.forget]) == {3, 7}
    assert not set(labels[dm.split.retain]) & {3, 7}
    assert np.isin(labels[dm.split.train], [3, 7]).sum() == len(dm.split.forget)
    evaluation = dm.eval_datasets()
    test_labels = {int(y) for _, y in evaluation["test"]}
    assert not test_labels & {3, 7}
    assert {int(y) for _, y in evaluation["test_forget_class"]} == {3, 7}
    assert dm.eval_split_names == ["forget", "retain", "test", "val", "test_forget_class"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"forget_ratio": 1.5}, "forget_ratio=1.5 must lie strictly between 0 and 1"),
        ({"forget_ratio": 0.0}, "forget_ratio=0.0"),
        ({"forget_count": 100000}, "forget_count=100000 exceeds"),
        ({"forget_rule": "class", "forget_classes": [12]}, "forget class 12 does not exist"),
        ({"forget_rule": "class", "forget_classes": []}, "needs forget_classes"),
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
        ({"train_streams": ["everything"]}, "train_streams"),
    ],
)
def test_bad_settings_get_one_clear_sentence(tmp_path, settings, message):
    with pytest.raises(UnlearnMCError, match=message):
        _dm(tmp_path, **settings)
    assert not (tmp_path / "split.json").exists()


class _Declares:
    def __init__(self, streams):
        self.train_streams = streams


class _FakeTrainer:
    def __init__(self, streams):
        self.lightning_module = _Declares(streams)


def test_loaders_serve_the_declared_streams(tmp_path):
    dm = _dm(tmp_path)
    dm.trainer = _FakeTrainer(("retain",))
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (1, 8, 8) and len(dm.train_dataloader().dataset) == len(dm.split.retain)
    dm.trainer = _FakeTrainer(("forget", "retain"))
    combined = dm.train_dataloader()
    assert isinstance(combined, CombinedLoader)
    batch, _, _ = next(iter(combined))
    assert set(batch) == {"forget", "retain"}
    assert [len(loader) for loader in dm.val_dataloader()] == [1, 5, 2, 1]
    assert [len(loader.dataset) for loader in dm.val_dataloader()][:2] == [len(dm.split.forget), len(dm.split.retain)]


def test_retain_evaluation_subset_is_seeded_and_capped(tmp_path):
    first = _dm(tmp_path, eval_retain_max=100).eval_datasets()["retain"]
    second = _dm(tmp_path, eval_retain_max=100).eval_datasets()["retain"]
    assert len(first) == 100 and first.indices == second.indices


def test_npz_source_with_and_without_test_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 5)).astype(np.float32), rng.integers(0, 4, size=200)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    dm = _dm(tmp_path, dataset="npz", data_dir=str(tmp_path / "mine.npz"))
    assert dm.num_classes == 4 and len(dm.split.test) == 40
    np.savez(tmp_path / "both.npz", x=x, y=y, x_test=x[:30], y_test=y[:30])
    dm = _dm(tmp_path, "other.json", dataset="npz", data_dir=str(tmp_path / "both.npz"))
    assert dm.split.test == [] and len(dm.eval_datasets()["test"]) == 30


def test_npz_with_nan_is_refused(tmp_path):
    x = np.zeros((50, 3), dtype=np.float32)
    x[4, 1] = np.nan
    np.savez(tmp_path / "bad.npz", x=x, y=np.zeros(50, dtype=np.int64))
    with pytest.raises(UnlearnMCError, match="NaN or infinite values in 1 samples"):
        _dm(tmp_path, dataset="npz", data_dir=str(tmp_path / "bad.npz"))


def test_missing_torchvision_files_name_the_folder(tmp_path):
    with pytest.raises(UnlearnMCError, match=r"cifar10 files are not under .* download is off"):
        _dm(tmp_path, dataset="cifar10", data_dir=str(tmp_path / "nowhere"))


def test_image_folder_tree(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for label in ("cat", "dog"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for index in range(6 if split == "train" else 2):
                Image.fromarray(np.full((10, 10, 3), 40 * index, dtype=np.uint8)).save(folder / f"{index}.png")
    dm = _dm(tmp_path, dataset="image_folder", data_dir=str(tmp_path / "images"), image_size=16, forget_count=2, val_fraction=0.0)
    assert dm.num_classes == 2 and len(dm.split.train) == 12
    image, _ = dm.eval_datasets()["test"][0]
    assert image.shape == (3, 16, 16) and torch.isfinite(image).all()
