"""The detection-folder dataset: COCO, VOC and YOLO annotations to padded box targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from cnnlab import data
from cnnlab.core.errors import ConfigError

W, H = 40, 30  # every image on disk
SIZE = (32, 32)  # (H, W) loaded: x scales by 0.8, y by 32/30
# Per image: (x0, y0, x1, y1) pixels, x1 and y1 exclusive, and the class name. Every
# image's set of boxes is unique, so a loaded sample names the file it came from.
BOXES = [
    [(2, 3, 12, 13, "square")],
    [(20, 5, 36, 10, "bar"), (4, 15, 14, 25, "square")],
    [(10, 10, 20, 20, "square")],
    [(1, 20, 39, 28, "bar")],
    [(25, 2, 35, 12, "square"), (3, 3, 13, 8, "bar")],
    [(15, 12, 25, 22, "square")],
]
COCO_IDS = {"square": 3, "bar": 7}  # labels follow ascending id: square 0, bar 1
NAMES = {"coco": ["square", "bar"], "voc": ["bar", "square"], "yolo": ["square", "bar"]}

Rows = list[tuple[float, float, float, float, int]]


def write_images(folder: Path) -> None:
    """Black images with the boxes filled white (PIL's rectangle includes its end pixel)."""
    folder.mkdir()
    for i, boxes in enumerate(BOXES):
        image = Image.new("L", (W, H), 0)
        for x0, y0, x1, y1, _ in boxes:
            ImageDraw.Draw(image).rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
        image.save(folder / f"img{i}.png")


def write_coco(path: Path) -> None:
    """COCO [x, y, w, h] boxes, plus one crowd box on img5 that the targets leave out."""
    images = [{"id": i + 1, "file_name": f"img{i}.png", "width": W, "height": H} for i in range(6)]
    anns = [
        {"id": len(images) * 10 + j, "image_id": i + 1, "category_id": COCO_IDS[name],
         "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0}
        for i, boxes in enumerate(BOXES)
        for j, (x0, y0, x1, y1, name) in enumerate(boxes)
    ]  # fmt: skip
    anns.append({"id": 99, "image_id": 6, "category_id": 7, "bbox": [0, 0, 5, 5], "iscrowd": 1})
    cats = [{"id": cid, "name": name} for name, cid in COCO_IDS.items()]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def write_voc(folder: Path) -> None:
    """VOC <bndbox> is 1-based and inclusive: xmin = x0 + 1, xmax = x1."""
    folder.mkdir()
    for i, boxes in enumerate(BOXES):
        objects = "".join(
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
            f"<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for x0, y0, x1, y1, name in boxes
        )
        (folder / f"img{i}.xml").write_text(
            f"<annotation><filename>img{i}.png</filename><size><width>{W}</width>"
            f"<height>{H}</height><depth>1</depth></size>{objects}</annotation>"
        )


def write_yolo(folder: Path) -> None:
    """YOLO lines: class cx cy w h, each divided by the image size."""
    folder.mkdir()
    (folder / "classes.txt").write_text("square\nbar\n")
    for i, boxes in enumerate(BOXES):
        (folder / f"img{i}.txt").write_text(
            "".join(
                f"{NAMES['yolo'].index(name)} {(x0 + x1) / 2 / W} {(y0 + y1) / 2 / H} "
                f"{(x1 - x0) / W} {(y1 - y0) / H}\n"
                for x0, y0, x1, y1, name in boxes
            )
        )


WRITERS = {
    "coco": ("ann.json", write_coco),
    "voc": ("voc", write_voc),
    "yolo": ("yolo", write_yolo),
}


def expected_rows(fmt: str) -> list[Rows]:
    """Each image's boxes scaled to SIZE, with its label in ``fmt``'s class order."""
    sx, sy = SIZE[1] / W, SIZE[0] / H
    return sorted(
        sorted(
            (x0 * sx, y0 * sy, x1 * sx, y1 * sy, NAMES[fmt].index(name))
            for x0, y0, x1, y1, name in boxes
        )
        for boxes in BOXES
    )


def loaded_rows(boxes: torch.Tensor, classes: torch.Tensor) -> list[Rows]:
    """Each sample's real rows; padding rows must be all-zero boxes with class -1."""
    rows = []
    for b, c in zip(boxes, classes, strict=True):
        real = c >= 0
        assert torch.equal(c[~real], torch.full_like(c[~real], -1))
        assert not b[~real].any()
        assert bool(real[: int(real.sum())].all())  # real rows first, padding after
        rows.append(
            sorted(
                (*(float(v) for v in box), int(k)) for box, k in zip(b[real], c[real], strict=True)
            )
        )
    return rows


def load(tmp_path: Path, fmt: str, **options: object) -> data.ImageDataset:
    write_images(tmp_path / "images")
    name, writer = WRITERS[fmt]
    writer(tmp_path / name)
    return data.load(
        "detection-folder", path=tmp_path / "images", annotations=tmp_path / name,
        format=fmt, image_size=SIZE, cache_dir=tmp_path, **options,
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_boxes_scaled_padded_and_split(fmt: str, tmp_path: Path) -> None:
    ds = load(tmp_path, fmt)
    assert ds.task == "detect" and ds.classes == NAMES[fmt]
    assert ds.input_shape == (3, *SIZE) and ds.x_train.dtype == torch.uint8
    assert (len(ds.x_train), len(ds.x_test)) == (5, 1)  # round(6 * 0.2) test
    for targets, n in ((ds.targets_train, 5), (ds.targets_test, 1)):
        assert targets["boxes"].dtype == torch.float32 and targets["classes"].dtype == torch.int64
        assert targets["boxes"].shape[:2] == targets["classes"].shape and len(targets["boxes"]) == n
    assert ds.targets_train["boxes"].shape[1] == 2  # the most boxes in one image
    rows = loaded_rows(ds.targets_train["boxes"], ds.targets_train["classes"])
    rows += loaded_rows(ds.targets_test["boxes"], ds.targets_test["classes"])
    # Every image once (train + test = all 6), each box scaled by (0.8, 32/30).
    got, want = sorted(rows), expected_rows(fmt)
    assert [[row[4] for row in image] for image in got] == [
        [row[4] for row in image] for image in want
    ]
    assert [v for image in got for row in image for v in row[:4]] == pytest.approx(
        [v for image in want for row in image for v in row[:4]], abs=1e-4
    )
    assert (
        ds.extra["ignored"]
        == ("1" if fmt == "coco" else "0") + " crowd or difficult boxes left out"
    )


def test_images_stay_with_their_boxes(tmp_path: Path) -> None:
    """The split moves an image and its targets together: box centres are white, corners black."""
    ds = load(tmp_path, "coco", test_fraction=0.5, seed=3)
    assert (len(ds.x_train), len(ds.x_test)) == (3, 3)
    for x, targets in ((ds.x_train, ds.targets_train), (ds.x_test, ds.targets_test)):
        for image, boxes, classes in zip(x, targets["boxes"], targets["classes"], strict=True):
            for x0, y0, x1, y1 in boxes[classes >= 0].tolist():
                assert int(image[0, int((y0 + y1) / 2), int((x0 + x1) / 2)]) > 200
            assert int(image[:, -1, -1].max()) == 0  # no box reaches the bottom-right corner


def test_seed_chooses_the_split(tmp_path: Path) -> None:
    first = load(tmp_path, "coco", seed=1)
    again = data.load(
        "detection-folder", path=tmp_path / "images", annotations=tmp_path / "ann.json", seed=1
    )
    assert torch.equal(first.targets_test["classes"], again.targets_test["classes"])
    tests = {
        tuple(data.load("detection-folder", path=tmp_path / "images",
                        annotations=tmp_path / "ann.json", seed=s).x_test.flatten().tolist())
        for s in range(6)
    }  # fmt: skip
    assert len(tests) > 1


def test_registered_for_the_detect_task() -> None:
    assert "detection-folder" in data.list_datasets("detect")
    assert data.describe("detection-folder")["task"] == "detect"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"annotations": "a.json"}, r"expected option path=<images folder>, received none"),
        ({"path": "images"}, r"expected option annotations=<file or folder>, received none"),
        (
            {"path": "i", "annotations": "a", "format": "kitti"},
            r"format='kitti'; expected one of coco, voc, yolo",
        ),
        ({"path": "i", "annotations": "a", "test_fraction": 1.0}, r"test_fraction in \(0, 1\)"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        data.load("detection-folder", **options)


def test_too_few_images_to_split(tmp_path: Path) -> None:
    write_images(tmp_path / "images")
    doc = {
        "images": [{"id": 1, "file_name": "img0.png", "width": W, "height": H}],
        "annotations": [],
        "categories": [{"id": 1, "name": "square"}],
    }
    (tmp_path / "one.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="1 annotated images leave none to train on"):
        data.load("detection-folder", path=tmp_path / "images", annotations=tmp_path / "one.json")


def test_boxes_at_the_edge_stay_inside_the_resized_image(tmp_path: Path) -> None:
    """21 px -> 96 px: 21 * float32(96 / 21) rounds past 96; the detect task refuses that."""
    (tmp_path / "images").mkdir()
    for i in range(2):
        Image.new("L", (21, 21), 255).save(tmp_path / "images" / f"{i}.png")
    doc = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 21, "height": 21} for i in range(2)],
        "annotations": [
            {"id": i + 1, "image_id": i, "category_id": 1, "bbox": [0, 0, 21, 21]} for i in range(2)
        ],
        "categories": [{"id": 1, "name": "all"}],
    }
    (tmp_path / "edge.json").write_text(json.dumps(doc))
    ds = data.load(
        "detection-folder", path=tmp_path / "images", annotations=tmp_path / "edge.json",
        image_size=96, test_fraction=0.5,
    )  # fmt: skip
    for targets in (ds.targets_train, ds.targets_test):
        assert targets["boxes"].tolist() == [[[0.0, 0.0, 96.0, 96.0]]]
