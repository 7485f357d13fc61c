"""Batched data augmentation: flips, affine distortions, padded random crops, random erasing."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.core.errors import ConfigError, ShapeMismatchError, UnknownNameError
from cnnlab.data.affine import affine_matrices, apply_affine
from cnnlab.data.targets import Targets, affine_targets, flip_targets, shift_targets

# Every op takes a whole float batch (B, C, H, W) on the 0..1 scale and draws the random
# numbers for the batch in one call on the caller's generator: the same generator state gives
# the same output, and no Python loop runs over the samples. `sample` draws an op's
# parameters and `apply` uses them, so tests can recompute the output from the parameters.


class AugmentOp(Protocol):
    """Anything that maps a batch and a generator to an augmented batch."""

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor: ...


def _check_batch(x: Tensor, op: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        received = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeMismatchError(f"{op} expects a batch shaped (B, C, H, W), received {received}")
    if not x.is_floating_point():
        raise ConfigError(
            f"{op} expects floating-point images on the 0..1 scale (x.float() / 255), "
            f"received dtype={x.dtype}"
        )


def _rand(generator: torch.Generator, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Uniform [0, 1) float64 numbers drawn where the generator lives, moved to the data."""
    if not isinstance(generator, torch.Generator):
        raise ConfigError(f"Expected a torch.Generator, received {type(generator).__name__}")
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)
    return u.to(device)


