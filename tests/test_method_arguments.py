"""Arguments declared once: each method declares its own and forwards the shared ones to ``UnlearningModule``
(``TextDataModule`` likewise to ``UnlearningDataModule``); the CLI, ``save_hyperparameters``, ``inspect.signature``
and ``load_from_checkpoint`` all see every argument. And the one registry of the methods' names."""

from __future__ import annotations

import inspect

import pytest
import torch
from jsonargparse import ArgumentParser

import unlearn_mc.unlearning as unlearning
from unlearn_mc.data import TextDataModule, UnlearningDataModule
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.models import SmallCNN
from unlearn_mc.unlearning import METHODS, BadTeacher, GradDiff, SalUn, UnlearningModule, method_class

SHARED = ["net", "original", "retrain", "optimizer", "lr_scheduler", "min_retain_acc", "curriculum"]


def tiny_net() -> SmallCNN:
    return SmallCNN(in_channels=1, num_classes=10, width=4)


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("original") / "original.pt"
    torch.save(tiny_net().state_dict(), path)
    return str(path)


def cli_arguments(cls: type) -> set[str]:
    """The init arguments LightningCLI's parser (jsonargparse) offers for ``cls``."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "x", fail_untyped=False)
    return {action.dest.split(".", 1)[1] for action in parser._actions if action.dest.startswith("x.") and action.dest.count(".") == 1}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_cli_and_inspect_see_the_shared_and_the_own_arguments(name):
    cls = METHODS[name]
    signature = inspect.signature(cls).parameters
    assert list(signature)[:3] == SHARED[:3] and set(SHARED) <= set(signature)
    assert cli_arguments(cls) == set(signature)
    own = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"} if "__init__" in cls.__dict__ else set()
    assert all(signature[n].kind is inspect.Parameter.KEYWORD_ONLY for n in own)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_method_takes_net_and_original_by_position_and_refuses_a_misspelt_argument(name, original):
    cls = METHODS[name]
    module = cls(tiny_net(), original, min_retain_acc=0.5)
    assert module.hparams["original"] == original and module.hparams["min_retain_acc"] == 0.5
    with pytest.raises(TypeError, match="min_retain_accuracy"):
        cls(net=tiny_net(), original=original, min_retain_accuracy=0.5)


def test_hyperparameters_list_the_shared_arguments_then_the_own_ones(original):
    module = SalUn(net=tiny_net(), original=original, retain_weight=0.4, mask_ratio=0.3)
    assert list(module.hparams) == ["original", "retrain", "min_retain_acc", "forget_weight", "retain_weight", "passes", "label_draw",
                                    "mask_ratio", "mask_path"]
    assert (module.hparams["retain_weight"], module.retain_weight, module.mask_ratio) == (0.4, 0.4, 0.3)
    assert dict(GradDiff(tiny_net(), original, alpha=0.5).hparams) == {"original": original, "retrain": None, "min_retain_acc": None, "alpha": 0.5}


def test_bad_teacher_keeps_its_own_default_optimizer(original):
    assert inspect.signature(BadTeacher).parameters["optimizer"].default is torch.optim.Adam
    assert BadTeacher(tiny_net(), original).optimizer is torch.optim.Adam
    assert GradDiff(tiny_net(), original).optimizer is torch.optim.SGD


def test_load_from_checkpoint_takes_the_recorded_dynamics_back(original, tmp_path):
    module = GradDiff(tiny_net(), original, alpha=0.6)
    dynamics = {"method": "unlearn_mc.unlearning.grad_diff.GradDiff", "seed": 1}
    path = tmp_path / "grad_diff.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {**module.hparams, "dynamics": dynamics},
                "pytorch-lightning_version": "2.6.0"}, path)
    loaded = GradDiff.load_from_checkpoint(path, net=tiny_net(), weights_only=False)
    assert loaded.alpha == 0.6 and loaded.hparams["dynamics"] == dynamics
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), loaded.state_dict().values()))


def test_the_registry_names_every_method_and_refuses_another_name():
    exported = {n for n in unlearning.__all__ if isinstance(getattr(unlearning, n), type) and issubclass(getattr(unlearning, n), UnlearningModule)}
    assert set(METHODS) == exported - {"UnlearningModule"} and METHODS["GradDiff"] is GradDiff
    assert method_class("SCRUB") is unlearning.SCRUB
    with pytest.raises(UnlearnMCError, match=r"unknown method 'Forgetful' in methods\.x; choose one of BadTeacher, FineTune, .*SalUn"):
        method_class("Forgetful", "methods.x")


def test_text_datamodule_forwards_all_but_the_image_shadow_and_memorised_arguments():
    offered = cli_arguments(TextDataModule)
    base = set(inspect.signature(UnlearningDataModule).parameters)
    not_for_text = {"download", "image_size", "shadow_count", "shadow_index", "shadow_seed", "memorisation_file"}
    assert offered == (base - not_for_text) | {"tokenizer", "max_length", "vocab_size", "text_field", "label_field"}
    with pytest.raises(TypeError, match="shadow_count"):
        TextDataModule(shadow_count=2)
    module = TextDataModule(forget_rule="class", forget_classes=[1], batch_size=4)
    assert (module.forget_rule, module.forget_classes, module.forget_ratio, module.batch_size, module.eval_batch_size) == ("class", [1], None, 4, 128)
    assert module.shadow_count is None and module.hparams["batch_size"] == 4 and module.hparams["tokenizer"] is None
