"""Facial keypoints: the Kaggle CSV layout, and generated faces whose points sit on their features."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.core.errors import ConfigError, DataFormatError
from cnnlab.data.faces import (
    CSV_COLUMNS,
    FLIP_INDEX,
    KEYPOINT_NAMES,
    FaceKeypoints,
    generate_faces,
    hflip_faces,
    read_facial_keypoints_csv,
)

# The header of Kaggle's training.csv, copied from the competition's data page.
PUBLISHED_HEADER = (
    "left_eye_center_x,left_eye_center_y,right_eye_center_x,right_eye_center_y,"
    "left_eye_inner_corner_x,left_eye_inner_corner_y,left_eye_outer_corner_x,"
    "left_eye_outer_corner_y,right_eye_inner_corner_x,right_eye_inner_corner_y,"
    "right_eye_outer_corner_x,right_eye_outer_corner_y,left_eyebrow_inner_end_x,"
    "left_eyebrow_inner_end_y,left_eyebrow_outer_end_x,left_eyebrow_outer_end_y,"
    "right_eyebrow_inner_end_x,right_eyebrow_inner_end_y,right_eyebrow_outer_end_x,"
    "right_eyebrow_outer_end_y,nose_tip_x,nose_tip_y,mouth_left_corner_x,mouth_left_corner_y,"
    "mouth_right_corner_x,mouth_right_corner_y,mouth_center_top_lip_x,mouth_center_top_lip_y,"
    "mouth_center_bottom_lip_x,mouth_center_bottom_lip_y,Image"
)
# The four points given in most rows of the Kaggle training file.
FEW = ("left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip")


def kaggle_rows(n: int, seed: int = 0) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """Rows in the published layout; odd rows give only the FEW points (the rest empty)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 95.99, size=(n, 15, 2)).round(4)
    pixels = rng.integers(0, 256, size=(n, 96 * 96))
    rows = []
    for i in range(n):
        cells = []
        for k, name in enumerate(PUBLISHED_HEADER.split(",")[:-1:2]):
            keep = i % 2 == 0 or name.removesuffix("_x") in FEW
            cells += [f"{points[i, k, 0]}", f"{points[i, k, 1]}"] if keep else ["", ""]
            if not keep:
                points[i, k] = np.nan
        rows.append([*cells, " ".join(map(str, pixels[i]))])
    return rows, points, pixels


def write_csv(path: Path, rows: list[list[str]], header: str = PUBLISHED_HEADER) -> Path:
    with path.open("w", newline="") as f:
        f.write(header + "\n")
        csv.writer(f).writerows(rows)
    return path


# -- the CSV ------------------------------------------------------------------------------


def test_columns_are_the_published_ones() -> None:
    assert ",".join(CSV_COLUMNS) == PUBLISHED_HEADER
    assert tuple(c.removesuffix("_x") for c in CSV_COLUMNS[:-1:2]) == KEYPOINT_NAMES


def test_csv_round_trip_keeps_rows_with_missing_points(tmp_path: Path) -> None:
    rows, points, pixels = kaggle_rows(4)
    faces = read_facial_keypoints_csv(write_csv(tmp_path / "training.csv", rows))
    assert faces.images.shape == (4, 1, 96, 96) and faces.images.dtype == torch.uint8
    assert faces.keypoints.dtype == torch.float32 and faces.visible.dtype == torch.bool
    np.testing.assert_array_equal(faces.images.reshape(4, -1).numpy(), pixels)
    np.testing.assert_allclose(faces.keypoints.numpy(), points, rtol=0, atol=1e-5)  # NaN == NaN
    assert faces.visible[0].all() and faces.visible[2].all()
    few = [KEYPOINT_NAMES.index(name) for name in FEW]
    assert torch.nonzero(faces.visible[1]).flatten().tolist() == sorted(few)
    assert torch.isnan(faces.keypoints[1][~faces.visible[1]]).all()


def test_windows_line_endings_and_a_byte_order_mark(tmp_path: Path) -> None:
    rows, points, _ = kaggle_rows(2)
    path = tmp_path / "training.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f, lineterminator="\r\n").writerows([PUBLISHED_HEADER.split(","), *rows])
    faces = read_facial_keypoints_csv(path)
    np.testing.assert_allclose(faces.keypoints.numpy(), points, rtol=0, atol=1e-5)


