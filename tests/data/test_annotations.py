"""Detection annotations: COCO, VOC and YOLO files read against hand-computed boxes, round trips."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cnnlab.core.errors import ConfigError, DataFormatError
from cnnlab.data.annotations import (
    Categories,
    ImageBoxes,
    load_detection_folder,
    read_coco,
    read_voc,
    read_yolo,
    write_coco,
    write_voc,
    write_yolo,
)


def coco_doc() -> dict[str, Any]:
    """Two 40x30 images; category ids 7 and 3 (not contiguous, not sorted), one crowd box."""
    return {
        "info": {"description": "hand-written test set"},
        "licenses": [],
        "images": [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 20, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [2, 3, 10, 5], "area": 50,
             "iscrowd": 0, "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]]},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [20.5, 10, 4.5, 6], "area": 27,
             "iscrowd": 0, "segmentation": []},
            {"id": 3, "image_id": 20, "category_id": 3, "bbox": [0, 0, 40, 30], "area": 1200,
             "iscrowd": 1, "segmentation": {"counts": [0, 1200], "size": [30, 40]}},
        ],
        "categories": [
            {"id": 7, "name": "dog", "supercategory": "animal"},
            {"id": 3, "name": "cat", "supercategory": "animal"},
        ],
    }  # fmt: skip


# Labels follow ascending category id: cat (3) -> 0, dog (7) -> 1.
COCO_BOXES = [np.array([[2, 3, 12, 8], [20.5, 10, 25, 16]]), np.array([[0, 0, 40, 30]])]
COCO_LABELS = [[1, 0], [0]]

# The layout of VOC2007 Annotations/000001.xml (values from that file; person made difficult).
VOC_XML = """<annotation>
	<folder>VOC2007</folder>
	<filename>000001.jpg</filename>
	<source>
		<database>The VOC2007 Database</database>
		<annotation>PASCAL VOC2007</annotation>
		<image>flickr</image>
	</source>
	<size>
		<width>353</width>
		<height>500</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>
	<object>
		<name>dog</name>
		<pose>Left</pose>
		<truncated>1</truncated>
		<difficult>0</difficult>
		<bndbox>
			<xmin>48</xmin>
			<ymin>240</ymin>
			<xmax>195</xmax>
			<ymax>371</ymax>
		</bndbox>
	</object>
	<object>
		<name>person</name>
		<pose>Left</pose>
		<truncated>1</truncated>
		<difficult>1</difficult>
		<bndbox>
			<xmin>8</xmin>
			<ymin>12</ymin>
			<xmax>352</xmax>
			<ymax>498</ymax>
		</bndbox>
	</object>
</annotation>
"""
# 1-based inclusive -> 0-based, exclusive max: (xmin - 1, ymin - 1, xmax, ymax).
VOC_BOXES = np.array([[47, 239, 195, 371], [7, 11, 352, 498]])

# YOLO: 40x20 images. a: (cx, cy, w, h) = (20, 10, 20, 10) and (5, 5, 10, 10) pixels.
YOLO_LABELS = {
    "a.txt": "0 0.5 0.5 0.5 0.5\n1 0.125 0.25 0.25 0.5\n",
    "b.txt": "1 0.75 0.5 0.1 0.2\n",
}
YOLO_BOXES = {"a.png": [[10, 5, 30, 15], [0, 0, 10, 10]], "b.png": [[28, 8, 32, 12]], "c.png": []}


def write_images(folder: Path, names: list[str], size: tuple[int, int]) -> Path:
    """Black RGB PNGs of ``size`` (W, H)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", size).save(folder / name)
    return folder


def write_coco_file(tmp_path: Path, doc: dict[str, Any] | str) -> Path:
    path = tmp_path / "ann.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def write_voc_folder(tmp_path: Path, xml: str = VOC_XML) -> Path:
    folder = tmp_path / "Annotations"
    folder.mkdir()
    (folder / "000001.xml").write_text(xml)
    return folder


def write_yolo_folder(tmp_path: Path, labels: dict[str, str] = YOLO_LABELS) -> tuple[Path, Path]:
    images = write_images(tmp_path / "images", ["a.png", "b.png", "c.png"], (40, 20))
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "classes.txt").write_text("cat\ndog\n")
    for name, text in labels.items():
        (folder / name).write_text(text)
    return folder, images


