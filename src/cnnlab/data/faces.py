"""Facial keypoints: the Kaggle Facial Keypoints Detection CSV, and a procedural face generator."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from cnnlab.core.errors import ConfigError, DataFormatError, ShapeMismatchError

IMAGE_SIZE = 96  # Kaggle images are 96x96 grey
# The 15 points in the competition's column order. "Left" is the subject's left, which
# appears on the right of the image (larger x).
KEYPOINT_NAMES: tuple[str, ...] = (
    "left_eye_center", "right_eye_center",
    "left_eye_inner_corner", "left_eye_outer_corner",
    "right_eye_inner_corner", "right_eye_outer_corner",
    "left_eyebrow_inner_end", "left_eyebrow_outer_end",
    "right_eyebrow_inner_end", "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner", "mouth_right_corner",
    "mouth_center_top_lip", "mouth_center_bottom_lip",
)  # fmt: skip
# After a horizontal mirror, point i of the new face is point FLIP_INDEX[i] of the old one:
# left and right swap; the nose tip and the lip centres stay.
FLIP_INDEX: tuple[int, ...] = (1, 0, 4, 5, 2, 3, 8, 9, 6, 7, 10, 12, 11, 13, 14)
CSV_COLUMNS: tuple[str, ...] = (
    *(f"{name}_{axis}" for name in KEYPOINT_NAMES for axis in ("x", "y")),
    "Image",
)


@dataclass
class FaceKeypoints:
    """Grey faces and their 15 keypoints.

    Coordinates are in pixels with the Kaggle convention: (x, y) = (column, row) of a
    pixel's centre, so the image spans [-0.5, size - 0.5) and a horizontal mirror maps
    x to ``size - 1 - x``. A point that is not ``visible`` holds NaN.
    """

    images: torch.Tensor  # uint8 (N, 1, size, size)
    keypoints: torch.Tensor  # float32 (N, 15, 2): (x, y)
    visible: torch.Tensor  # bool (N, 15)

    def __post_init__(self) -> None:
        n = len(self.images)
        if (
            self.images.dtype != torch.uint8
            or self.images.dim() != 4
            or self.keypoints.shape != (n, len(KEYPOINT_NAMES), 2)
            or self.visible.shape != (n, len(KEYPOINT_NAMES))
        ):
            raise ShapeMismatchError(
                f"FaceKeypoints: expected uint8 images (N, 1, H, W), keypoints (N, 15, 2) and "
                f"visible (N, 15); received images {self.images.dtype} "
                f"{tuple(self.images.shape)}, keypoints {tuple(self.keypoints.shape)}, "
                f"visible {tuple(self.visible.shape)}"
            )

    def __len__(self) -> int:
        return len(self.images)


def hflip_faces(faces: FaceKeypoints) -> FaceKeypoints:
    """Mirror the images left-right and keep the keypoints' names right.

    x becomes ``width - 1 - x`` (pixel centres), then points are permuted by
    :data:`FLIP_INDEX` so that ``left_eye_center`` is again the subject's left eye.
    """
    width = faces.images.shape[-1]
    index = torch.tensor(FLIP_INDEX)
    keypoints = faces.keypoints.clone()
    keypoints[..., 0] = (width - 1) - keypoints[..., 0]
    return FaceKeypoints(
        images=faces.images.flip(-1),
        keypoints=keypoints[:, index],
        visible=faces.visible[:, index],
    )


# -- the Kaggle CSV --------------------------------------------------------------------------


def read_facial_keypoints_csv(path: str | os.PathLike[str]) -> FaceKeypoints:
    """Read ``training.csv`` of Kaggle's Facial Keypoints Detection.

    Layout: a header of the 30 columns ``<point>_x, <point>_y`` in :data:`KEYPOINT_NAMES`
    order, then ``Image`` (96 * 96 space-separated integers 0..255, row-major).

    Missing values: most rows of the Kaggle training file give only 4 of the 15 points.
    Every row is kept; a point whose two cells are empty gets ``visible`` False and NaN
    coordinates, so a loss must mask it (NaN makes an unmasked use loud).

    Raises:
        DataFormatError: a header that is not the published one, a row with the wrong
            number of cells, a coordinate that is not a number in [0, 96) or whose x and
            y are not both given or both empty, an Image cell that is not 9216 integers
            in 0..255. The message names the file, the line and the column.
    """
    images, keypoints = [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        _check_header(path, next(reader, None))
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if len(row) != len(CSV_COLUMNS):
                raise DataFormatError(
                    f"{where}: expected {len(CSV_COLUMNS)} cells, received {len(row)}"
                )
            keypoints.append(_parse_keypoints(where, row[:-1]))
            images.append(_parse_image(where, row[-1]))
    points = np.asarray(keypoints, np.float32).reshape(-1, len(KEYPOINT_NAMES), 2)
    pixels = np.asarray(images, np.uint8).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    return FaceKeypoints(
        images=torch.from_numpy(pixels),
        keypoints=torch.from_numpy(points),
        visible=torch.from_numpy(~np.isnan(points[..., 0])),
    )


def _check_header(path: str | os.PathLike[str], header: list[str] | None) -> None:
    if header is None:
        raise DataFormatError(f"{path}: empty file; expected the header {','.join(CSV_COLUMNS)}")
    if tuple(header) == CSV_COLUMNS:
        return
    if header == ["ImageId", "Image"]:
        raise DataFormatError(
            f"{path}: this is the Kaggle test.csv layout (ImageId, Image), which has no "
            "keypoints; expected training.csv"
        )
    missing = [c for c in CSV_COLUMNS if c not in header]
    extra = [c for c in header if c not in CSV_COLUMNS]
    if missing or extra:
        raise DataFormatError(
            f"{path}: header does not match the Kaggle layout; missing columns: "
            f"{', '.join(missing) or 'none'}; unexpected columns: {', '.join(extra) or 'none'}"
        )
    k = next(i for i, (a, b) in enumerate(zip(header, CSV_COLUMNS, strict=False)) if a != b)
    raise DataFormatError(
        f"{path}: header column {k + 1} is {header[k]!r}; expected {CSV_COLUMNS[k]!r} "
        f"(the published order, {len(CSV_COLUMNS)} columns once each)"
    )


def _parse_keypoints(where: str, cells: list[str]) -> list[float]:
    values = []
    for name, cell in zip(CSV_COLUMNS, cells, strict=False):
        if not cell.strip():
            values.append(np.nan)
            continue
        try:
            value = float(cell)
        except ValueError:
            value = np.nan  # reported below with the other bad values
        if not 0.0 <= value < IMAGE_SIZE:
            raise DataFormatError(
                f"{where}, column {name}: {cell!r}; expected a pixel coordinate in "
                f"[0, {IMAGE_SIZE}) or an empty cell"
            )
        values.append(value)
    for k in range(0, len(values), 2):
        if np.isnan(values[k]) != np.isnan(values[k + 1]):
            raise DataFormatError(
                f"{where}: {CSV_COLUMNS[k]}={cells[k]!r} but {CSV_COLUMNS[k + 1]}="
                f"{cells[k + 1]!r}; expected both coordinates of a point or neither"
            )
    return values


def _parse_image(where: str, cell: str) -> np.ndarray:
    count = IMAGE_SIZE * IMAGE_SIZE
    values = None
    if cell.strip():
        try:  # the C parser: about 0.3 ms a row, 4x faster than int() on each token
            values = np.loadtxt([cell], dtype=np.int64, ndmin=1, comments=None)
        except ValueError:
            values = None
    if values is None or values.size != count:
        tokens = cell.split()
        if len(tokens) != count:
            raise DataFormatError(
                f"{where}, column Image: {len(tokens)} pixel values; expected "
                f"{IMAGE_SIZE}*{IMAGE_SIZE} = {count}"
            )
        i, bad = next(((i, t) for i, t in enumerate(tokens) if not t.isdigit()), (0, tokens[0]))
        raise DataFormatError(
            f"{where}, column Image: pixel {i} is {bad!r}; expected an integer in 0..255"
        )
    if values.min() < 0 or values.max() > 255:
        raise DataFormatError(
            f"{where}, column Image: pixel values in [{values.min()}, {values.max()}]; "
            "expected integers in 0..255"
        )
    return values.astype(np.uint8)


# -- the procedural generator ----------------------------------------------------------------

SUPERSAMPLE = 2  # faces are drawn at 2x and 2x2 blocks averaged: anti-aliased edges
CHUNK = 1000  # faces lit and noised per batch: bounds the float32 copy (~37 MB at 96 px)
MARGIN = 1.0  # pixels kept between every keypoint and the image border


def generate_faces(count: int, *, size: int = IMAGE_SIZE, seed: int = 0) -> FaceKeypoints:
    """Draw simple grey faces whose 15 keypoints are known exactly.

    Each face is an ellipse with almond eyes (corners at the tips of the almond, the
    pupil at the eye centre), straight brows (the ends are the brow keypoints), a round
    nose with nostrils (the tip is the centre of the round) and lips (the corners and the
    centres of the top and bottom lip lie on their outline). Shapes vary per face and a
    little between the two sides; the face is then rotated (±15°), scaled (0.8 to 1.2)
    and shifted, the same transform moving the keypoints, which stay at least 1 pixel
    inside the image. Lighting varies (background and skin brightness, a linear
    gradient), then Gaussian noise (sigma 2 to 6 grey levels) is added.

    Coordinates follow :class:`FaceKeypoints`: pixel centres, x to the right, the
    subject's left eye at larger x. Every point is visible. Measured on 2 busy CPU
    cores: 10,000 faces of 96x96 in about 4.5 s.

    Args:
        count: number of faces.
        size: side of the square images in pixels; shapes scale with it (96 is Kaggle's).
        seed: seed of the NumPy generator; the same seed gives the same faces.

    Raises:
        ConfigError: ``count < 1`` or ``size < 32``.
    """
    if count < 1:
        raise ConfigError(f"generate_faces: expected count >= 1, received count={count}")
    if size < 32:
        raise ConfigError(f"generate_faces: expected size >= 32 pixels, received size={size}")
    rng = np.random.default_rng(seed)
    keypoints, outlines = _face_geometry(rng, count)
    tones = _tones(rng, count)
    matrix, offset = _pose(rng, keypoints, size)

    def place(points: np.ndarray) -> np.ndarray:  # face frame -> image pixels
        return points @ matrix.transpose(0, 2, 1) + offset[:, None]

    # Outlines as flat [x0, y0, x1, y1, ...] lists in the coordinates of the big drawing.
    big = [(place(points) + 0.5) * SUPERSAMPLE for points, _ in outlines]
    shapes = [
        (points.reshape(count, -1).tolist(), tones[tone].tolist())
        for points, (_, tone) in zip(big, outlines, strict=True)
    ]
    background = tones["background"].tolist()
    images = np.empty((count, size, size), np.uint8)
    for start in range(0, count, CHUNK):
        faces = range(start, min(start + CHUNK, count))
        drawn = [_render([(p[i], f[i]) for p, f in shapes], background[i], size) for i in faces]
        images[faces.start : faces.stop] = _light(rng, np.stack(drawn))
    keypoints = place(keypoints)
    return FaceKeypoints(
        images=torch.from_numpy(images[:, None]),
        keypoints=torch.from_numpy(keypoints.astype(np.float32)),
        visible=torch.ones(count, len(KEYPOINT_NAMES), dtype=torch.bool),
    )


def _ellipse(center: np.ndarray, rx: np.ndarray, ry: np.ndarray, points: int) -> np.ndarray:
    """(n, points, 2) outline; point 0 is at +x and point ``points // 2`` at -x exactly."""
    t = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    return np.stack(
        [
            center[:, None, 0] + rx[:, None] * np.cos(t),
            center[:, None, 1] + ry[:, None] * np.sin(t),
        ],
        axis=-1,
    )


Uniform = Callable[..., np.ndarray]  # u(low, high) -> (n,); u(low, high, 2) -> (n, 2 sides)
Outlines = list[tuple[np.ndarray, str]]  # (outline (n, P, 2), tone name), in drawing order
SIDES = np.array([1.0, -1.0])  # [subject's left (+x, image right), subject's right]


def _face_geometry(rng: np.random.Generator, n: int) -> tuple[np.ndarray, Outlines]:
    """Keypoints (n, 15, 2) and outlines in a face frame.

    The frame is in pixels of a 96-pixel image, centred on the face, y down, the
    subject's left at +x.
    """

    def u(lo: float, hi: float, sides: int = 0) -> np.ndarray:
        return rng.uniform(lo, hi, size=(n, sides) if sides else n)

    face = _ellipse(np.stack([np.zeros(n), u(-4, -2)], -1), u(30, 34), u(38, 42), 64)
    eye_points, eyes = _eyes_and_brows(u, n)
    low_points, low = _nose_and_mouth(u)
    keypoints = np.stack(eye_points + low_points, axis=1)
    return keypoints, [(face, "skin"), *low[:-1], *eyes, low[-1]]


def _eyes_and_brows(u: Uniform, n: int) -> tuple[list[np.ndarray], Outlines]:
    """The first 10 keypoints, (n, 2) each in KEYPOINT_NAMES order, and brows then eyes."""
    # Per face and side (n, 2): the almond's middle, half-length and half-height.
    eye_x = SIDES * (u(12, 16)[:, None] + u(-1, 1, 2))
    eye_y = u(-10, -6)[:, None] + u(-1, 1, 2)
    eye_len = u(5.5, 7.5)[:, None] * u(0.92, 1.08, 2)
    eye_h, pupil = u(2.6, 3.6), u(1.6, 2.2)
    middle = np.stack([eye_x, eye_y], axis=-1)  # (n, 2 sides, 2)
    along = np.stack([SIDES * eye_len, 0 * eye_len], axis=-1)  # outwards, half the eye
    centre = middle + np.stack([u(-0.8, 0.8), np.zeros(n)], axis=-1)[:, None]  # gaze
    inner, outer = middle - along, middle + along
    brow_in_y = eye_y - u(7, 10, 2)  # 7+: the brow stays 4 px clear of the pupil
    brow_in = np.stack([eye_x - SIDES * eye_len * u(0.6, 0.9, 2), brow_in_y], axis=-1)
    brow_out = np.stack([eye_x + SIDES * eye_len * u(0.9, 1.15, 2), brow_in_y + u(-3, 1, 2)], -1)
    points = [centre[:, 0], centre[:, 1], inner[:, 0], outer[:, 0], inner[:, 1], outer[:, 1]]
    points += [brow_in[:, 0], brow_out[:, 0], brow_in[:, 1], brow_out[:, 1]]
    outlines = [(_brow(brow_in[:, s], brow_out[:, s], u(1.8, 3.0)), "brow") for s in (0, 1)]
    outlines += [(_ellipse(middle[:, s], eye_len[:, s], eye_h, 32), "sclera") for s in (0, 1)]
    outlines += [(_ellipse(centre[:, s], pupil, pupil, 16), "iris") for s in (0, 1)]
    return points, outlines


def _nose_and_mouth(u: Uniform) -> tuple[list[np.ndarray], Outlines]:
    """The last 5 keypoints, (n, 2) each, and the nose, nostrils and lips (last)."""
    nose, nose_w = np.stack([u(-1, 1), u(6, 10)], axis=-1), u(3.5, 5.0)
    nostril = np.stack([0.55 * nose_w, 0.35 * nose_w], axis=-1)  # offset from the tip
    mouth_y = u(18, 22)
    mouth_x = SIDES * u(9, 13)[:, None] * u(0.93, 1.07, 2)
    corner = np.stack([mouth_x, mouth_y[:, None] + u(-1, 1, 2)], axis=-1)  # (n, 2 sides, 2)
    top = np.stack([u(-0.7, 0.7), mouth_y - u(2.0, 3.5)], axis=-1)
    bottom = np.stack([top[:, 0] + u(-0.5, 0.5), mouth_y + u(3.0, 5.0)], axis=-1)
    outlines = [(_ellipse(nose, nose_w, 0.7 * nose_w, 24), "nose")]
    outlines += [
        (_ellipse(nose + nostril * [s, 1], 0.3 * nose_w, 0.2 * nose_w, 12), "nostril")
        for s in SIDES
    ]
    outlines.append((_lips(corner[:, 1], corner[:, 0], top, bottom), "lips"))
    return [nose, corner[:, 0], corner[:, 1], top, bottom], outlines


def _brow(inner: np.ndarray, outer: np.ndarray, thickness: np.ndarray) -> np.ndarray:
    """(n, 4, 2) band of ``thickness`` whose centre line runs from ``inner`` to ``outer``."""
    direction = outer - inner
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=-1)
    normal *= (thickness / 2 / np.linalg.norm(normal, axis=-1))[:, None]
    return np.stack([inner + normal, outer + normal, outer - normal, inner - normal], axis=1)


