"""Detection through the one training loop, on tiny composed scenes: COCO numbers equal to
pycocotools', save/load, predict (PNG, COCO results, an empty image), TTA, resume, CLI."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import cnnlab
from cnnlab import TrainConfig, Trainer, create_model
from cnnlab.app.cli import main as cli
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.callbacks import Callback
from cnnlab.engine.predictor import DETECTIONS_FILE, predict_files
from cnnlab.tasks.detect import unpad

K = 3  # item classes of the tiny_scenes fixture (tests/conftest.py)


def tiny_detector(name: str = "fcos") -> torch.nn.Module:
    torch.manual_seed(0)
    small = {"backbone_args": {"widths": [8, 16, 16], "blocks": [1, 1, 1]}}
    if name == "fcos":
        return create_model("fcos", num_classes=K, channels=16, groups=4, **small)
    return create_model("ssd", num_classes=K, box_scale=2.0, **small)


def config(tmp_path: Path, **changes: object) -> TrainConfig:
    values = {
        "name": "det", "runs_dir": str(tmp_path), "epochs": 8, "batch_size": 32, "lr": 3e-3,
        "optimizer": "adam", "weight_decay": 0.0, "augment": "flip", "progress": False,
        "report": False, "autotune": False, "threads": 1, "label_smoothing": 0.0,
        "task": "detect",
    }  # fmt: skip
    return TrainConfig.from_dict({**values, **changes})


@pytest.fixture(scope="module")
def trained(tiny_scenes: ImageDataset, tmp_path_factory: pytest.TempPathFactory) -> Trainer:
    trainer = Trainer(
        tiny_detector(), config(tmp_path_factory.mktemp("det"), epochs=16), log=lambda _: None
    )
    trainer.fit(tiny_scenes)
    return trainer


def coco_dicts(
    detections: torch.Tensor, targets: list[dict[str, torch.Tensor]]
) -> tuple[dict, list]:
    """The same boxes as COCO ground truth and results (area = box area, no crowds)."""
    images, annotations, results = [], [], []
    for i, (found, truth) in enumerate(zip(detections, targets, strict=True)):
        images.append({"id": i + 1})
        for box, label in zip(truth["boxes"].tolist(), truth["labels"].tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": label,
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
        for row in found[found[:, 5] >= 0].tolist():
            results.append({"image_id": i + 1, "category_id": int(row[5]), "score": row[4],
                            "bbox": [row[0], row[1], row[2] - row[0], row[3] - row[1]]})  # fmt: skip
    gt = {"images": images, "annotations": annotations, "categories": [{"id": k} for k in range(K)]}
    return gt, results


def test_detector_trains_and_scores_as_cocoeval_does(
    trained: Trainer, tiny_scenes: ImageDataset
) -> None:
    history = trained.history
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    result = trained.evaluate(tiny_scenes.x_test, tiny_scenes.targets_test)
    assert result["map_50"] > 0.5  # chance is ~0: boxes must land on the items
    gt, results = coco_dicts(trained.predict(tiny_scenes.x_test), unpad(tiny_scenes.targets_test))
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    names = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1",
             "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]  # fmt: skip
    for name, value in zip(names, evaluation.stats, strict=True):
        assert result[name] == pytest.approx(value, abs=1e-6), name


def test_tta_mirrors_and_averages(trained: Trainer, tiny_scenes: ImageDataset) -> None:
    x = tiny_scenes.x_test[:8]
    task = trained.task
    model = trained.model.eval()
    images = (x.float() / 255 - trained.normalize.mean) / trained.normalize.std
    with torch.no_grad():
        plain = task.eval_outputs(model, images, None)
        both = task.eval_outputs(model, images, "flip")
    assert not torch.allclose(plain, both)
    # Averaging with the mirror makes a symmetric picture's outputs symmetric.
    symmetric = (images + images.flip(3)) / 2
    with torch.no_grad():
        out = task.eval_outputs(model, symmetric, "flip")
    spec = task.spec
    mirrored = task.rule().mirror(out[:, spec.mirror(task.size)])
    assert torch.allclose(out, mirrored, atol=1e-4)


def test_save_load_predict_writes_boxes_and_coco_results(
    trained: Trainer, tiny_scenes: ImageDataset, tmp_path: Path
) -> None:
    folder = cnnlab.save(trained.model, tmp_path / "saved")
    loaded = cnnlab.load(folder)
    files = []
    for i in range(2):
        path = tmp_path / f"scene{i}.png"
        Image.fromarray(tiny_scenes.x_test[i, 0].numpy()).resize((48, 48)).save(path)
        files.append(str(path))
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(blank)
    results = predict_files(folder, [*files, str(blank)], output=tmp_path / "out")
    assert all(r.error is None for r in results)
    assert results[0].detections and results[0].detections[0]["image_id"] == 1
    assert results[2].detections == [] and results[2].lines == [
        ("objects", "none found (no score >= 0.30)")
    ]
    # Boxes are in the file's pixels: a 48x48 file doubles the 24x24 model input's boxes.
    assert max(row["bbox"][0] + row["bbox"][2] for row in results[0].detections) <= 48.01
    written = json.loads((tmp_path / "out" / DETECTIONS_FILE).read_text())
    assert {row["image_id"] for row in written} <= {1, 2}
    assert {"image_id", "category_id", "bbox", "score", "file_name"} <= set(written[0])
    assert (tmp_path / "out" / "scene0.boxes.png").exists()
    assert Image.open(tmp_path / "out" / "scene0.boxes.png").size == (48, 48)
    assert torch.equal(
        loaded(torch.zeros(1, 1, 24, 24)), trained.model.eval()(torch.zeros(1, 1, 24, 24))
    )


def test_ssd_trains_through_the_same_loop(tiny_scenes: ImageDataset, tmp_path: Path) -> None:
    trainer = Trainer(tiny_detector("ssd"), config(tmp_path, epochs=6), log=lambda _: None)
    history = trainer.fit(tiny_scenes)
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    result = trainer.evaluate(tiny_scenes.x_test, tiny_scenes.targets_test)
    assert result["map_50"] > 0.2


class StopAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def before_epoch(self, trainer: Trainer) -> None:
        if trainer.epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_ends_where_an_uninterrupted_run_ends(
    tiny_scenes: ImageDataset, tmp_path: Path
) -> None:
    straight = Trainer(tiny_detector(), config(tmp_path / "a", epochs=3), log=lambda _: None)
    straight.fit(tiny_scenes)
    cut = Trainer(
        tiny_detector(), config(tmp_path / "b", epochs=3), log=lambda _: None, callbacks=[StopAt(2)]
    )
    with pytest.raises(KeyboardInterrupt):
        cut.fit(tiny_scenes)
    again = Trainer(tiny_detector(), config(tmp_path / "b", epochs=3), log=lambda _: None)
    again.fit(tiny_scenes, resume=True)
    for a, b in zip(
        straight.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_coco_eval_command_prints_the_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = {
        "images": [{"id": 1}, {"id": 2}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 4, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 4, "bbox": [0, 0, 50, 40], "area": 2000, "iscrowd": 0},
        ],
        "categories": [{"id": 4, "name": "thing"}],
    }  # fmt: skip
    results = [
        {"image_id": 1, "category_id": 4, "bbox": [11, 10, 20, 20], "score": 0.9},
        {"image_id": 2, "category_id": 4, "bbox": [30, 30, 10, 10], "score": 0.8},
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    code = cli(
        [
            "coco-eval",
            str(tmp_path / "gt.json"),
            str(tmp_path / "res.json"),
            "--json",
            str(tmp_path / "o.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("Average Precision") == 6 and out.count("Average Recall") == 6
    written = json.loads((tmp_path / "o.json").read_text())
    # One of the two objects found, at the top score: precision 1 up to recall 0.5, then
    # 0 (COCO's 101 recall points: 51 of them at <= 0.5, so AP50 = 51 / 101).
    assert written["AP50"] == pytest.approx(51 / 101, abs=1e-9)
    # A result naming a category the ground truth lacks: a clear error, exit 1.
    (tmp_path / "bad.json").write_text(json.dumps([{**results[0], "category_id": 9}]))
    assert cli(["coco-eval", str(tmp_path / "gt.json"), str(tmp_path / "bad.json")]) == 1
    assert "category_id 9" in capsys.readouterr().err


def test_evaluate_command_prints_the_coco_table(
    trained: Trainer,
    tiny_scenes: ImageDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import cnnlab.models.saved as saved

    folder = cnnlab.save(trained.model, tmp_path / "saved")
    monkeypatch.setattr(saved, "dataset_of", lambda model, name: ("tiny-scenes", tiny_scenes))
    assert cli(["evaluate", str(folder)]) == 0
    out = capsys.readouterr().out
    expected = trained.evaluate(tiny_scenes.x_test, tiny_scenes.targets_test)["map"]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in out
    assert f"= {expected:.3f}" in out
    assert cli(["evaluate", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["map"] == pytest.approx(expected)