def boxes_of(records: list[ImageBoxes]) -> list[list[list[float]]]:
    return [r.boxes.tolist() for r in records]


def test_read_coco_hand_written(tmp_path: Path) -> None:
    records, categories = read_coco(write_coco_file(tmp_path, coco_doc()))
    assert list(categories) == ["cat", "dog"] and categories.ids == (3, 7)
    assert [r.file for r in records] == ["a.png", "b.png"]
    assert [r.image_id for r in records] == [10, 20]
    for record, boxes, labels in zip(records, COCO_BOXES, COCO_LABELS, strict=True):
        assert record.boxes.dtype == np.float32 and record.labels.dtype == np.int64
        np.testing.assert_array_equal(record.boxes, boxes)
        assert record.labels.tolist() == labels
        assert (record.width, record.height, record.dropped) == (40, 30, 0)
    assert records[0].crowd.tolist() == [False, False] and records[1].crowd.tolist() == [True]


def test_coco_round_trip_keeps_ids(tmp_path: Path) -> None:
    records, categories = read_coco(write_coco_file(tmp_path, coco_doc()))
    out = tmp_path / "out" / "written.json"
    write_coco(out, records, categories)
    doc = json.loads(out.read_text())
    assert sorted(c["id"] for c in doc["categories"]) == [3, 7]
    assert [i["id"] for i in doc["images"]] == [10, 20]
    assert [a["bbox"] for a in doc["annotations"]] == [a["bbox"] for a in coco_doc()["annotations"]]
    assert [a["category_id"] for a in doc["annotations"]] == [7, 3, 3]
    again, categories_again = read_coco(out)
    assert categories_again == categories
    assert boxes_of(again) == boxes_of(records)
    assert [r.crowd.tolist() for r in again] == [r.crowd.tolist() for r in records]