def _lips(right: np.ndarray, left: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """(n, 24, 2) outline: two quadratic Béziers from corner to corner, through the lip centres."""
    t = np.linspace(0.0, 1.0, 13)[None, :, None]
    ends = (left + right) / 2

    def curve(start: np.ndarray, through: np.ndarray, end: np.ndarray) -> np.ndarray:
        control = 2 * through - ends  # the curve passes through ``through`` at t = 1/2
        a, b, c = start[:, None], control[:, None], end[:, None]
        return (1 - t) ** 2 * a + 2 * t * (1 - t) * b + t**2 * c

    return np.concatenate([curve(right, top, left)[:, :-1], curve(left, bottom, right)[:, :-1]], 1)


def _tones(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Grey level (n,) of the background and of each kind of shape."""

    def u(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, size=n)

    skin = u(130, 210)
    tones = {
        "background": u(10, 110),
        "skin": skin,
        "nose": skin * u(0.72, 0.82),
        "nostril": skin * u(0.30, 0.45),
        "brow": skin * u(0.20, 0.40),
        "sclera": np.minimum(skin + u(25, 45), 255),
        "iris": u(15, 45),
        "lips": skin * u(0.50, 0.65),
    }
    return {name: np.rint(tone).astype(np.int64) for name, tone in tones.items()}


def _pose(
    rng: np.random.Generator, keypoints: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Similarity transforms: (n, 2, 2) matrices and (n, 2) offsets, face frame -> pixels.

    The shift is clipped so that every keypoint lands ``MARGIN`` pixels inside the image.
    """
    n = len(keypoints)
    angle = np.deg2rad(rng.uniform(-15, 15, size=n))
    scale = rng.uniform(0.8, 1.2, size=n) * size / IMAGE_SIZE
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    matrix = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], axis=1)
    centre = (size - 1) / 2
    shift = rng.uniform(-4, 4, size=(n, 2)) * size / IMAGE_SIZE
    moved = keypoints @ matrix.transpose(0, 2, 1)  # (n, 15, 2) around the image centre
    low = MARGIN - centre - moved.min(axis=1)
    high = size - 1 - MARGIN - centre - moved.max(axis=1)
    return matrix, centre + np.clip(shift, low, high)