def swapped(header: str, a: int, b: int) -> str:
    names = header.split(",")
    names[a], names[b] = names[b], names[a]
    return ",".join(names)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", "empty file; expected the header left_eye_center_x,"),
        ("ImageId,Image", "Kaggle test.csv layout"),
        (PUBLISHED_HEADER.replace("nose_tip_y,", ""), "missing columns: nose_tip_y; unexpected columns: none"),
        ("ImageId," + PUBLISHED_HEADER, "missing columns: none; unexpected columns: ImageId"),
        (PUBLISHED_HEADER.replace("nose_tip_x", "nose_x"), "missing columns: nose_tip_x; unexpected columns: nose_x"),
        (swapped(PUBLISHED_HEADER, 2, 4), "header column 3 is 'left_eye_inner_corner_x'; expected 'right_eye_center_x'"),
    ],
)  # fmt: skip
def test_bad_header(tmp_path: Path, header: str, expected: str) -> None:
    path = tmp_path / "training.csv"
    path.write_text(header + "\n" if header else "")
    with pytest.raises(DataFormatError, match=re.escape(expected)) as caught:
        read_facial_keypoints_csv(path)
    assert str(path) in str(caught.value)


def set_cell(column: str, value: str) -> tuple[int, str]:
    return CSV_COLUMNS.index(column), value


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (set_cell("nose_tip_x", "abc"), "line 3, column nose_tip_x: 'abc'; expected a pixel coordinate in [0, 96)"),
        (set_cell("nose_tip_y", "96.0"), "line 3, column nose_tip_y: '96.0'; expected a pixel coordinate in [0, 96)"),
        (set_cell("left_eye_center_x", "-0.5"), "column left_eye_center_x: '-0.5'"),
        (set_cell("mouth_left_corner_y", "nan"), "column mouth_left_corner_y: 'nan'"),
        (set_cell("nose_tip_y", ""), "nose_tip_x='"),  # x without y
        (set_cell("Image", "1 2 3"), "line 3, column Image: 3 pixel values; expected 96*96 = 9216"),
        (set_cell("Image", ""), "line 3, column Image: 0 pixel values"),
        (set_cell("Image", "7 12a" + " 0" * 9214), "line 3, column Image: pixel 1 is '12a'; expected an integer in 0..255"),
        (set_cell("Image", "7 1.5" + " 0" * 9214), "pixel 1 is '1.5'"),
        (set_cell("Image", "300" + " 0" * 9215), "line 3, column Image: pixel values in [0, 300]; expected integers in 0..255"),
        (set_cell("Image", "-1" + " 0" * 9215), "pixel values in [-1, 0]"),
    ],
)  # fmt: skip
def test_bad_cell_names_the_file_line_and_column(
    tmp_path: Path, cell: tuple[int, str], expected: str
) -> None:
    rows, _, _ = kaggle_rows(3)
    column, value = cell
    rows[1][column] = value  # data row 2 is line 3 of the file
    path = write_csv(tmp_path / "training.csv", rows)
    with pytest.raises(DataFormatError, match=re.escape(expected)) as caught:
        read_facial_keypoints_csv(path)
    assert str(path) in str(caught.value)


def test_short_row_names_the_line(tmp_path: Path) -> None:
    rows, _, _ = kaggle_rows(3)
    del rows[2][5]
    path = write_csv(tmp_path / "training.csv", rows)
    with pytest.raises(DataFormatError, match="line 4: expected 31 cells, received 30"):
        read_facial_keypoints_csv(path)


# -- flipping -----------------------------------------------------------------------------


def test_flip_index_swaps_left_and_right_names() -> None:
    def mirrored(name: str) -> str:
        return name.replace("left", "@").replace("right", "left").replace("@", "right")

    assert [KEYPOINT_NAMES[i] for i in FLIP_INDEX] == [mirrored(n) for n in KEYPOINT_NAMES]
    assert [FLIP_INDEX[i] for i in FLIP_INDEX] == list(range(15))  # an involution
    assert sum(i == j for i, j in enumerate(FLIP_INDEX)) == 3  # nose tip and the lip centres


# -- the generator ------------------------------------------------------------------------

N = 200


@pytest.fixture(scope="module")
def faces() -> FaceKeypoints:
    return generate_faces(N, seed=1)


def point(faces: FaceKeypoints, name: str) -> np.ndarray:
    """(N, 2) coordinates of one named keypoint."""
    return faces.keypoints[:, KEYPOINT_NAMES.index(name)].numpy()


