"""Trainer: learns, checkpoints every epoch, resumes bit-exactly, stops on NaN."""

from __future__ import annotations

import csv
import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cnnlab import create_model
from cnnlab.core.errors import (
    CheckpointError,
    ConfigError,
    ShapeMismatchError,
    TrainingDivergedError,
)
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine import Callback, EarlyStopping, Trainer, load_checkpoint
from cnnlab.engine.config import TrainConfig
from cnnlab.runs.run import build_model


def fit(config: TrainConfig, data: ImageDataset, **kwargs: object) -> Trainer:
    torch.manual_seed(config.seed)
    trainer = Trainer(build_model(config, data), config, **kwargs)  # type: ignore[arg-type]
    trainer.fit(data)
    return trainer


def test_fit_learns_and_records(bars: ImageDataset, quick_config: TrainConfig) -> None:
    trainer = fit(quick_config, bars)
    result = trainer.evaluate(bars.x_test, bars.y_test)
    assert result["accuracy"] > 0.9
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]
    rows = list(csv.DictReader((quick_config.run_dir / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["images_per_second"]) > 0
    state = load_checkpoint(quick_config.run_dir / "checkpoint.safetensors")
    assert state["epoch"] == 3


class InterruptAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def before_epoch(self, trainer: Trainer) -> None:
        if trainer.epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize(("ema", "whiten"), [(None, False), (0.9, False), (None, True)])
def test_resume_matches_uninterrupted(
    bars: ImageDataset, tmp_path: object, ema: float, whiten: bool
) -> None:
    # Dropout, augmentation, momentum, one-cycle and the EMA all carry state across epochs;
    # a whitened first conv must come back frozen.
    base = dict(
        model="resnet_mini",
        model_args={"widths": [8, 16], "blocks": [1, 1], "dropout": 0.3},
        epochs=3, batch_size=32, augment="flip,crop,erase", progress=False, threads=1,
        ema=ema, ema_every=2, whiten=whiten,
    )  # fmt: skip
    whole = fit(TrainConfig(name="whole", runs_dir=str(tmp_path), **base), bars)  # type: ignore[arg-type]

    config = TrainConfig(name="broken", runs_dir=str(tmp_path), **base)  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        fit(config, bars, callbacks=[InterruptAt(2)])
    assert load_checkpoint(config.run_dir / "checkpoint.safetensors")["epoch"] == 2
    torch.manual_seed(123)  # a fresh process would start from other weights and RNG state
    resumed = Trainer(build_model(config, bars), config)
    resumed.fit(bars, resume=True)

    assert len(resumed.history) == 3
    for (name, a), b in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    frozen = [n for n, p in resumed.model.named_parameters() if not p.requires_grad]
    assert frozen == (["features.0.weight"] if whiten else [])


class PoisonAt(Callback):
    def before_epoch(self, trainer: Trainer) -> None:
        if trainer.epoch == 1:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at epoch 2.*checkpoint"):
        fit(quick_config, bars, callbacks=[PoisonAt()])
    state = load_checkpoint(quick_config.run_dir / "checkpoint.safetensors")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_resume_without_checkpoint_is_a_clear_error(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    trainer = Trainer(build_model(quick_config, bars), quick_config)
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        trainer.fit(bars, resume=True)


def test_limit_batches_and_fast_dev_run(bars: ImageDataset, quick_config: TrainConfig) -> None:
    seen: list[int] = []

    class Count(Callback):
        def after_batch(self, trainer: Trainer) -> None:
            seen.append(trainer.epoch)

    quick_config.limit_batches = 2
    fit(quick_config, bars, callbacks=[Count()])
    assert seen == [0, 0, 1, 1, 2, 2]

    seen.clear()
    quick_config.fast_dev_run, quick_config.name = True, "dev"
    fit(quick_config, bars, callbacks=[Count()])
    assert seen == [0]
    assert not quick_config.run_dir.exists()


def test_callback_events_in_order(bars: ImageDataset, quick_config: TrainConfig) -> None:
    events: list[str] = []
    names = ("before_fit", "before_epoch", "after_epoch", "after_fit")
    recorder = type("R", (Callback,), {n: lambda self, t, n=n: events.append(n) for n in names})
    quick_config.epochs, quick_config.limit_batches = 2, 1
    fit(quick_config, bars, callbacks=[recorder()])
    assert events == ["before_fit"] + ["before_epoch", "after_epoch"] * 2 + ["after_fit"]


def test_early_stopping_counts_epochs_without_improvement() -> None:
    stopper = EarlyStopping(patience=2, min_delta=0.01)
    trainer = SimpleNamespace(monitored_loss=0.0, stop_training=False, log=lambda msg: None)
    stopped_at = []
    for epoch, loss in enumerate([1.0, 0.8, 0.795, 0.79, 0.5], start=1):
        trainer.monitored_loss = loss
        stopper.after_epoch(trainer)  # type: ignore[arg-type]
        if trainer.stop_training:
            stopped_at.append(epoch)
            break
    assert stopped_at == [4]  # 0.795 and 0.79 are within min_delta of the best 0.8


def test_early_stopping_is_wired_from_config(bars: ImageDataset, quick_config: TrainConfig) -> None:
    quick_config.early_stopping = 1
    trainer = Trainer(build_model(quick_config, bars), quick_config)
    assert any(isinstance(cb, EarlyStopping) for cb in trainer.callbacks)


def test_grad_clip_bounds_the_update(bars: ImageDataset, quick_config: TrainConfig) -> None:
    quick_config = dataclasses.replace(
        quick_config,
        optimizer="sgd", momentum=0.0, weight_decay=0.0, schedule="constant",
        lr=1.0, grad_clip=1e-3, epochs=1, limit_batches=1, label_smoothing=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(quick_config, bars)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    Trainer(model, quick_config).fit(bars)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < (after - before).norm() <= 1e-3 * 1.0001


@pytest.mark.parametrize("channels_last,bf16", [(True, False), (False, True), (True, True)])
def test_speed_options_still_learn(
    bars: ImageDataset, quick_config: TrainConfig, channels_last: bool, bf16: bool
) -> None:
    quick_config.channels_last, quick_config.bf16 = channels_last, bf16
    trainer = fit(quick_config, bars)
    assert trainer.evaluate(bars.x_test, bars.y_test)["accuracy"] > 0.85


def test_validation_split_is_used(bars: ImageDataset, quick_config: TrainConfig) -> None:
    quick_config.val_split, quick_config.epochs = 0.25, 1
    trainer = fit(quick_config, bars)
    row = trainer.history[0]
    assert 0 <= row["val_accuracy"] <= 1 and row["val_loss"] > 0


def test_model_that_does_not_fit_the_data(bars: ImageDataset, quick_config: TrainConfig) -> None:
    model = create_model("keras_cifar", in_channels=1, num_classes=3, input_size=32)
    with pytest.raises(ShapeMismatchError, match=r"\(2, 1, 12, 12\).*\(B, 1, 32, 32\)"):
        Trainer(model, quick_config).fit(bars)
    model = create_model("resnet_mini", num_classes=10)
    with pytest.raises(ShapeMismatchError, match=r"outputs \(10,\).*3 classes"):
        Trainer(model, quick_config).fit(bars)


def test_tta_averages_the_image_and_its_mirror(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    quick_config.epochs, quick_config.limit_batches = 1, 2
    trainer = fit(quick_config, bars)
    images = bars.x_test[:8]
    trainer.config.tta = False
    plain = trainer.predict(images)
    mirrored = trainer.predict(images.flip(3))
    assert not torch.allclose(plain, mirrored, atol=1e-3)  # else the check below is empty
    trainer.config.tta = True
    assert torch.allclose(trainer.predict(images), (plain + mirrored) / 2, atol=1e-5)
    assert torch.allclose(trainer.predict(images).sum(1), torch.ones(8), atol=1e-5)
    trainer.config.tta = "flip-shift"
    assert not torch.allclose(trainer.predict(images), (plain + mirrored) / 2, atol=1e-4)


def test_ema_is_evaluated_and_becomes_the_model(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    quick_config.epochs, quick_config.ema = 2, 0.9
    trainer = fit(quick_config, bars)
    assert trainer.ema is not None and trainer.ema.updates == 2 * (len(bars.x_train) // 32)
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, trainer.ema.average[name]), name
    # During training, evaluation swaps the average in and the raw weights back out.
    raw = {k: v + 0.01 if v.is_floating_point() else v for k, v in trainer.ema.average.items()}
    trainer.model.load_state_dict(raw)
    averaged = trainer.evaluate(bars.x_test, bars.y_test)
    assert torch.equal(next(iter(trainer.model.state_dict().values())), next(iter(raw.values())))
    trainer.ema.copy_to(trainer.model)
    trainer.ema = None
    assert trainer.evaluate(bars.x_test, bars.y_test) == averaged


def test_ema_and_tta_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"received ema=1\.5"):
        TrainConfig(ema=1.5)
    with pytest.raises(ConfigError, match="received 'mirror'"):
        TrainConfig(tta="mirror")


def test_resume_refuses_a_new_length_for_a_whole_run_schedule(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    quick_config.epochs, quick_config.limit_batches = 1, 1
    fit(quick_config, bars)
    quick_config.epochs = 2  # onecycle was laid out for 1 epoch
    trainer = Trainer(build_model(quick_config, bars), quick_config)
    with pytest.raises(ConfigError, match=r"epochs=1 with the onecycle schedule.*epochs=2"):
        trainer.fit(bars, resume=True)


class WithAuxHead(nn.Module):
    """A toy model with a side classifier, in the GoogLeNet contract."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(144, 16), nn.ReLU())
        self.main, self.aux = nn.Linear(16, 3), nn.Linear(16, 3)
        self.aux_outputs: tuple[torch.Tensor, ...] = ()
        self.aux_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if self.training:
            self.aux_outputs = (self.aux(h),)
        return self.main(h)

    def auxiliary_loss(self, criterion: nn.Module, target: torch.Tensor) -> torch.Tensor:
        self.aux_calls += 1
        (aux,) = self.aux_outputs
        return 0.3 * criterion(aux, target)


def test_auxiliary_loss_is_added_and_trains_the_side_head(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    quick_config.epochs, quick_config.limit_batches, quick_config.channels_last = 1, 3, False
    model = WithAuxHead()
    before = model.aux.weight.detach().clone()
    Trainer(model, quick_config).fit(bars)
    assert model.aux_calls == 3
    assert not torch.equal(model.aux.weight, before)  # only the auxiliary loss reaches it
