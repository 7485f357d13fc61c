"""Transfer and ensembles beyond classification: a classifier's body starts a segmenter,
and segmenters combine per pixel."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.config import TrainConfig
from cnnlab.ensemble import Ensemble, fit_combiner
from cnnlab.runs import run_training

SMALL = {"widths": [8, 16], "blocks": [1, 1]}


def quick(tmp_path: Path, name: str, **values: object) -> TrainConfig:
    base: dict[str, object] = {
        "name": name, "runs_dir": str(tmp_path), "epochs": 1, "batch_size": 32,
        "augment": "none", "progress": False, "threads": 1, "report": False, "tta": False,
    }  # fmt: skip
    return TrainConfig(**{**base, **values})  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_classifier_run_starts_a_segmenter(tiny_scenes: ImageDataset, tmp_path: Path) -> None:
    pre = quick(tmp_path, "pre", model="resnet_mini", model_args=SMALL, task="multilabel")
    run_training(pre, data=tiny_scenes)
    source = cnnlab.load(tmp_path / "pre").state_dict()
    seg = quick(
        tmp_path, "seg", model="fcn8s", task="segment", weights=str(tmp_path / "pre"),
        model_args={"backbone_args": SMALL}, epochs=2, freeze="features.body.0-1",
    )  # fmt: skip
    metrics = run_training(seg, data=tiny_scenes)
    model = cnnlab.load(tmp_path / "seg")
    assert model.cnnlab_record.extra["pretrained"]["layout"] == "backbone"  # type: ignore[union-attr]
    # The frozen stem is still the classifier's; the rest trained.
    assert torch.equal(model.state_dict()["features.body.0.weight"], source["features.0.weight"])
    assert metrics["test_miou"] > 0.2


def test_segmenters_vote_per_pixel(tiny_scenes: ImageDataset) -> None:
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(
            cnnlab.create_model("fcn8s", num_classes=4, in_channels=1, backbone_args=SMALL).eval()
        )
    x = torch.randn(2, 1, 24, 24)
    with torch.no_grad():
        vote = Ensemble(members, combine="vote")(x)
        tops = torch.stack([m(x).argmax(1) for m in members])  # (M, B, H, W)
    assert vote.shape == (2, 4, 24, 24)
    counts = torch.nn.functional.one_hot(tops, 4).sum(0)  # (B, H, W, 4)
    clear = counts.max(-1).values >= 2  # pixels with a majority
    assert torch.equal(vote.argmax(1)[clear], counts.argmax(-1)[clear])
    with pytest.raises(ConfigError, match="fitted for classifiers"):
        fit_combiner(
            Ensemble(members, combine="weighted"), tiny_scenes.x_train[:8],
            torch.zeros(8, dtype=torch.long), {"mean": [0.0], "std": [1.0]},
        )  # fmt: skip
