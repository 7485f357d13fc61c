"""Ensemble combination rules in the model, fitted on held-out data, saved, and trained."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.optim import Schedule, build_optimizer
from cnnlab.ensemble import (
    Ensemble,
    Stacker,
    boosted_vote,
    fit_combiner,
    hard_vote_labels,
    majority_vote_accuracy,
    member_probabilities,
    soft_average,
)
from cnnlab.runs import run_training
from cnnlab.transfer.combine import class_rows, out_of_fold_indices

SMALL = {"widths": [8, 16], "blocks": [1, 1]}
STATS = {"mean": [0.2], "std": [0.3]}


def members(n: int = 3, classes: int = 3) -> list[torch.nn.Module]:
    out = []
    for i in range(n):
        torch.manual_seed(i)
        out.append(
            cnnlab.create_model("resnet_mini", num_classes=classes, in_channels=1, **SMALL).eval()
        )
    return out


def test_the_seed_example_through_the_public_module() -> None:
    assert majority_vote_accuracy(0.7, 3) == pytest.approx(0.784)


def test_vote_and_weighted_rules_match_the_arithmetic(bars: ImageDataset) -> None:
    ms = members()
    x = cnnlab.models.saved.preprocess(bars.x_test[:32], STATS)
    probs = member_probabilities(Ensemble(ms), bars.x_test[:32], STATS)
    with torch.no_grad():
        vote = Ensemble(ms, combine="vote")(x)
        weighted = Ensemble(ms, combine="weighted")
        weighted.weights.copy_(torch.tensor([0.5, 0.3, 0.2]))
        mixed = weighted(x)
    assert torch.equal(vote.argmax(1), hard_vote_labels(probs))
    torch.testing.assert_close(mixed.exp(), soft_average(probs, torch.tensor([0.5, 0.3, 0.2])))


def test_stacking_and_weights_fit_on_held_out_data_and_survive_saving(
    bars: ImageDataset, tmp_path: Path
) -> None:
    ms = members()
    x_val, y_val = bars.x_train[:200], bars.y_train[:200]
    for rule in ("stacked", "weighted"):
        ensemble = Ensemble(ms, combine=rule)
        fitted = fit_combiner(ensemble, x_val, y_val, STATS)
        x = cnnlab.models.saved.preprocess(bars.x_test, STATS)
        probs = member_probabilities(ensemble, bars.x_test, STATS)
        with torch.no_grad():
            out = ensemble(x).exp()
        if rule == "stacked":  # the same meta-learner, fitted by scikit-learn directly
            oracle = Stacker().fit(member_probabilities(ensemble, x_val, STATS), y_val)
            assert fitted["C"] == oracle.chosen_C
            torch.testing.assert_close(
                out, oracle.predict_proba(probs).float(), atol=1e-4, rtol=1e-4
            )
        else:
            assert sum(fitted["weights"]) == pytest.approx(1, abs=1e-3)
        folder = cnnlab.save(ensemble, tmp_path / rule)
        again = cnnlab.load(folder)
        with torch.no_grad():
            torch.testing.assert_close(again(x).exp(), out)
        assert json.loads((folder / "config.json").read_text())["model_args"]["combine"] == rule


def test_members_that_disagree_are_refused() -> None:
    three, four = members(1, 3), members(1, 4)
    with pytest.raises(ConfigError, match="one number of classes"):
        Ensemble(three + four)
    a, b = members(2)
    cnnlab.core.records.record_of(a).classes = ["x", "y", "z"]  # type: ignore[attr-defined, union-attr]
    cnnlab.core.records.record_of(b).classes = ["x", "y", "w"]  # type: ignore[attr-defined, union-attr]
    with pytest.raises(ConfigError, match="the same classes"):
        Ensemble([a, b])
    with pytest.raises(ConfigError, match="stacking combines"):
        seg = [cnnlab.create_model("unet", num_classes=2, in_channels=1) for _ in range(2)]
        Ensemble(seg, combine="stacked")(torch.zeros(1, 1, 32, 32))


def test_config_refuses_a_fitted_rule_without_held_out_images() -> None:
    with pytest.raises(ConfigError, match="val_split=0 holds none out"):
        TrainConfig(ensemble=3, ensemble_combine="stacked")
    with pytest.raises(ConfigError, match="ensemble_combine in"):
        TrainConfig(ensemble=3, ensemble_combine="median")
    with pytest.raises(ConfigError, match="ensemble_sampling"):
        TrainConfig(ensemble=3, ensemble_sampling="boost")


@pytest.mark.slow
def test_bagged_stacked_ensemble_trains_end_to_end(bars: ImageDataset, tmp_path: Path) -> None:
    config = TrainConfig(
        name="bag", runs_dir=str(tmp_path), model="resnet_mini", model_args=SMALL, epochs=2,
        batch_size=32, augment="none", progress=False, threads=1, ensemble=3,
        ensemble_combine="stacked", ensemble_sampling="bootstrap", val_split=0.25,
        report=False, tta=False,
    )  # fmt: skip
    metrics = run_training(config, data=bars)
    assert metrics["combine"] == "stacked" and metrics["sampling"] == "bootstrap"
    assert "C" in metrics["fitted"] and metrics["test_accuracy"] > 0.6
    loaded = cnnlab.load(tmp_path / "bag")
    assert loaded.combine == "stacked" and len(loaded.members) == 3
    # Each member trained on its own bootstrap sample of the 288 images not held out.
    for i in range(3):
        rows = list(csv.DictReader((tmp_path / "bag" / f"member-{i}" / "history.csv").open()))
        assert rows and all(not r.get("val_loss") for r in rows)  # no member-level holdout


def test_boosted_rule_is_samme_s_weighted_vote(bars: ImageDataset) -> None:
    ms = members()
    alphas = torch.tensor([1.5, 0.4, 0.9])
    ensemble = Ensemble(ms, combine="boosted")
    ensemble.weights.copy_(alphas)
    x = cnnlab.models.saved.preprocess(bars.x_test, STATS)
    probs = member_probabilities(ensemble, bars.x_test, STATS)
    with torch.no_grad():
        out = ensemble(x)
    scores = boosted_vote(probs.argmax(2), alphas, 3)
    clear = (scores.topk(2, dim=1).values.diff(dim=1).abs() > 1e-6).squeeze(1)
    assert clear.any()
    assert torch.equal(out.argmax(1)[clear], scores.argmax(1)[clear])


def test_cyclic_schedule_restarts_every_cycle() -> None:
    model = torch.nn.Linear(2, 2)
    config = TrainConfig(schedule="cyclic", cycles=3, epochs=3, lr=0.1)
    optimizer = build_optimizer(model.parameters(), config)
    schedule = Schedule(optimizer, config, steps_per_epoch=10)
    lrs = []
    for _ in range(30):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_batch()
    assert lrs[0] == lrs[10] == lrs[20] == pytest.approx(0.1)
    assert max(lrs[8:10] + lrs[18:20] + lrs[28:30]) < 0.01  # each cycle anneals near zero


@pytest.mark.slow
@pytest.mark.parametrize("sampling", ["snapshot", "boosting"])
def test_snapshot_and_boosted_members(bars: ImageDataset, tmp_path: Path, sampling: str) -> None:
    config = TrainConfig(
        name=sampling, runs_dir=str(tmp_path), model="resnet_mini", model_args=SMALL,
        epochs=3 if sampling == "snapshot" else 1, batch_size=32, augment="none",
        progress=False, threads=1, ensemble=3, ensemble_sampling=sampling, report=False,
        tta=False, lr=0.05,
    )  # fmt: skip
    metrics = run_training(config, data=bars)
    loaded = cnnlab.load(tmp_path / sampling)
    assert metrics["sampling"] == sampling and metrics["test_accuracy"] > 0.6
    if sampling == "snapshot":  # one run, a member per cycle end, each different
        assert len(loaded.members) == 3 and metrics["combine"] == "softmax"
        a, b = (m.state_dict()["head.3.weight"] for m in loaded.members[:2])
        assert not torch.equal(a, b)
        assert [m["train_seconds"] for m in metrics["members"]] == sorted(
            m["train_seconds"] for m in metrics["members"]
        )
    else:  # members one after another, each with its SAMME alpha
        assert metrics["combine"] == "boosted" and loaded.combine == "boosted"
        assert len(metrics["alphas"]) == len(loaded.members) >= 1
        torch.testing.assert_close(loaded.weights, torch.tensor(metrics["alphas"]))


def test_sequential_members_refuse_a_time_budget() -> None:
    with pytest.raises(ConfigError, match="trains for a number of epochs"):
        TrainConfig(ensemble=3, ensemble_sampling="boosting", time_budget="5m")
    with pytest.raises(ConfigError, match="at least one epoch per cycle"):
        TrainConfig(ensemble=4, ensemble_sampling="snapshot", epochs=3)


def test_a_loaded_ensembles_members_recombine(bars: ImageDataset, tmp_path: Path) -> None:
    ms = members()
    for m in ms:
        record = cnnlab.core.records.record_of(m)  # type: ignore[attr-defined]
        record.mean, record.std, record.classes = [0.2], [0.3], ["a", "b", "c"]
    folder = cnnlab.save(Ensemble(ms), tmp_path / "ens", input_shape=(1, 12, 12))
    loaded = cnnlab.load(folder)
    again = Ensemble(list(loaded.members), combine="vote")
    record = cnnlab.core.records.record_of(again)  # type: ignore[attr-defined]
    assert record.mean == [0.2] and record.std == [0.3] and record.classes == ["a", "b", "c"]
    assert cnnlab.engine.predictor.evaluate_model(again, bars.x_test, bars.y_test)["n"] == 96


def test_members_of_different_architectures_save_and_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    mixed = [
        cnnlab.create_model("resnet_mini", num_classes=10, in_channels=1, **SMALL),
        cnnlab.create_model("lenet5", num_classes=10, input_size=28),
    ]
    ensemble = Ensemble(mixed, combine="vote").eval()
    folder = cnnlab.save(ensemble, tmp_path / "mixed", input_shape=(1, 28, 28))
    loaded = cnnlab.load(folder)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ensemble(x))
    assert [type(m).__name__ for m in loaded.members] == [type(m).__name__ for m in mixed]


def test_config_checks_out_of_fold_fitting() -> None:
    TrainConfig(ensemble=3, ensemble_combine="stacked", ensemble_folds=3)  # no val_split needed
    with pytest.raises(ConfigError, match="ensemble_folds >= 2"):
        TrainConfig(ensemble=3, ensemble_combine="stacked", ensemble_folds=1)
    with pytest.raises(ConfigError, match="ensemble_folds >= 2 with ensemble_combine"):
        TrainConfig(ensemble=3, ensemble_combine="softmax", ensemble_folds=3)
    with pytest.raises(ConfigError, match="int >= 0"):
        TrainConfig(ensemble=3, ensemble_combine="stacked", ensemble_folds=-2)
    with pytest.raises(ConfigError, match="once per fold"):
        TrainConfig(
            ensemble=3, ensemble_combine="stacked", ensemble_folds=3, ensemble_sampling="snapshot"
        )


@pytest.mark.slow
def test_stacking_learns_from_out_of_fold_predictions(bars: ImageDataset, tmp_path: Path) -> None:
    config = TrainConfig(
        name="oof", runs_dir=str(tmp_path), model="resnet_mini", model_args=SMALL, epochs=1,
        batch_size=32, augment="none", progress=False, threads=1, ensemble=2,
        ensemble_combine="stacked", ensemble_folds=2, val_split=0.0, report=False, tta=False,
    )  # fmt: skip
    metrics = run_training(config, data=bars)
    assert metrics["fitted"]["folds"] == 2 and metrics["test_accuracy"] > 0.5
    # The oracle: each fold's members, reloaded, predict the fold they never trained on;
    # scikit-learn's stacker fitted on those predictions is the ensemble's meta-learner.
    labels = bars.targets_train["label"]
    probs = torch.zeros(2, len(labels), len(bars.classes))
    for k, (train, held) in enumerate(out_of_fold_indices(len(labels), 2, config.seed)):
        fold = [cnnlab.load(tmp_path / "oof" / f"fold-{k}" / f"member-{i}") for i in range(2)]
        record = cnnlab.core.records.require_record(fold[0])
        stats = {"mean": record.mean, "std": record.std}
        probs[:, held] = member_probabilities(Ensemble(fold), bars.x_train[held], stats)
        seen = json.loads(
            (tmp_path / "oof" / f"fold-{k}" / "member-0" / "metrics.json").read_text()
        )
        assert seen["train_images"] == len(train)
    oracle = Stacker().fit(probs, labels)
    coef, bias = class_rows(oracle.coef, oracle.intercept, oracle.classes, len(bars.classes))
    loaded = cnnlab.load(tmp_path / "oof")
    assert metrics["fitted"]["C"] == oracle.chosen_C
    torch.testing.assert_close(loaded.stack_coef, coef.float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(loaded.stack_bias, bias.float(), atol=1e-4, rtol=1e-4)
    # the final members trained on every training image
    final = json.loads((tmp_path / "oof" / "member-0" / "metrics.json").read_text())
    assert final["train_images"] == len(labels)
