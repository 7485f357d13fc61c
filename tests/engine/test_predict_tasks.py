"""`cnnlab predict` for multi-label, segmentation and keypoint models: tables and pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab import TrainConfig, Trainer, create_model
from cnnlab.app.cli import main
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.faces import FLIP_INDEX, KEYPOINT_NAMES, generate_faces
from cnnlab.engine.predictor import predict_files, probabilities


def _fit(model: torch.nn.Module, data: ImageDataset, tmp_path: Path, **changes: object) -> Path:
    values = {
        "name": "t", "runs_dir": str(tmp_path), "epochs": 1, "batch_size": 32, "lr": 0.01,
        "optimizer": "adam", "progress": False, "report": False, "autotune": False,
        "threads": 1, "label_smoothing": 0.0,
    }  # fmt: skip
    trainer = Trainer(model, TrainConfig.from_dict({**values, **changes}), log=lambda _: None)
    trainer.fit(data)
    return cnnlab.save(trainer.model, tmp_path / "saved")


def _png(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def test_segmentation_writes_a_mask_at_the_files_own_size(
    tmp_path: Path, tiny_scenes: ImageDataset
) -> None:
    data = tiny_scenes
    folder = _fit(
        create_model("unet", num_classes=4, base_channels=8, depth=2),
        data,
        tmp_path,
        task="segment",
    )
    picture = np.random.default_rng(0).integers(0, 256, (30, 40), dtype=np.uint8)  # not 24x24
    file = _png(tmp_path / "scene.png", picture)
    [result] = predict_files(folder, [file], output=tmp_path / "out")
    assert result.error is None and result.files
    mask = np.asarray(Image.open(tmp_path / "out" / "scene.mask.png"))
    assert mask.shape == (30, 40) and mask.max() < 4
    assert np.asarray(Image.open(tmp_path / "out" / "scene.overlay.png")).shape == (30, 40, 3)
    shares = [float(v.split("%")[0]) for _, v in result.lines]
    assert sum(shares) == pytest.approx(100, abs=0.5)
    # the mask is the model's own prediction on the resized image, mapped back by nearest
    small = torch.from_numpy(
        np.asarray(Image.fromarray(picture).resize((24, 24), Image.Resampling.BILINEAR)).copy()
    )
    expected = probabilities(cnnlab.load(folder), small[None, None]).argmax(1)[0]
    back = torch.nn.functional.interpolate(
        expected[None, None].float(), size=(30, 40), mode="nearest"
    )
    assert np.array_equal(mask, back[0, 0].numpy().astype(np.uint8))


def test_multilabel_lists_every_class_with_its_decision(
    tmp_path: Path, tiny_scenes: ImageDataset
) -> None:
    data = tiny_scenes
    model = create_model("resnet_mini", num_classes=3, widths=[8, 16], blocks=[1, 1])
    folder = _fit(model, data, tmp_path, task="multilabel")
    file = _png(tmp_path / "s.png", data.x_test[0, 0].numpy())
    [result] = predict_files(folder, [file])
    assert sorted(name for name, _ in result.lines) == ["bar", "cross", "square"]
    probs = probabilities(cnnlab.load(folder), data.x_test[:1])[0]
    for name, value in result.lines:
        p, decision = value.split()
        assert float(p) == pytest.approx(
            float(probs[["bar", "square", "cross"].index(name)]), abs=0.006
        )
        assert decision == (
            "yes" if float(probs[["bar", "square", "cross"].index(name)]) >= 0.5 else "no"
        )


def test_keypoints_are_given_in_the_files_pixels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = generate_faces(48, seed=0), generate_faces(8, seed=1)
    data = ImageDataset(
        "faces-tiny", train.images, None, test.images, None, list(KEYPOINT_NAMES),
        targets_train={"keypoints": train.keypoints, "visible": train.visible},
        targets_test={"keypoints": test.keypoints, "visible": test.visible},
        task="keypoints", flip_index=list(FLIP_INDEX),
    )  # fmt: skip
    folder = _fit(create_model("keypoints_heatmap", num_classes=30), data, tmp_path, tta=False)
    face = test.images[0, 0].numpy()
    big = face.repeat(2, axis=0).repeat(2, axis=1)  # 192x192: resizing back gives the face
    file = _png(tmp_path / "face.png", big)
    [result] = predict_files(folder, [file], output=tmp_path / "out")
    at_96 = probabilities(cnnlab.load(folder), test.images[:1])[0]  # (15, 2) pixels at 96
    for (name, value), (x, y), expected in zip(
        result.lines, at_96.tolist(), KEYPOINT_NAMES, strict=True
    ):
        assert name == expected
        got = [float(v) for v in value.replace("x", "").replace("y", "").split()]
        assert got == pytest.approx([(x + 0.5) * 2 - 0.5, (y + 0.5) * 2 - 0.5], abs=0.06)
    assert np.asarray(Image.open(tmp_path / "out" / "face.keypoints.png")).shape == (192, 192, 3)
    assert main(["predict", str(folder), file, "--output", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "left_eye_center" in out and "wrote" in out