def _tensor(values: list[float], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _same_format(out: Tensor, x: Tensor) -> Tensor:
    """`out` made contiguous in the memory format of `x` (channels_last stays channels_last)."""
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return out.contiguous(memory_format=fmt)


def _select(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """`torch.where(mask == 1, a, b)` for a float mask of 0s and 1s, broadcasting.

    For finite images `torch.lerp` is exact at weights 0 and 1 (it computes
    ``a - (a - b) * (1 - w)`` for w >= 0.5) and runs about twice as fast as `torch.where`
    on small CPU images.
    """
    return torch.lerp(b, a, mask)


def _number(name: str, value: Any, low: float, high: float, high_open: bool = False) -> float:
    """`value` as a float in [low, high] (or [low, high)), else a ConfigError echoing it."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and low <= value <= high and not (high_open and value == high):
        return float(value)
    interval = f"[{low:g}, {high:g}{')' if high_open else ']'}"
    raise ConfigError(f"Expected {name} in {interval}, received {name}={value!r}")


def _pair(
    name: str, value: Any, low: float, high: float, ordered: bool = True
) -> tuple[float, float]:
    """A pair from a tuple or a YAML list, both in [low, high]; `ordered`: a (min, max) range."""
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    if ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        first, second = float(value[0]), float(value[1])
        if low <= first <= high and low <= second <= high and (first <= second or not ordered):
            return first, second
    expected = (
        f"(min, max) with {low} <= min <= max <= {high}" if ordered else f"in [{low}, {high}]"
    )
    raise ConfigError(f"Expected {name} as a pair {expected}, received {name}={value!r}")


@dataclass
class RandomFlip:
    """Mirror each image left-right and/or up-down, each with probability `p`.

    Args:
        horizontal: Flip left-right (the lectures' "horizontal flip").
        vertical: Flip up-down; drawn independently of the horizontal flip.
        p: Probability of each enabled flip, per sample.
    """

    horizontal: bool = True
    vertical: bool = False
    p: float = 0.5

    def __post_init__(self) -> None:
        self.p = _number("p", self.p, 0, 1)
        if not (self.horizontal or self.vertical):
            raise ConfigError(
                "Expected horizontal=True or vertical=True, received both False "
                "(a flip that never flips)"
            )

    def sample(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Returns (B, 2) bool: column 0 flips left-right, column 1 flips up-down."""
        enabled = torch.tensor([self.horizontal, self.vertical], device=x.device)
        return (_rand(generator, (x.shape[0], 2), x.device) < self.p) & enabled

    def apply(self, x: Tensor, flips: Tensor) -> Tensor:
        """Flips the samples selected by `flips` (from `sample`)."""
        weights = flips.to(x.dtype)[:, :, None, None, None]  # (B, 2, 1, 1, 1) of 0 / 1
        out = x
        if self.horizontal:
            out = _select(weights[:, 0], out.flip(3), out)
        if self.vertical:
            out = _select(weights[:, 1], out.flip(2), out)
        return _same_format(out, x)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_batch(x, "RandomFlip")
        return self.apply(x, self.sample(x, generator))


@dataclass
class AlternatingFlip:
    """Mirror left-right every other epoch, per image (airbench's alternating flip).

    In epoch ``e`` image ``i`` (its index in the dataset) is mirrored when
    ``bit(i) XOR (e odd)``, with ``bit`` a fixed hash of ``i`` that is 1 for about half
    the images. So every image is seen both ways in every two epochs, instead of the
    same way twice by chance a quarter of the time under a random flip, which makes
    short runs use the mirror images better. Without indices (a call outside a
    :class:`~cnnlab.data.loader.BatchLoader`) it is a random flip.
    """

    uses_position = True  # the loader passes each sample's index and the epoch

    @staticmethod
    def flips(indices: Tensor, epoch: int) -> Tensor:
        """(B,) bool: which of the images at ``indices`` are mirrored in ``epoch``."""
        # Knuth's multiplicative hash; its top bit splits the indices about evenly.
        bits = ((indices.to(torch.int64) * 2654435761) % 2**32) >= 2**31
        return bits ^ bool(epoch % 2)

    def __call__(
        self,
        x: Tensor,
        generator: torch.Generator,
        *,
        indices: Tensor | None = None,
        epoch: int = 0,
    ) -> Tensor:
        _check_batch(x, "AlternatingFlip")
        if indices is None:
            return RandomFlip()(x, generator)
        if len(indices) != len(x):
            raise ShapeMismatchError(
                f"Expected one index per image ({len(x)}), received {len(indices)} indices"
            )
        mask = self.flips(indices, epoch).to(x.dtype)[:, None, None, None]
        return _same_format(_select(mask, x.flip(3), x), x)


_MODES = ("bilinear", "nearest", "bicubic")


@dataclass
class RandomAffine:
    """Rotation, shear, zoom and shift composed into one resampling per sample.

    Each parameter is drawn uniformly per sample. See `affine_matrices` for the directions.

    Args:
        degrees: Rotation range [-degrees, degrees].
        translate: Largest shift as a fraction of (W, H).
        scale: Zoom range (min, max); above 1 enlarges the content.
        shear: Shear-angle range [-shear, shear] in degrees.
        fill: Value of pixels that come from outside the image.
        mode: Interpolation: "bilinear", "nearest" or "bicubic".
    """

    degrees: float = 0.0
    translate: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0
    fill: float = 0.0
    mode: str = "bilinear"

    def __post_init__(self) -> None:
        self.degrees = _number("degrees", self.degrees, 0, 360, high_open=True)
        self.shear = _number("shear", self.shear, 0, 90, high_open=True)
        self.translate = _pair("translate", self.translate, 0.0, 1.0, ordered=False)
        self.scale = _pair("scale", self.scale, 1e-3, math.inf)
        if self.mode not in _MODES:
            raise ConfigError(f"Expected mode in {_MODES}, received mode={self.mode!r}")

    def sample(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Returns (B, 2, 3) sampling matrices drawn for this batch."""
        B, _, H, W = x.shape
        (tx, ty), (s0, s1) = self.translate, self.scale
        # columns: angle (deg), shift x (px), shift y (px), scale, shear (deg)
        low = [-self.degrees, -tx * W, -ty * H, s0, -self.shear]
        span = [2 * self.degrees, 2 * tx * W, 2 * ty * H, s1 - s0, 2 * self.shear]
        u = _rand(generator, (B, 5), x.device)
        p = torch.addcmul(_tensor(low, u), u, _tensor(span, u))  # (B, 5): low + u * span
        angle, translate, scale, shear = p[:, 0], p[:, 1:3], p[:, 3], p[:, 4]
        return affine_matrices(angle, translate, scale, shear, (H, W))

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        """Resamples `x` through `theta` (from `sample`)."""
        return _same_format(apply_affine(x, theta, self.fill, self.mode), x)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_batch(x, "RandomAffine")
        return self.apply(x, self.sample(x, generator))


_PADDING_MODES = ("constant", "reflect", "replicate")


@dataclass
class RandomCrop:
    """Pad by `padding` on every side, then cut a random window of the original size.

    The window moves by whole pixels, so every output pixel is an input (or padding) pixel.

    Args:
        padding: Pixels added on each side; the shift is at most this much either way.
        fill: Value of the padding when `padding_mode` is "constant".
        padding_mode: "constant", "reflect" or "replicate" (as `F.pad`).
    """

    padding: int = 4
    fill: float = 0.0
    padding_mode: str = "constant"

    def __post_init__(self) -> None:
        if isinstance(self.padding, bool) or not isinstance(self.padding, int) or self.padding < 0:
            raise ConfigError(f"Expected padding as an int >= 0, received padding={self.padding!r}")
        if self.padding_mode not in _PADDING_MODES:
            raise ConfigError(
                f"Expected padding_mode in {_PADDING_MODES}, received "
                f"padding_mode={self.padding_mode!r}"
            )

    def sample(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Returns (B, 2) int64 offsets (oy, ox) of the window in the padded batch."""
        u = _rand(generator, (x.shape[0], 2), x.device)
        return (u * (2 * self.padding + 1)).long().clamp_(max=2 * self.padding)

    def pad(self, x: Tensor) -> Tensor:
        """The padded batch the windows are cut from: (B, C, H + 2p, W + 2p)."""
        p, H, W = self.padding, x.shape[2], x.shape[3]
        if self.padding_mode == "reflect" and p >= min(H, W):
            raise ShapeMismatchError(
                f"reflect padding needs padding < H and W, received padding={p} for {H}x{W}"
            )
        if self.padding_mode == "constant":
            return F.pad(x, (p, p, p, p), mode="constant", value=self.fill)
        return F.pad(x, (p, p, p, p), mode=self.padding_mode)

    def apply(self, x: Tensor, offsets: Tensor) -> Tensor:
        """Cuts the window at `offsets` (from `sample`) out of each padded image."""
        _, _, H, W = x.shape
        windows = self.pad(x).unfold(2, H, 1).unfold(3, W, 1)  # (B, C, 2p + 1, 2p + 1, H, W)
        batch = torch.arange(x.shape[0], device=x.device)
        out = windows[batch, :, offsets[:, 0], offsets[:, 1]]  # (B, C, H, W)
        return _same_format(out, x)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_batch(x, "RandomCrop")
        return self.apply(x, self.sample(x, generator))


_ERASE_ATTEMPTS = 10  # boxes tried per sample, as torchvision; a sample with none that fits stays


@dataclass
class RandomErasing:
    """Random erasing (Zhong et al. 2017): overwrite a random rectangle with `value`.

    Args:
        p: Probability that a sample is erased.
        scale: Range of the rectangle's area as a fraction of the image.
        ratio: Range of the rectangle's aspect ratio h / w (drawn log-uniformly).
        value: Value written into the rectangle (0..1 scale).
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float = 0.0

    def __post_init__(self) -> None:
        self.p = _number("p", self.p, 0, 1)
        self.scale = _pair("scale", self.scale, 1e-9, 1.0)
        self.ratio = _pair("ratio", self.ratio, 1e-9, math.inf)

    def sample(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Returns (B, 4) int64 boxes (y0, x0, h, w); h = w = 0 where nothing is erased."""
        B, _, H, W = x.shape
        T = _ERASE_ATTEMPTS
        u = _rand(generator, (B, 2 * T + 3), x.device)
        (s0, s1), (r0, r1) = self.scale, self.ratio
        area = u[:, :T] * ((s1 - s0) * H * W) + s0 * H * W  # (B, T) pixels
        ratio = torch.exp(math.log(r0) + math.log(r1 / r0) * u[:, T : 2 * T])  # (B, T)
        h = (area * ratio).sqrt().round()
        w = (area / ratio).sqrt().round()
        # rounding may push the area out of range: keep only boxes that honour `scale` exactly
        # (s0 > 0, so a box in range has h, w >= 1)
        fraction = h * w / (H * W)
        fits = (h <= H) & (w <= W) & (fraction >= s0) & (fraction <= s1)
        first = fits.byte().argmax(dim=1, keepdim=True)  # first fitting attempt, (B, 1)
        erase = fits.any(dim=1, keepdim=True) & (u[:, 2 * T, None] < self.p)  # (B, 1)
        h = h.gather(1, first) * erase
        w = w.gather(1, first) * erase
        # u < 1, but u * n can round up to n in floating point: hence the clamp
        y0 = torch.minimum((u[:, 2 * T + 1, None] * (H - h + 1)).floor(), H - h)
        x0 = torch.minimum((u[:, 2 * T + 2, None] * (W - w + 1)).floor(), W - w)
        return torch.cat([y0, x0, h, w], dim=1).long()

    def apply(self, x: Tensor, boxes: Tensor) -> Tensor:
        """Writes `value` into each sample's box (from `sample`)."""
        _, _, H, W = x.shape
        y0, x0, h, w = boxes[:, :, None].unbind(1)  # each (B, 1)
        rows = torch.arange(H, device=x.device)
        cols = torch.arange(W, device=x.device)
        in_rows = (rows >= y0) & (rows < y0 + h)  # (B, H)
        in_cols = (cols >= x0) & (cols < x0 + w)  # (B, W)
        mask = in_rows.to(x.dtype)[:, None, :, None] * in_cols.to(x.dtype)[:, None, None, :]
        value = torch.full((), self.value, dtype=x.dtype, device=x.device)
        return _same_format(_select(mask, value, x), x)  # mask: (B, 1, H, W) of 0 / 1

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        _check_batch(x, "RandomErasing")
        return self.apply(x, self.sample(x, generator))


class Augment:
    """A pipeline of ops applied in order, all drawing from one generator.

    Args:
        ops: The ops, e.g. `[RandomFlip(), RandomCrop(padding=4)]`.
    """

    def __init__(self, ops: Sequence[AugmentOp]) -> None:
        self.ops = list(ops)
        # True when an op needs each sample's dataset index and the epoch (AlternatingFlip).
        self.uses_position = any(getattr(op, "uses_position", False) for op in self.ops)

    def __call__(
        self,
        x: Tensor,
        generator: torch.Generator,
        *,
        indices: Tensor | None = None,
        epoch: int = 0,
        targets: Targets | None = None,
        flip_index: Sequence[int] | None = None,
    ) -> Any:
        """The augmented batch; with ``targets``, the pair (batch, moved targets).

        Masks, keypoints and boxes in ``targets`` go through the same flips, crops and
        affine maps as the pixels (cnnlab.data.targets); ``flip_index`` reorders
        keypoints on horizontal flips. Random draws are the same with or without targets.
        """
        _check_batch(x, "Augment")
        for op in self.ops:
            if targets is not None:
                x, targets = _with_targets(op, x, generator, targets, indices, epoch, flip_index)
            elif getattr(op, "uses_position", False):
                x = op(x, generator, indices=indices, epoch=epoch)  # type: ignore[call-arg]
            else:
                x = op(x, generator)
        return x if targets is None else (x, targets)

    def __repr__(self) -> str:
        lines = "".join(f"\n  {op!r}," for op in self.ops)
        return f"Augment([{lines}\n])" if self.ops else "Augment([])"


def _with_targets(
    op: AugmentOp,
    x: Tensor,
    generator: torch.Generator,
    targets: Targets,
    indices: Tensor | None,
    epoch: int,
    flip_index: Sequence[int] | None,
) -> tuple[Tensor, Targets]:
    """One op on pixels and targets alike, from the same random draw."""
    size = (x.shape[2], x.shape[3])
    if isinstance(op, AlternatingFlip):
        if indices is not None and len(indices) != len(x):
            raise ShapeMismatchError(
                f"Expected one index per image ({len(x)}), received {len(indices)} indices"
            )
        flips = (
            AlternatingFlip.flips(indices, epoch)
            if indices is not None
            else RandomFlip().sample(x, generator)[:, 0]
        )
        mask = flips.to(x.dtype)[:, None, None, None]
        out = _same_format(_select(mask, x.flip(3), x), x)
        return out, flip_targets(targets, flips, None, size, flip_index)
    if isinstance(op, RandomFlip):
        both = op.sample(x, generator)
        return op.apply(x, both), flip_targets(targets, both[:, 0], both[:, 1], size, flip_index)
    if isinstance(op, RandomCrop):
        offsets = op.sample(x, generator)
        shift = op.padding - offsets  # content moves by padding - offset
        moved = shift_targets(targets, shift[:, 1], shift[:, 0], size, op.padding_mode)
        return op.apply(x, offsets), moved
    if isinstance(op, RandomAffine):
        theta = op.sample(x, generator)
        return op.apply(x, theta), affine_targets(targets, theta, size)
    if isinstance(op, RandomErasing):  # pixels only: what is erased is still there
        return op(x, generator), targets
    raise ConfigError(
        f"augmentation {type(op).__name__} cannot move targets {sorted(targets)}; "
        "use flip, altflip, vflip, crop, affine (shift, rotate, zoom, shear) or erase"
    )


# name -> (op, arguments a bare name gets); dict entries in a config override the arguments.
# The strengths are the typical small distortions of the lectures (10 degrees, 10 % shifts).
_PRESETS: dict[str, tuple[type, dict[str, Any]]] = {
    "flip": (RandomFlip, {}),
    "altflip": (AlternatingFlip, {}),
    "vflip": (RandomFlip, {"horizontal": False, "vertical": True}),
    "crop": (RandomCrop, {"padding": 4}),
    "affine": (
        RandomAffine,
        {"degrees": 10.0, "translate": (0.1, 0.1), "scale": (0.9, 1.1), "shear": 10.0},
    ),
    "shift": (RandomAffine, {"translate": (0.1, 0.1)}),
    "rotate": (RandomAffine, {"degrees": 10.0}),
    "zoom": (RandomAffine, {"scale": (0.9, 1.1)}),
    "shear": (RandomAffine, {"shear": 10.0}),
    "erase": (RandomErasing, {}),
}


def build_augment(spec: Any, inputs: str = "images") -> Any:
    """Builds a pipeline from a config value.

    Args:
        spec: None, "none" or [] for no augmentation; "auto" for what suits the inputs
            (flip for images, none for signals and token ids); a string like "flip,crop";
            or a list of names and dicts such as ``{"name": "affine", "degrees": 10}``.
            Image names: flip, altflip, vflip, crop, affine, shift, rotate, zoom, shear,
            erase. Signal names (inputs (N, C, L)): timeshift, amplitude, noise, speed.
        inputs: "images", "signals" or "tokens" (token ids take no augmentation).

    Returns:
        The pipeline (an Augment, or a SignalAugment for signals), or None when the spec
        asks for no augmentation.
    """
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        spec = "flip" if inputs == "images" else None
    if inputs != "images":
        return _build_signal_augment(spec, inputs)
    items = _items(spec)
    return Augment([_build_op(item) for item in items]) if items else None


def _build_signal_augment(spec: Any, inputs: str) -> Any:
    from cnnlab.data.augment_signal import SIGNAL_PRESETS, SignalAugment

    items = _items(spec)
    if items and inputs == "tokens":
        raise ConfigError(
            f"augment={spec!r}, but the inputs are token ids, which cnnlab does not augment; "
            "expected none"
        )
    return SignalAugment([_build_op(item, SIGNAL_PRESETS) for item in items]) if items else None


def _items(spec: Any) -> list[Any]:
    """A config value as a list of op names and dicts (empty: no augmentation)."""
    if spec is None:
        return []
    if isinstance(spec, str):
        if spec.strip().lower() == "none":
            return []
        return [item.strip() for item in spec.split(",") if item.strip()]
    if isinstance(spec, Mapping):
        return [spec]
    if isinstance(spec, Sequence):
        return list(spec)
    raise ConfigError(
        "Expected augmentation as None, a string like 'flip,crop' or a list of names "
        f"and dicts, received {spec!r}"
    )


def _build_op(item: Any, presets: dict[str, tuple[type, dict[str, Any]]] | None = None) -> Any:
    if isinstance(item, str):
        name, kwargs = item, {}
    elif isinstance(item, Mapping) and "name" in item:
        kwargs = {str(k): v for k, v in item.items() if k != "name"}
        name = item["name"]
    else:
        raise ConfigError(
            f"Expected an augmentation name or a dict with a 'name' key, received {item!r}"
        )
    key = str(name).strip().lower()
    table = _PRESETS if presets is None else presets
    if key not in table:
        raise UnknownNameError("augmentation", str(name), table)
    op, defaults = table[key]
    valid = [field.name for field in dataclasses.fields(op)]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(
            f"augmentation {key!r} received unknown argument(s) {unknown}; "
            f"expected some of: {', '.join(valid)}"
        )
    built: AugmentOp = op(**{**defaults, **kwargs})
    return built