def test_coco_plain_names_are_written_as_ids_from_one(tmp_path: Path) -> None:
    record = ImageBoxes("x.png", 10, 10, [[1, 1, 5, 5]], [1])
    write_coco(tmp_path / "x.json", [record], ["a", "b"])
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["categories"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert doc["annotations"][0]["category_id"] == 2
    assert doc["annotations"][0]["bbox"] == [1, 1, 4, 4]


def test_read_voc_hand_written(tmp_path: Path) -> None:
    records, names = read_voc(write_voc_folder(tmp_path))
    assert names == ["dog", "person"]  # sorted names found
    (record,) = records
    assert (record.file, record.width, record.height) == ("000001.jpg", 353, 500)
    np.testing.assert_array_equal(record.boxes, VOC_BOXES)
    assert record.labels.tolist() == [0, 1] and record.difficult.tolist() == [False, True]
    records, names = read_voc([tmp_path / "Annotations" / "000001.xml"], ["person", "dog"])
    assert records[0].labels.tolist() == [1, 0]


def test_voc_round_trip_restores_one_based_values(tmp_path: Path) -> None:
    records, names = read_voc(write_voc_folder(tmp_path))
    write_voc(tmp_path / "out", records, names)
    text = (tmp_path / "out" / "000001.xml").read_text()
    for tag, value in (("xmin", 48), ("ymin", 240), ("xmax", 195), ("ymax", 371)):
        assert f"<{tag}>{value}</{tag}>" in text
    again, names_again = read_voc(tmp_path / "out", names)
    assert names_again == names and boxes_of(again) == boxes_of(records)
    assert again[0].difficult.tolist() == [False, True]


def test_read_yolo_sizes_from_images(tmp_path: Path) -> None:
    labels, images = write_yolo_folder(tmp_path)
    records, names = read_yolo(labels, images)
    assert names == ["cat", "dog"]  # from classes.txt
    assert {r.file: r.boxes.tolist() for r in records} == YOLO_BOXES
    assert [r.labels.tolist() for r in records] == [[0, 1], [1], []]  # c.png: no label file
    assert all((r.width, r.height) == (40, 20) for r in records)


def test_read_yolo_with_given_size(tmp_path: Path) -> None:
    labels, _ = write_yolo_folder(tmp_path)
    records, _ = read_yolo(labels, class_names=["cat", "dog"], size=(20, 40))
    expected = {"a": YOLO_BOXES["a.png"], "b": YOLO_BOXES["b.png"]}  # file: label path, no suffix
    assert {r.file: r.boxes.tolist() for r in records} == expected
    with pytest.raises(ConfigError, match="images_dir or size"):
        read_yolo(labels, class_names=["cat", "dog"])


def test_yolo_round_trip(tmp_path: Path) -> None:
    labels, images = write_yolo_folder(tmp_path)
    records = [ImageBoxes("a.png", 40, 20, [[1.3, 2.7, 33.1, 19.9]], [1])]
    records += read_yolo(labels, images)[0][1:]
    write_yolo(tmp_path / "out", records, ["cat", "dog"])
    assert (tmp_path / "out" / "classes.txt").read_text() == "cat\ndog\n"
    assert (tmp_path / "out" / "c.txt").read_text() == ""  # background image: empty file
    again, names = read_yolo(tmp_path / "out", images)
    assert names == ["cat", "dog"]
    for a, b in zip(again, records, strict=True):
        scale = np.array([a.width, a.height] * 2)
        np.testing.assert_allclose(a.boxes / scale, b.boxes / scale, atol=1e-4)
        assert a.labels.tolist() == b.labels.tolist()


def test_cross_format_coco_to_voc_and_yolo(tmp_path: Path) -> None:
    records, categories = read_coco(write_coco_file(tmp_path, coco_doc()))
    write_voc(tmp_path / "voc", records, categories)
    voc, voc_names = read_voc(tmp_path / "voc", categories)
    assert voc_names == ["cat", "dog"]
    assert boxes_of(voc) == boxes_of(records)
    assert [r.labels.tolist() for r in voc] == COCO_LABELS
    assert voc[1].difficult.tolist() == [True]  # the crowd box, kept as VOC's ignore flag
    images = write_images(tmp_path / "images", ["a.png", "b.png"], (40, 30))
    write_yolo(tmp_path / "yolo", records, categories)
    yolo, _ = read_yolo(tmp_path / "yolo", images)
    np.testing.assert_allclose(yolo[0].boxes, COCO_BOXES[0], atol=1e-4 * 40)
    assert yolo[0].labels.tolist() == COCO_LABELS[0]
    assert len(yolo[1].boxes) == 0  # YOLO skips crowd boxes


def test_degenerate_boxes_are_dropped_and_counted(tmp_path: Path) -> None:
    doc = coco_doc()
    doc["annotations"] += [
        {"id": 4, "image_id": 10, "category_id": 3, "bbox": [5, 5, 0, 4]},
        {"id": 5, "image_id": 20, "category_id": 3, "bbox": [-1, 0, 1, 5]},  # 0 wide once clipped
    ]
    with pytest.warns(UserWarning, match="dropped 2 zero-area boxes in 2 images"):
        records, _ = read_coco(write_coco_file(tmp_path, doc))
    assert [r.dropped for r in records] == [1, 1]
    assert boxes_of(records) == [b.tolist() for b in COCO_BOXES]
    xml = VOC_XML.replace("<xmax>352</xmax>", "<xmax>7</xmax>")  # xmax = xmin - 1: 0 wide
    with pytest.warns(UserWarning, match="dropped 1"):
        voc, _ = read_voc(write_voc_folder(tmp_path, xml))
    assert voc[0].dropped == 1 and voc[0].boxes.tolist() == VOC_BOXES[:1].tolist()
    labels, images = write_yolo_folder(tmp_path, {"a.txt": "0 0.5 0.5 0 0.1\n0 0.5 0.5 0.5 0.5\n"})
    with pytest.warns(UserWarning, match="dropped 1"):
        yolo, _ = read_yolo(labels, images)
    assert yolo[0].dropped == 1 and yolo[0].boxes.tolist() == [[10, 5, 30, 15]]


def test_boxes_within_one_pixel_are_clipped(tmp_path: Path) -> None:
    doc = coco_doc()
    doc["annotations"][0]["bbox"] = [-0.5, 0, 10, 30.75]
    records, _ = read_coco(write_coco_file(tmp_path, doc))
    assert records[0].boxes[0].tolist() == [0, 0, 9.5, 30]


def coco_case(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        doc = coco_doc()
        change(doc)
        return write_coco_file(tmp_path, doc)

    return make


def ann(i: int, **fields: object) -> Callable[[dict[str, Any]], object]:
    return lambda doc: doc["annotations"][i].update(fields)


COCO_BAD = {
    "json": (lambda t: write_coco_file(t, '{"images": [\n'), "ann.json: malformed JSON"),
    "inverted": (coco_case(ann(1, bbox=[20, 10, -3, 6])), "annotations[1] (id 2)"),
    "nan": (coco_case(ann(0, bbox=[float("nan"), 3, 10, 5])), "annotations[0] (id 1)"),
    "outside": (coco_case(ann(0, bbox=[35, 3, 10, 5])), "outside the 40x30 image"),
    "category": (coco_case(ann(2, category_id=99)), "annotations[2] (id 3): category_id 99"),
    "image": (coco_case(ann(1, image_id=5)), "annotations[1] (id 2): image_id 5"),
    "bbox": (coco_case(ann(0, bbox=[1, 2, 3])), "annotations[0] (id 1): bbox [1, 2, 3]"),
    "key": (coco_case(lambda d: d.pop("annotations")), "top level: 'annotations' is None"),
}


@pytest.mark.parametrize("case", COCO_BAD, ids=list(COCO_BAD))
def test_bad_coco_names_file_and_entry(case: str, tmp_path: Path) -> None:
    make, expected = COCO_BAD[case]
    with pytest.raises(DataFormatError, match=re.escape(expected)) as info:
        read_coco(make(tmp_path))
    assert str(tmp_path / "ann.json") in str(info.value) and "expected" in str(info.value)


VOC_BAD = {
    "xml": (("</size>", "</sizes>"), "000001.xml: malformed XML"),
    "inverted": (("<xmax>195</xmax>", "<xmax>30</xmax>"), "object 0 (dog) <bndbox> 48 240 30"),
    "nan": (("<xmin>48</xmin>", "<xmin>nan</xmin>"), "object 0 (dog)"),
    "outside": (("<xmax>352</xmax>", "<xmax>360</xmax>"), "object 1 (person)"),
    "missing": (("<ymax>371</ymax>", ""), "object 0 (dog): no <ymax> value"),
    "number": (("<ymin>12</ymin>", "<ymin>twelve</ymin>"), "object 1 (person): <ymin> is 'twelve'"),
    "name": (("<name>person</name>", "<name>horse</name>"), "object 1: class name 'horse'"),
}


@pytest.mark.parametrize("case", VOC_BAD, ids=list(VOC_BAD))
def test_bad_voc_names_file_and_entry(case: str, tmp_path: Path) -> None:
    (old, new), expected = VOC_BAD[case]
    folder = write_voc_folder(tmp_path, VOC_XML.replace(old, new))
    with pytest.raises(DataFormatError, match=re.escape(expected)) as info:
        read_voc(folder, ["dog", "person"])
    assert str(folder / "000001.xml") in str(info.value) and "expected" in str(info.value)


YOLO_BAD = {
    "fields": ("0 0.5 0.5 0.5", "line 3 ('0 0.5 0.5 0.5'): 4 fields; expected 5"),
    "class": ("2 0.5 0.5 0.1 0.1", "line 3 ('2 0.5 0.5 0.1 0.1'): class 2 out of range"),
    "number": ("0 0.5 x 0.1 0.1", "line 3 ('0 0.5 x 0.1 0.1'): expected an integer class"),
    "nan": ("0 nan 0.5 0.1 0.1", "line 3 ('0 nan 0.5 0.1 0.1'): NaN"),
    "outside": ("0 1.2 0.5 0.2 0.2", "line 3 ('0 1.2 0.5 0.2 0.2'): box outside"),
    "inverted": ("0 0.5 0.5 -0.2 0.2", "line 3 ('0 0.5 0.5 -0.2 0.2'): box ends before"),
}


@pytest.mark.parametrize("case", YOLO_BAD, ids=list(YOLO_BAD))
def test_bad_yolo_names_file_and_line(case: str, tmp_path: Path) -> None:
    line, expected = YOLO_BAD[case]
    labels, images = write_yolo_folder(tmp_path, {"a.txt": f"0 0.5 0.5 0.5 0.5\n\n{line}\n"})
    with pytest.raises(DataFormatError, match=re.escape(expected)) as info:
        read_yolo(labels, images)
    assert str(labels / "a.txt") in str(info.value) and "expected" in str(info.value)


def test_yolo_label_without_image(tmp_path: Path) -> None:
    labels, images = write_yolo_folder(tmp_path, {**YOLO_LABELS, "zebra.txt": ""})
    with pytest.raises(DataFormatError, match=r"zebra\.txt: names image zebra\.\* .* expected"):
        read_yolo(labels, images)


def test_coco_image_missing_from_folder(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images", ["a.png"], (40, 30))
    with pytest.raises(DataFormatError, match=r"ann\.json: image 'b\.png' \(id 20\) is not in"):
        load_detection_folder(images, write_coco_file(tmp_path, coco_doc()))


def test_image_size_must_match_annotation(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images", ["a.png", "b.png"], (40, 31))
    with pytest.raises(DataFormatError, match=r"'a\.png' \(id 10\): the annotation says 40x30"):
        load_detection_folder(images, write_coco_file(tmp_path, coco_doc()))


def test_images_of_different_sizes_need_a_size(tmp_path: Path) -> None:
    doc = coco_doc()
    doc["images"][1].update(width=50, height=30)
    images = write_images(tmp_path / "images", ["a.png"], (40, 30))
    write_images(images, ["b.png"], (50, 30))
    with pytest.raises(DataFormatError, match="images of 2 sizes"):
        load_detection_folder(images, write_coco_file(tmp_path, doc))
    data = load_detection_folder(images, tmp_path / "ann.json", size=(15, 20))
    assert data.images.shape == (2, 3, 15, 20)
    np.testing.assert_allclose(data.boxes[1], [[0, 0, 16, 15]])  # 40x30 of 50x30 -> 16x15


def test_load_detection_folder_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="received 'kitti'"):
        load_detection_folder(tmp_path, tmp_path, fmt="kitti")
    with pytest.raises(ConfigError, match="channels"):
        load_detection_folder(tmp_path, tmp_path, channels=2)


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_load_detection_folder_resize_scales_boxes(fmt: str, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    picture = np.zeros((20, 40, 3), np.uint8)  # (H, W, C): a white box over x 10..29, y 4..11
    picture[4:12, 10:30] = 255
    Image.fromarray(picture).save(images / "p.png")
    record = ImageBoxes("p.png", 40, 20, [[10, 4, 30, 12]], [1])
    names = ["cat", "dog"]  # given to the reader too: VOC would take only the names it finds
    annotations = tmp_path / {"coco": "ann.json", "voc": "voc", "yolo": "yolo"}[fmt]
    {"coco": write_coco, "voc": write_voc, "yolo": write_yolo}[fmt](annotations, [record], names)
    data = load_detection_folder(images, annotations, fmt, (10, 20), class_names=names)
    assert data.images.shape == (1, 3, 10, 20) and data.images.dtype == np.uint8
    assert data.class_names == ["cat", "dog"] and data.labels[0].tolist() == [1]
    np.testing.assert_allclose(data.boxes[0], [[5, 2, 15, 6]], atol=1e-4)  # halved
    x0, y0, x1, y1 = data.boxes[0][0].astype(int)
    assert (data.images[0, :, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] == 255).all()  # still white
    far = np.ones((10, 20), bool)  # pixels more than 1 pixel outside the box
    far[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = False
    assert data.images[0][:, far].max() == 0
    gray = load_detection_folder(images, annotations, fmt, class_names=names, channels=1)
    assert gray.images.shape == (1, 1, 20, 40)
    np.testing.assert_allclose(gray.boxes[0], [[10, 4, 30, 12]], atol=1e-4)


def test_failed_write_leaves_old_file(tmp_path: Path) -> None:
    path = write_coco_file(tmp_path, coco_doc())
    before = path.read_text()
    bad = ImageBoxes("x.png", 10, 10, [[1, 1, 5, 5]], [5])
    with pytest.raises(DataFormatError, match=r"x\.png: box 0 has label 5; expected 0\.\.1"):
        write_coco(path, [bad], Categories(("cat", "dog"), (3, 7)))
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["ann.json"]


def test_writers_refuse_clashing_names(tmp_path: Path) -> None:
    records = [ImageBoxes(f, 10, 10, [], []) for f in ("a/x.png", "b/x.png")]
    with pytest.raises(DataFormatError, match=r"b/x\.png: its annotation file x\.xml clashes"):
        write_voc(tmp_path, records, ["cat"])
    write_yolo(tmp_path / "yolo", records, ["cat"])  # YOLO mirrors sub-folders: no clash
    assert (tmp_path / "yolo" / "a" / "x.txt").is_file()