def _render(shapes: list[tuple[list[float], int]], background: int, size: int) -> np.ndarray:
    """Fill the flat outlines in order at ``SUPERSAMPLE`` times ``size``; (size, size) uint8.

    PIL fills a polygon as if pixel ``i`` spanned [i, i + 1), so the pixel centre x of
    the output is ``SUPERSAMPLE * (x + 0.5)`` in the big drawing, whose blocks are then
    averaged (measured: pupil centroids fall within 0.01 px of the centre on average).
    """
    big = size * SUPERSAMPLE
    image = Image.new("L", (big, big), background)
    draw = ImageDraw.Draw(image)
    for outline, fill in shapes:
        draw.polygon(outline, fill=fill)
    return np.asarray(image.reduce(SUPERSAMPLE))


def _light(rng: np.random.Generator, drawn: np.ndarray) -> np.ndarray:
    """A random linear brightness gradient and Gaussian noise on (m, size, size) faces."""
    m, size = drawn.shape[0], drawn.shape[1]
    ramp = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / size  # -0.5 .. 0.5
    gx, gy = rng.uniform(-0.25, 0.25, size=(2, m, 1, 1)).astype(np.float32)
    sigma = rng.uniform(2.0, 6.0, size=(m, 1, 1)).astype(np.float32)
    lit = drawn * (1 + gx * ramp[None, None, :] + gy * ramp[None, :, None])
    lit += sigma * rng.standard_normal(drawn.shape, dtype=np.float32)
    return np.clip(np.rint(lit), 0, 255).astype(np.uint8)
