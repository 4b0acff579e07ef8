"""The data-ordering curriculum: stage arithmetic, and the subsets the DataModule serves epoch by epoch."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from conftest import digits_net, quiet_trainer
from unlearn_mc.checkpoints import load_network_weights
from unlearn_mc.errors import UnlearnMCError
from unlearn_mc.curricula import DataCurriculum
from unlearn_mc.curricula.data_curriculum import released_positions, stage_of_epoch
from unlearn_mc.unlearning import GradientAscent


def test_stages_spread_over_the_epochs():
    assert [stage_of_epoch(e, 3, max_epochs=6) for e in range(6)] == [1, 1, 2, 2, 3, 3]
    assert [stage_of_epoch(e, 3, max_epochs=5) for e in range(5)] == [1, 1, 2, 2, 3]
    assert [stage_of_epoch(e, 2, epochs_per_stage=1) for e in range(4)] == [1, 2, 2, 2]
    with pytest.raises(UnlearnMCError, match="max_epochs"):
        stage_of_epoch(0, 3, max_epochs=-1)


def test_stage_k_of_k_releases_the_first_ceil_k_n_over_k_ranked_positions():
    ranking = [4, 0, 6, 2, 1, 5, 3]
    assert released_positions(ranking, 1, 3) == [0, 4, 6]  # ⌈7/3⌉ = 3, sorted
    assert released_positions(ranking, 2, 3) == [0, 1, 2, 4, 6]  # ⌈14/3⌉ = 5
    assert released_positions(ranking, 3, 3) == list(range(7))


class ServedIndices(L.Callback):
    """Records the pool indices of the forget stream served at each epoch."""

    def __init__(self) -> None:
        self.served: list[list[int]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.served.append(list(trainer.train_dataloader.dataset.indices))


def original_forget_losses(digits_models, datamodule) -> torch.Tensor:
    net = load_network_weights(digits_net(), digits_models.original).eval()
    inputs, targets = zip(*[datamodule.scoring_dataset("forget")[i] for i in range(len(datamodule.split.forget))])
    with torch.no_grad():
        return F.cross_entropy(net(torch.stack(inputs)), torch.tensor(targets), reduction="none")


@pytest.mark.parametrize("order", ["easy_to_hard", "hard_to_easy"])
def test_each_epoch_serves_the_released_subset_ranked_by_the_original_models_loss(digits_models, order):
    datamodule = digits_models.datamodule("random")
    datamodule.setup("fit")
    losses = original_forget_losses(digits_models, datamodule)
    ranking = torch.sort(losses, descending=order == "hard_to_easy", stable=True).indices.tolist()
    forget = list(datamodule.split.forget)
    n = len(forget)

    # lr 0: the model stays the original one, only the data served is under test
    module = GradientAscent(digits_net(), original=str(digits_models.original), optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    recorder = ServedIndices()
    trainer = quiet_trainer(max_epochs=3, limit_val_batches=0, callbacks=[DataCurriculum(stages=3, order=order), recorder])
    trainer.fit(module, datamodule=datamodule)

    assert trainer.reload_dataloaders_every_n_epochs == 1
    for stage, served in enumerate(recorder.served, start=1):
        expected = sorted(forget[p] for p in ranking[: math.ceil(stage * n / 3)])
        assert sorted(served) == expected
    first, second, full = ([losses[forget.index(i)].mean().item() for i in served] for served in recorder.served)
    stage_means = [sum(first) / len(first), sum(second) / len(second), sum(full) / len(full)]
    assert stage_means == sorted(stage_means, reverse=order == "hard_to_easy")
    assert module.hparams["dynamics"]["curriculum"] == "data"
    assert module.hparams["dynamics"]["curriculum_args"]["data"]["order"] == order
    assert datamodule.stream_schedules == {}  # handed back after fit: later stages see every sample


def test_the_ranking_is_saved_with_the_callback_state():
    curriculum = DataCurriculum(stages=2)
    curriculum.rankings = {"forget": [2, 0, 1]}
    restored = DataCurriculum(stages=2)
    restored.load_state_dict(curriculum.state_dict())
    assert restored.rankings == {"forget": [2, 0, 1]}


def test_bad_settings_are_refused_in_one_sentence(digits_models):
    with pytest.raises(UnlearnMCError, match="stages"):
        DataCurriculum(stages=0)
    with pytest.raises(UnlearnMCError, match="order"):
        DataCurriculum(order="random")
    module = GradientAscent(digits_net(), original=str(digits_models.original))
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0, reload_dataloaders_every_n_epochs=2, callbacks=[DataCurriculum()])
    with pytest.raises(UnlearnMCError, match="reload_dataloaders_every_n_epochs"):
        trainer.fit(module, datamodule=digits_models.datamodule("random"))
