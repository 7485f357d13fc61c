"""Multi-label and segmentation through the one training loop, on tiny composed scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, jaccard_score

import cnnlab
from cnnlab import TrainConfig, Trainer, create_model
from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.core.records import record_of
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.predictor import probabilities
from cnnlab.models.ensemble import Ensemble

K = 3  # item classes of the tiny_scenes fixture (tests/conftest.py)


@pytest.fixture(scope="module")
def scenes(tiny_scenes: ImageDataset) -> ImageDataset:
    return tiny_scenes


def _config(tmp_path: Path, **changes: object) -> TrainConfig:
    values = {
        "name": "t", "runs_dir": str(tmp_path), "epochs": 6, "batch_size": 32, "lr": 0.02,
        "optimizer": "adam", "weight_decay": 0.0, "augment": "flip", "progress": False,
        "report": False, "autotune": False, "threads": 1, "label_smoothing": 0.0,
    }  # fmt: skip
    return TrainConfig.from_dict({**values, **changes})


def test_multilabel_trains_and_its_metrics_match_sklearn(
    scenes: ImageDataset, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = create_model("resnet_mini", num_classes=K, widths=[8, 16], blocks=[1, 1])
    trainer = Trainer(model, _config(tmp_path, val_split=0.2), log=lambda _: None)
    history = trainer.fit(scenes)
    assert "train_macro_ap" in history[0] and "val_macro_ap" in history[-1]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    result = trainer.evaluate(scenes.x_test, scenes.targets_test)
    scores = trainer.predict(scenes.x_test).numpy()
    truth = scenes.targets_test["labels"].numpy()
    assert result["macro_ap"] == pytest.approx(
        average_precision_score(truth, scores, average="macro"), abs=1e-6
    )
    assert result["macro_ap"] > 0.6  # well above chance (the class frequencies, ~0.4)
    # Thresholds chosen on the validation split travel with the model, and so does the
    # normalisation: cnnlab.save needs no mean/std from the user.
    record = record_of(trainer.model)
    assert record is not None and len(record.task_args["thresholds"]) == K
    folder = cnnlab.save(trainer.model, tmp_path / "saved")
    loaded = cnnlab.load(folder)
    loaded_record = record_of(loaded)
    assert loaded_record is not None and loaded_record.task == "multilabel"
    assert loaded_record.mean == pytest.approx(scenes.channel_stats()[0])
    torch.testing.assert_close(probabilities(loaded, scenes.x_test), torch.from_numpy(scores))


def test_segmentation_trains_and_its_iou_matches_sklearn(
    scenes: ImageDataset, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = create_model("unet", num_classes=K + 1, base_channels=8, depth=2)
    config = _config(tmp_path, task="segment", task_args={"dice": 0.5}, epochs=8)
    trainer = Trainer(model, config, log=lambda _: None)
    history = trainer.fit(scenes)
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    result = trainer.evaluate(scenes.x_test, scenes.targets_test)
    pred = trainer.predict(scenes.x_test).argmax(1).numpy().ravel()
    truth = scenes.targets_test["mask"].numpy().ravel().astype(np.int64)
    present = sorted(set(pred.tolist()) | set(truth.tolist()))
    ious = jaccard_score(truth, pred, labels=present, average=None)
    assert result["miou"] == pytest.approx(float(np.mean(ious)), abs=1e-6)
    assert result["pixel_accuracy"] == pytest.approx(float((pred == truth).mean()), abs=1e-9)
    assert result["miou"] > 0.5


def test_targets_that_do_not_fit_the_task_are_refused_before_training(
    scenes: ImageDataset, tmp_path: Path
) -> None:
    only_masks = ImageDataset(
        "masks-only", scenes.x_train, None, scenes.x_test, None, scenes.classes,
        targets_train={"mask": scenes.targets_train["mask"]},
        targets_test={"mask": scenes.targets_test["mask"]},
    )  # fmt: skip
    model = create_model("resnet_mini", num_classes=K, widths=[8, 16], blocks=[1, 1])
    with pytest.raises(ConfigError, match=r"'masks-only'.*\['mask'\].*'multilabel'.*\['labels'\]"):
        Trainer(model, _config(tmp_path, task="multilabel")).fit(only_masks)
    bad = scenes.targets_train["mask"].clone()
    bad[0, 0, 0] = 7  # a class id the dataset does not have
    broken = ImageDataset(
        "bad-ids", scenes.x_train, None, scenes.x_test, None, scenes.classes,
        targets_train={"mask": bad}, targets_test={"mask": scenes.targets_test["mask"]},
        mask_classes=["background", *scenes.classes],
    )  # fmt: skip
    unet = create_model("unet", num_classes=K + 1, base_channels=8, depth=2)
    with pytest.raises(ConfigError, match=r"'bad-ids' \(train\) field 'mask'.*\[0, 4\).*\[0, 7\]"):
        Trainer(unet, _config(tmp_path, task="segment")).fit(broken)


def test_a_mask_of_another_size_names_both_shapes(scenes: ImageDataset) -> None:
    with pytest.raises(ShapeMismatchError, match=r"\(24, 24\).*\(20, 20\)"):
        ImageDataset(
            "odd",
            scenes.x_train,
            None,
            scenes.x_test,
            None,
            scenes.classes,
            targets_train={"mask": scenes.targets_train["mask"][:, :20, :20]},
        )


@pytest.mark.parametrize("combine", ["sigmoid", "mean"])
def test_ensembles_average_in_the_tasks_space(combine: str) -> None:
    torch.manual_seed(0)
    members = [
        create_model("resnet_mini", num_classes=K, widths=[8, 16], blocks=[1, 1]) for _ in range(3)
    ]
    x = torch.randn(5, 1, 16, 16)
    with torch.no_grad():
        outs = np.stack([m.eval()(x).double().numpy() for m in members])
        got = Ensemble(members, combine=combine).eval()(x).double().numpy()
    if combine == "sigmoid":
        expected = (1 / (1 + np.exp(-outs))).mean(0)
        np.testing.assert_allclose(1 / (1 + np.exp(-got)), expected, atol=1e-5)
    else:
        np.testing.assert_allclose(got, outs.mean(0), atol=1e-5)
    with pytest.raises(ConfigError, match="combine='max'"):
        Ensemble(members, combine="max")
