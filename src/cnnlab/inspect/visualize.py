"""Pictures of a CNN: filter grids, feature maps, image grids and PNG files."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.core.io import atomic_open

Normalize = Literal["each", "all"] | None
FilterMode = Literal["auto", "rgb", "per_channel", "sum"]

MAX_TILES = (
    256  # per_channel grids of deep layers have out*in tiles; beyond this they are unreadable
)


def image_grid(
    images: torch.Tensor | np.ndarray,
    ncols: int | None = None,
    pad: int = 1,
    normalize: Normalize = "each",
) -> np.ndarray:
    """Tile a batch of images into one uint8 picture.

    Args:
        images: (N, C, h, w) with C = 1 (grey) or 3 (colour).
        ncols: tiles per row; default ceil(sqrt(N)).
        pad: pixels of black between tiles.
        normalize: "each" scales every tile to its own min..max, "all" scales the
            batch by its global min..max, None expects values already in [0, 1].

    Returns:
        (H, W) for grey tiles or (H, W, 3) for colour, dtype uint8.
    """
    x = torch.as_tensor(images).detach().to("cpu", torch.float64)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ShapeMismatchError(f"Expected images (N, 1|3, h, w), received {tuple(x.shape)}")
    n, c, h, w = x.shape
    x = _rescale(x, normalize)
    ncols = ncols or math.ceil(math.sqrt(n))
    if ncols < 1:
        raise ConfigError(f"Expected ncols >= 1, received ncols={ncols}")
    nrows = math.ceil(n / ncols)
    grid = torch.zeros(c, nrows * (h + pad) - pad, ncols * (w + pad) - pad, dtype=torch.float64)
    for i in range(n):
        r, q = divmod(i, ncols)
        grid[:, r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = x[i]
    out = (grid * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def _rescale(x: torch.Tensor, normalize: Normalize) -> torch.Tensor:
    """Map (N, C, h, w) to [0, 1]; a constant tile becomes 0 rather than NaN."""
    if normalize is None:
        return x.clamp(0, 1)
    if normalize == "all":
        lo, hi = x.min(), x.max()
    elif normalize == "each":
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
    else:
        raise ConfigError(f"Expected normalize in 'each', 'all', None, received {normalize!r}")
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def save_png(array: np.ndarray, path: str | os.PathLike[str], scale: int = 1) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG, atomically.

    Args:
        array: the picture, e.g. from :func:`image_grid`.
        path: destination file; its folder must exist.
        scale: nearest-neighbour upsampling factor, so 3x3 filters stay visible.

    Returns:
        The path written.
    """
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ShapeMismatchError(
            f"Expected uint8 (H, W) or (H, W, 3), received {array.dtype} {array.shape}"
        )
    if scale < 1:
        raise ConfigError(f"Expected scale >= 1, received scale={scale}")
    big = array.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    with atomic_open(path, "wb") as f:
        Image.fromarray(big).save(f, format="PNG")
    return path


def conv_names(model: nn.Module) -> list[str]:
    """Names of the Conv2d layers in definition order. 1x1 convs (shortcut projections,
    bottleneck reductions) are left out when the model has larger kernels: their maps
    show little, and a shortcut is often the last conv defined."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    spatial = [n for n, m in convs if tuple(m.kernel_size) != (1, 1)]
    return spatial or [n for n, _ in convs]


def find_layer(model: nn.Module, name: str | None, kind: type[nn.Module] = nn.Conv2d) -> nn.Module:
    """The module called ``name``, or the first ``kind`` module when name is None."""
    modules = dict(model.named_modules())
    if name is None:
        for m in modules.values():
            if isinstance(m, kind):
                return m
        raise ConfigError(f"{type(model).__name__} has no {kind.__name__} layer")
    if name not in modules:
        raise ConfigError(f"Expected a layer name of {type(model).__name__}, received {name!r}")
    return modules[name]


def filter_weights(conv: nn.Conv2d, mode: FilterMode = "auto") -> torch.Tensor:
    """The conv's weights as (N, 1|3, k, k) tiles for :func:`image_grid`.

    "rgb" needs 3 input channels (one colour tile per filter); "per_channel"
    gives one grey tile per (out, in) pair, capped at MAX_TILES; "sum" adds the
    input channels (one grey tile per filter). "auto" is "rgb" for 3 input
    channels and "sum" otherwise.
    """
    w = conv.weight.detach()  # (out_channels, in_channels, kh, kw)
    out_c, in_c = w.shape[:2]
    if mode == "auto":
        mode = "rgb" if in_c == 3 else ("per_channel" if in_c == 1 else "sum")
    if mode == "rgb":
        if in_c != 3:
            raise ShapeMismatchError(f"mode='rgb' needs in_channels=3, received in_channels={in_c}")
        return w
    if mode == "per_channel":
        return w.reshape(out_c * in_c, 1, *w.shape[2:])[:MAX_TILES]
    if mode == "sum":
        return w.sum(dim=1, keepdim=True)
    raise ConfigError(f"Expected mode in auto, rgb, per_channel, sum, received {mode!r}")


def filter_grid(
    model: nn.Module, layer: str | None = None, mode: FilterMode = "auto", pad: int = 1
) -> np.ndarray:
    """The weights of a conv layer (default: the first Conv2d) as a uint8 grid.

    Each tile is scaled to its own min..max, as the seed 003 workshop does.
    """
    conv = find_layer(model, layer)
    if not isinstance(conv, nn.Conv2d):
        raise ConfigError(f"Expected a Conv2d layer, received {type(conv).__name__} ({layer!r})")
    return image_grid(filter_weights(conv, mode), pad=pad, normalize="each")


@contextmanager
def capture(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of named layers while inside the block; hooks removed after.

    Outputs are cloned in the hook, so a later in-place ReLU neither changes the
    stored map nor breaks autograd through it.
    """
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    if missing:
        raise ConfigError(f"Expected layer names of {type(model).__name__}, received {missing}")
    maps: dict[str, torch.Tensor] = {}

    def make_hook(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
            maps[name] = out.clone()

        return hook

    handles = [modules[n].register_forward_hook(make_hook(n)) for n in layers]
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def feature_maps(
    model: nn.Module, x: torch.Tensor, layers: str | Sequence[str]
) -> dict[str, torch.Tensor]:
    """Outputs of the named layers for the input ``x`` (one image or a batch).

    The model runs in eval mode; its train/eval flag is restored afterwards.

    Returns:
        layer name -> (B, C, H, W) activation.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    was_training = model.training
    model.eval()
    try:
        with capture(model, names) as maps:
            model(x if x.dim() == 4 else x.unsqueeze(0))
    finally:
        model.train(was_training)
    return dict(maps)


def feature_map_grid(
    maps: torch.Tensor, index: int = 0, ncols: int | None = None, pad: int = 1
) -> np.ndarray:
    """All channels of image ``index`` of a (B, C, H, W) activation as a grey grid."""
    if maps.dim() == 3:
        maps = maps.unsqueeze(0)
    if maps.dim() != 4:
        raise ShapeMismatchError(f"Expected maps (B, C, H, W), received {tuple(maps.shape)}")
    return image_grid(maps[index].unsqueeze(1), ncols=ncols, pad=pad, normalize="each")
