"""Activation maximisation and Deep Dream: gradient ascent on the input image (Mordvintsev et al. 2015)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.inspect.visualize import capture, conv_names, find_layer


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside the block; both restored after."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), reflect-padded so borders do not darken."""
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    kh = k.view(1, 1, 1, -1).repeat(c, 1, 1, 1)  # (C, 1, 1, K): depthwise
    kv = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kh, groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kv, groups=c)


def _infer_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) from the zoo attributes ``in_channels`` and ``input_size`` (default 32x32)."""
    size = getattr(model, "input_size", (32, 32))
    h, w = (size, size) if isinstance(size, int) else size
    return int(getattr(model, "in_channels", 3)), int(h), int(w)


def _objective(
    model: nn.Module, x: torch.Tensor, target: int, kind: str, layer: str | None
) -> torch.Tensor:
    """Mean activation of channel ``target`` at ``layer``, or the logit of class ``target``."""
    if kind == "class":
        return model(x)[0, target]
    assert layer is not None
    return layer_output(model, x, layer)[0, target].mean()


def _last_conv_name(model: nn.Module) -> str:
    names = conv_names(model)
    if not names:
        raise ConfigError(f"{type(model).__name__} has no Conv2d layer; pass layer=")
    return names[-1]


def activation_maximisation(
    model: nn.Module,
    target: int,
    kind: Literal["channel", "class"] = "channel",
    layer: str | None = None,
    steps: int = 200,
    lr: float = 0.05,  # Adam step on pixels in [0, 1] units
    jitter: int = 2,  # pixels of random roll per step: removes high-frequency checkerboards
    blur_every: int = 4,  # steps between Gaussian blurs: removes pixel noise
    blur_sigma: float = 0.5,  # pixels
    l2: float = 1e-4,  # image shrink per step, keeps values bounded
    input_shape: tuple[int, int, int] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """Synthesise an input that excites a channel or a class, from small noise.

    Args:
        model: any module; its state (mode, requires_grad, hooks) is restored.
        target: channel index (kind="channel") or class index (kind="class").
        kind: what to maximise.
        layer: named module for kind="channel"; default the last Conv2d.
        steps: gradient-ascent steps.
        lr: Adam learning rate.
        jitter: maximum roll in pixels per step.
        blur_every: blur the image every this many steps (0: never).
        blur_sigma: blur width in pixels.
        l2: L2 decay: the image is multiplied by (1 - l2) after each step.
        input_shape: (C, H, W); default from ``model.in_channels``/``input_size``.
        generator: random source for the start noise and the jitter.

    Returns:
        The image (1, C, H, W) and the target activation at each step.
    """
    if kind not in ("channel", "class"):
        raise ConfigError(f"Expected kind in 'channel', 'class', received kind={kind!r}")
    if kind == "channel" and layer is None:
        layer = _last_conv_name(model)
    elif layer is not None:
        find_layer(model, layer)
    shape = input_shape or _infer_shape(model)
    x = (0.01 * torch.randn(1, *shape, generator=generator)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    history: list[float] = []
    with frozen(model):
        for step in range(steps):
            dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
            act = _objective(model, torch.roll(x, (dy, dx), dims=(2, 3)), target, kind, layer)
            history.append(float(act.detach()))
            opt.zero_grad()
            (-act).backward()
            opt.step()
            with torch.no_grad():
                # Decay as a shrink factor (Yosinski et al. 2015), not a loss term:
                # a random-init net's gradients are too small for a penalty to compete.
                x.mul_(1 - l2)
            if blur_every and (step + 1) % blur_every == 0:
                with torch.no_grad():
                    x.copy_(gaussian_blur(x, blur_sigma))
    return x.detach(), history


class _StopForward(Exception):
    """Raised by a hook once the layer of interest has run: the rest is wasted work."""


def layer_output(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """``layer``'s output for ``x`` (differentiable); the model stops after that layer."""

    def stop(_m: nn.Module, _inp: object, _out: torch.Tensor) -> None:
        raise _StopForward

    with capture(model, [layer]) as maps:
        handle = find_layer(model, layer).register_forward_hook(stop)
        try:
            model(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
    return maps[layer]


def layer_norm(model: nn.Module, image: torch.Tensor, layer: str) -> torch.Tensor:
    """L2 norm of ``layer``'s activation for ``image`` (differentiable)."""
    return layer_output(model, image, layer).norm()


def deep_dream(
    model: nn.Module,
    image: torch.Tensor,
    layer: str,
    octaves: int = 3,
    octave_scale: float = 1.4,  # size ratio between octaves, as in the original notebook
    steps: int = 20,  # per octave
    lr: float = 0.02,  # step size for a gradient normalised to mean |g| = 1
) -> torch.Tensor:
    """Amplify what ``layer`` sees in ``image`` by ascending its activation's L2 norm.

    Octaves run from the smallest size up: the image is resized down, the
    detail found so far is added, gradient ascent runs, and the new detail
    (result minus the resized image) is carried to the next, larger octave.
    The model must accept every octave's size (fixed-input models do not).

    Args:
        model: any module; its state is restored.
        image: (1, C, H, W) or (C, H, W).
        layer: named module whose activation is amplified.
        octaves: number of scales.
        octave_scale: ratio between successive scales.
        steps: ascent steps per octave.
        lr: step size.

    Returns:
        The dreamed image (1, C, H, W).
    """
    find_layer(model, layer)
    base = (image if image.dim() == 4 else image.unsqueeze(0)).detach().float()
    h, w = base.shape[-2:]
    sizes = [
        (max(1, round(h / octave_scale**i)), max(1, round(w / octave_scale**i)))
        for i in reversed(range(octaves))
    ]
    detail = base.new_zeros(*base.shape[:2], *sizes[0])  # (B, C, h0, w0): no detail yet
    with frozen(model):
        for size in sizes:
            scaled = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
            x = (scaled + detail).requires_grad_(True)
            for _ in range(steps):
                (grad,) = torch.autograd.grad(layer_norm(model, x, layer), x)
                with torch.no_grad():
                    x += lr * grad / grad.abs().mean().clamp_min(1e-12)
            detail = x.detach() - scaled
    return base + detail
