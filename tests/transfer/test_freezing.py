"""Freezing by selector, frozen BatchNorm, gradual unfreezing, discriminative lrs — alone
and inside the trainer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine import Callback, Trainer
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.optim import Schedule, build_optimizer
from cnnlab.runs.run import build_model
from cnnlab.transfer import (
    GradualUnfreeze,
    freeze,
    freeze_until,
    keep_frozen_norms_eval,
    param_groups,
    select,
    unfreeze,
)


def resnet() -> torch.nn.Module:
    return cnnlab.create_model("resnet18", num_classes=4)


def test_selectors_pick_by_range_module_and_pattern() -> None:
    model = resnet()
    stem = select(model, "features.0-1")  # conv1, bn1 by position
    assert stem == ["features.conv1.weight", "features.bn1.weight", "features.bn1.bias"]
    assert select(model, "features.conv1") == ["features.conv1.weight"]
    layer4 = select(model, "features.layer4")
    assert layer4 and all(n.startswith("features.layer4.") for n in layer4)
    assert select(model, "features.7-") == layer4  # layer4 is child 7: to the last
    bns = select(model, "*.bn2.*")
    assert bns and all(".bn2." in n for n in bns)
    both = select(model, "features.conv1, head")
    assert both == ["features.conv1.weight", "head.2.weight", "head.2.bias"]


def test_a_selector_matching_nothing_says_what_there_is() -> None:
    model = resnet()
    with pytest.raises(ConfigError) as info:
        freeze(model, "features.9-12")
    assert "'features.9-12' matches no parameter" in str(info.value)
    assert "0-7 by position" in str(info.value) and "'layer4'" in str(info.value)
    with pytest.raises(ConfigError, match="the model's modules are \\['features', 'head'\\]"):
        freeze(model, "backbone")
    assert all(p.requires_grad for p in model.parameters())  # nothing half-frozen


def test_freeze_until_and_unfreeze() -> None:
    model = resnet()
    frozen = freeze_until(model, "features.layer3")
    names = [n for n, _ in model.named_parameters()]
    assert frozen == names[: names.index("features.layer3.0.conv1.weight")]
    params = dict(model.named_parameters())
    assert not params["features.layer2.1.bn2.bias"].requires_grad
    assert params["features.layer3.0.conv1.weight"].requires_grad
    unfreeze(model)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ConfigError, match="no parameter comes before"):
        freeze_until(model, "features.conv1")


def test_frozen_batchnorm_keeps_its_statistics_in_training() -> None:
    model = resnet()
    freeze(model, "features.0-4")  # conv1, bn1, relu, maxpool, layer1
    model.train()
    assert keep_frozen_norms_eval(model) == 5  # bn1 + layer1's four
    bn1 = model.get_submodule("features.bn1")
    before = bn1.running_mean.clone()  # type: ignore[operator]
    model(torch.randn(4, 3, 64, 64))
    assert torch.equal(bn1.running_mean, before)  # type: ignore[arg-type]
    trained = model.get_submodule("features.layer2.0.bn1")
    assert trained.training


def test_gradual_unfreezing_thaws_from_the_top_by_epoch() -> None:
    model = resnet()
    frozen = freeze(model, "features")
    schedule = GradualUnfreeze(model, frozen, every=2)
    # stages: conv1, bn1, layer1..layer4 (relu and maxpool hold nothing)
    assert len(schedule.groups) == 6
    assert schedule.apply(model, 0) == [] and schedule.apply(model, 1) == []
    thawed = schedule.apply(model, 2)
    assert thawed and all(n.startswith("features.layer4.") for n in thawed)
    params = dict(model.named_parameters())
    assert not params["features.layer3.0.conv1.weight"].requires_grad
    assert all(params[n].requires_grad for n in thawed)
    schedule.apply(model, 6)
    assert params["features.layer2.0.conv1.weight"].requires_grad
    assert not params["features.layer1.0.conv1.weight"].requires_grad
    schedule.apply(model, 1)  # a resumed run set back to epoch 1: everything frozen again
    assert not any(params[n].requires_grad for n in frozen)
    schedule.apply(model, 40)
    assert all(p.requires_grad for p in model.parameters())


def test_discriminative_learning_rates_survive_one_cycle() -> None:
    model = resnet()
    groups = param_groups(model, 0.1, {"features.0-4": 0.01, "features": 0.1})
    assert [g["name"] for g in groups] == ["features.0-4", "features", "rest"]
    assert [g["lr"] for g in groups] == pytest.approx([0.001, 0.01, 0.1])
    config = TrainConfig(lr=0.1, schedule="onecycle", epochs=1)
    optimizer = build_optimizer(groups, config)
    schedule = Schedule(optimizer, config, steps_per_epoch=20)
    peaks = [0.0] * 3
    for _ in range(20):
        for i, g in enumerate(optimizer.param_groups):
            peaks[i] = max(peaks[i], g["lr"])
        schedule.after_batch()
    assert peaks == pytest.approx([0.001, 0.01, 0.1], rel=0.02)
    with pytest.raises(ConfigError, match="positive lr multiplier"):
        param_groups(model, 0.1, {"head": 0})


def fit(config: TrainConfig, data: ImageDataset, **kwargs: object) -> Trainer:
    torch.manual_seed(config.seed)
    trainer = Trainer(build_model(config, data), config, **kwargs)  # type: ignore[arg-type]
    trainer.fit(data)
    return trainer


def test_trainer_keeps_frozen_weights_and_statistics(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    quick_config.freeze = "features.0-3"
    torch.manual_seed(0)
    model = build_model(quick_config, bars)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, quick_config)
    trainer.fit(bars)
    after = trainer.model.state_dict()
    frozen = [k for k in before if k.startswith(("features.0.", "features.1.", "features.2."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen), frozen
    assert not torch.equal(before["head.3.weight"], after["head.3.weight"])
    saved = cnnlab.save(trainer.model, Path(quick_config.runs_dir) / "saved")
    assert "features.0.weight" in cnnlab.load(saved).cnnlab_record.frozen  # type: ignore[union-attr]


class InterruptAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.epoch == self.epoch:
            raise KeyboardInterrupt


def test_gradual_unfreezing_resumes_exactly(bars: ImageDataset, tmp_path: Path) -> None:
    base = TrainConfig(
        runs_dir=str(tmp_path), model="resnet_mini", epochs=4, batch_size=32, augment="none",
        model_args={"widths": [8, 16], "blocks": [1, 1]}, progress=False, threads=1,
        freeze="features", unfreeze_every=1, lr_mult={"features": 0.5}, report=False,
    )  # fmt: skip
    whole = fit(dataclasses.replace(base, name="whole"), bars)
    broken = dataclasses.replace(base, name="broken")
    with pytest.raises(KeyboardInterrupt):
        fit(broken, bars, callbacks=[InterruptAt(2)])
    torch.manual_seed(99)
    resumed = Trainer(build_model(broken, bars), broken)
    resumed.fit(bars, resume=True)
    for (name, a), b in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_config_refuses_thawing_nothing_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="with nothing frozen"):
        TrainConfig(unfreeze_every=2)
    with pytest.raises(ConfigError, match="first_conv"):
        TrainConfig(first_conv="repeat")
    with pytest.raises(ConfigError, match="without weights"):
        TrainConfig(shallow="logreg")
    with pytest.raises(ConfigError, match="logreg, svm, knn"):
        TrainConfig(shallow="forest", weights="runs/x")


def test_a_bad_selector_fails_before_the_first_epoch(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    quick_config.freeze = "features.stem"
    started: list[int] = []

    class Count(Callback):
        def before_epoch(self, trainer: Trainer) -> None:
            started.append(trainer.epoch)

    with pytest.raises(ConfigError, match=r"'features\.stem' matches no parameter"):
        fit(quick_config, bars, callbacks=[Count()])
    assert started == []
