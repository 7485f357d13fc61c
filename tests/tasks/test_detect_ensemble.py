"""Detection ensembles: the members' boxes fused (weighted boxes fusion, or NMS over all
their candidates), checked against each member's own detections, saved and evaluated."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab import TrainConfig, Trainer, create_model
from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.predictor import evaluate_model, task_of
from cnnlab.ensemble import Ensemble
from cnnlab.models.saved import preprocess
from cnnlab.runs import run_training
from cnnlab.tasks.box_fusion import weighted_boxes_fusion

K = 3  # item classes of the tiny_scenes fixture (tests/conftest.py)


def detector(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    small = {"backbone_args": {"widths": [8, 16, 16], "blocks": [1, 1, 1]}}
    return create_model("fcos", num_classes=K, channels=16, groups=4, **small)


@pytest.fixture(scope="module")
def members(
    tiny_scenes: ImageDataset, tmp_path_factory: pytest.TempPathFactory
) -> list[torch.nn.Module]:
    out = []
    for seed in (0, 1):
        config = TrainConfig(
            name=f"det{seed}", runs_dir=str(tmp_path_factory.mktemp("det")), epochs=8,
            batch_size=32, lr=3e-3, optimizer="adam", weight_decay=0.0, augment="flip",
            progress=False, report=False, autotune=False, threads=1, label_smoothing=0.0,
            task="detect", seed=seed,
        )  # fmt: skip
        trainer = Trainer(detector(seed), config, log=lambda _: None)
        trainer.fit(tiny_scenes)
        out.append(trainer.model.eval())
    return out


def inputs(model: torch.nn.Module, data: ImageDataset, n: int = 8) -> torch.Tensor:
    record = cnnlab.core.records.require_record(model)
    return preprocess(data.x_test[:n], {"mean": record.mean, "std": record.std})


def detections(model: torch.nn.Module, x: torch.Tensor) -> list:
    with torch.no_grad():
        return task_of(model).detections(model(x))


def test_wbf_fuses_each_members_own_detections(
    members: list[torch.nn.Module], tiny_scenes: ImageDataset
) -> None:
    x = inputs(members[0], tiny_scenes)
    ensemble = Ensemble(members, combine="wbf").eval()
    got = detections(ensemble, x)
    each = [detections(m, x) for m in members]
    assert sum(len(b) for b, _, _ in got) > 0
    for i, (boxes, scores, labels) in enumerate(got):
        want = weighted_boxes_fusion(
            *zip(*(e[i] for e in each), strict=True), iou_thr=0.6
        )  # FCOS NMS IoU
        torch.testing.assert_close(boxes, want[0][:100])
        torch.testing.assert_close(scores, want[1][:100])
        assert torch.equal(labels, want[2][:100])


def test_nms_over_identical_members_gives_the_single_models_boxes(
    members: list[torch.nn.Module], tiny_scenes: ImageDataset
) -> None:
    one = members[0]
    x = inputs(one, tiny_scenes)
    twins = Ensemble([one, copy.deepcopy(one)], combine="nms").eval()
    for (b, s, c), (b1, s1, c1) in zip(detections(twins, x), detections(one, x), strict=True):
        assert len(b1) > 0
        torch.testing.assert_close(b, b1)  # each twin's box suppressed by the other (IoU 1)
        torch.testing.assert_close(s, s1)
        assert torch.equal(c, c1)


def test_a_fused_ensemble_evaluates_with_tta_saves_and_loads(
    members: list[torch.nn.Module], tiny_scenes: ImageDataset, tmp_path: Path
) -> None:
    assert Ensemble(members).combine == "mean"  # the detect task's default, by measurement
    ensemble = Ensemble(members, combine="wbf").eval()
    targets = {k: v for k, v in tiny_scenes.targets_test.items()}
    fused = evaluate_model(ensemble, tiny_scenes.x_test, targets)
    singles = [evaluate_model(m, tiny_scenes.x_test, targets)["map"] for m in members]
    assert fused["map"] > 0.5 * max(singles)
    # TTA: the mirrored members' outputs map back member by member.
    task, x = task_of(ensemble), inputs(ensemble, tiny_scenes)
    with torch.no_grad():
        both = task.eval_outputs(ensemble, x, "flip")
        each = [task_of(m).eval_outputs(m, x, "flip") for m in members]
    torch.testing.assert_close(both, torch.cat(each, dim=1))
    again = cnnlab.load(cnnlab.save(ensemble, tmp_path / "ens"))
    assert again.combine == "wbf" and task_of(again).members == 2
    with torch.no_grad():
        torch.testing.assert_close(again(x), ensemble(x))


def test_box_fusion_refuses_members_of_other_heads_and_non_detectors() -> None:
    a, b = detector(0), create_model("ssd", num_classes=K, box_scale=2.0)
    records = cnnlab.core.records
    for m in (a, b):
        args = {"image_size": [32, 32], "spec": m.spec.to_dict()}
        records.set_record(m, records.ModelRecord("x", task="detect", task_args=args))
    with pytest.raises(ConfigError, match="one PriorSpec"):
        Ensemble([a, b], combine="wbf")
    classifiers = [create_model("resnet_mini", num_classes=K, in_channels=1) for _ in range(2)]
    with pytest.raises(ConfigError, match="fuses detectors"):
        Ensemble(classifiers, combine="nms")(torch.zeros(1, 1, 28, 28))


def test_a_run_refuses_a_rule_that_does_not_fit_the_task_before_training(
    bars: ImageDataset, tmp_path: Path
) -> None:
    config = TrainConfig(
        name="x", runs_dir=str(tmp_path), model="resnet_mini", ensemble=2, epochs=1,
        ensemble_combine="nms", progress=False, report=False,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="does not combine the classify task's outputs"):
        run_training(config, data=bars)
    assert not (tmp_path / "x").exists()  # no member started


def test_a_detection_ensemble_trains_from_the_run(
    tiny_scenes: ImageDataset, tmp_path: Path
) -> None:
    config = TrainConfig(
        name="ens", runs_dir=str(tmp_path), model="fcos", epochs=2, batch_size=32,
        lr=3e-3, optimizer="adam", weight_decay=0.0, progress=False, report=False,
        autotune=False, threads=1, task="detect", ensemble=2, tta=False, ensemble_combine="wbf",
        model_args={"channels": 16, "groups": 4,
                    "backbone_args": {"widths": [8, 16, 16], "blocks": [1, 1, 1]}},
    )  # fmt: skip
    metrics = run_training(config, data=tiny_scenes)
    assert metrics["combine"] == "wbf" and len(metrics["members"]) == 2
    assert 0 <= metrics["test_map"] <= 1
    loaded = cnnlab.load(tmp_path / "ens")
    assert loaded.combine == "wbf" and task_of(loaded).fusion == "wbf"