def mean3x3(images: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Mean of the 3x3 pixels around each face's point (x, y), rounded to a pixel."""
    x, y = np.rint(xy).astype(int).T
    rows = np.arange(len(images))
    return np.mean([images[rows, y + dy, x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def test_shapes_determinism_and_all_visible(faces: FaceKeypoints) -> None:
    assert faces.images.shape == (N, 1, 96, 96) and faces.images.dtype == torch.uint8
    assert faces.keypoints.shape == (N, 15, 2) and faces.keypoints.dtype == torch.float32
    assert faces.visible.all()
    again = generate_faces(N, seed=1)
    assert torch.equal(again.images, faces.images)
    assert torch.equal(again.keypoints, faces.keypoints)
    assert not torch.equal(generate_faces(N, seed=2).images, faces.images)
    assert faces.images.float().std() > 30  # not a blank image


def test_keypoints_inside_the_image_and_poses_vary(faces: FaceKeypoints) -> None:
    assert faces.keypoints.min() >= 0 and faces.keypoints.max() <= 95
    eyes = point(faces, "left_eye_center") - point(faces, "right_eye_center")
    angles = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    # ±15° of pose, plus up to ~5° from the eyes' own heights (each side ±1 px of ~24).
    assert -20 < angles.min() < -10 and 10 < angles.max() < 20
    spacing = np.hypot(*eyes.T)
    assert spacing.max() / spacing.min() > 1.5  # scale 0.8 to 1.2 and face shapes


def test_left_is_on_the_right_of_the_image_before_and_after_flipping(
    faces: FaceKeypoints,
) -> None:
    for f in (faces, hflip_faces(faces)):
        assert (point(f, "left_eye_center")[:, 0] > point(f, "right_eye_center")[:, 0]).all()
        assert (
            point(f, "left_eye_outer_corner")[:, 0] > point(f, "left_eye_inner_corner")[:, 0]
        ).all()
        assert (
            point(f, "right_eye_inner_corner")[:, 0] > point(f, "right_eye_outer_corner")[:, 0]
        ).all()
        assert (point(f, "mouth_left_corner")[:, 0] > point(f, "mouth_right_corner")[:, 0]).all()


def test_flipping_twice_gives_the_faces_back(faces: FaceKeypoints) -> None:
    back = hflip_faces(hflip_faces(faces))
    assert torch.equal(back.images, faces.images)
    torch.testing.assert_close(back.keypoints, faces.keypoints, rtol=0, atol=1e-5)


def test_features_are_drawn_at_their_keypoints(faces: FaceKeypoints) -> None:
    for f in (faces, hflip_faces(faces)):
        images = f.images[:, 0].numpy().astype(float)
        cheek = mean3x3(images, (point(f, "left_eye_center") + point(f, "mouth_left_corner")) / 2)
        pupil = mean3x3(images, point(f, "left_eye_center"))
        nose = mean3x3(images, point(f, "nose_tip"))
        brow = mean3x3(
            images, (point(f, "right_eyebrow_inner_end") + point(f, "right_eyebrow_outer_end")) / 2
        )
        lips = mean3x3(
            images, (point(f, "mouth_center_top_lip") + point(f, "mouth_center_bottom_lip")) / 2
        )
        assert (pupil < cheek - 40).all()
        assert (nose < cheek - 5).all()
        assert (brow < cheek - 15).all()
        assert (lips < cheek - 20).all()


def pupil_centre(image: np.ndarray, xy: np.ndarray, cheek: float) -> np.ndarray:
    """Centroid (x, y) of the dark pupil within 3 px of the rounded point, darkness-weighted."""
    x, y = np.rint(xy).astype(int)
    window = image[y - 3 : y + 4, x - 3 : x + 4]
    weight = np.clip((window.min() + cheek) / 2 - window, 0, None)
    weight /= weight.sum()
    dy, dx = np.mgrid[-3:4, -3:4]
    return np.array([x + (weight * dx).sum(), y + (weight * dy).sum()])


@pytest.mark.parametrize("flip", [False, True])
def test_eye_centre_is_the_pupil_centre_in_pixel_centre_coordinates(
    faces: FaceKeypoints, flip: bool
) -> None:
    f = hflip_faces(faces) if flip else faces
    images = f.images[:, 0].numpy().astype(float)
    errors = []
    for name in ("left_eye_center", "right_eye_center"):
        side = name.split("_")[0]
        cheek = mean3x3(images, (point(f, name) + point(f, f"mouth_{side}_corner")) / 2)
        for i in range(N):
            xy = point(f, name)[i]
            errors.append(pupil_centre(images[i], xy, cheek[i]) - xy)
    errors_px = np.array(errors)
    assert np.abs(errors_px).max() < 0.4
    # Half a pixel off (x' = size - x, or drawing at corners) would show here.
    assert np.abs(errors_px.mean(axis=0)).max() < 0.05  # measured: 0.008


def test_other_sizes_scale_the_face() -> None:
    small = generate_faces(50, size=48, seed=3)
    assert small.images.shape == (50, 1, 48, 48)
    assert small.keypoints.min() >= 0 and small.keypoints.max() <= 47
    eyes = small.keypoints[:, 0] - small.keypoints[:, 1]
    assert 8 < float(eyes.norm(dim=1).mean()) < 20  # about half of ~30 px at 96


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [({"count": 0}, "count >= 1, received count=0"), ({"count": 2, "size": 16}, "size=16")],
)
def test_bad_generator_arguments(kwargs: dict[str, int], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        generate_faces(**kwargs)


def test_generation_speed() -> None:
    start = time.perf_counter()
    generate_faces(1000, seed=4)
    seconds = time.perf_counter() - start
    assert seconds < 10, f"1000 faces took {seconds:.1f} s; expected about 0.4 s"
