"""Attribution maps: saliency, SmoothGrad, Grad-CAM, occlusion, guided backprop, deconvnet."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.models.ensemble import Ensemble

_OCCLUSION_CHUNK = 256  # occluded copies per forward pass: bounds memory, avoids per-patch calls


@contextmanager
def _inspecting(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the call; the caller's state comes back after."""
    training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        # Only input/activation gradients are needed; parameter grads would be wasted work.
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(training)


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ShapeMismatchError(f"Expected x of shape (B, C, H, W), received {tuple(x.shape)}")


def _check_target(target: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    target = torch.as_tensor(target, device=device).long().reshape(-1)
    if target.shape[0] == batch:
        return target
    raise ShapeMismatchError(f"Expected one target per image ({batch}), received {target.shape[0]}")


def _resolve_target(logits: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Class index per image: ``target`` as given, or the predicted class when None."""
    if target is None:
        return logits.argmax(dim=1)
    return _check_target(target, logits.shape[0], logits.device)


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scale each map of a (B, H, W) or (B, L) batch to [0, 1]; a constant map
    becomes 0."""
    flat = maps.flatten(1)
    shape = (-1,) + (1,) * (maps.dim() - 1)
    low = flat.min(dim=1).values.view(shape)
    span = (flat.max(dim=1).values.view(shape) - low).clamp_min(1e-12)
    return ((maps - low) / span).detach()


def _input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d logit_target / d x for every image, shape (B, C, H, W)."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    score = logits.gather(1, target[:, None]).sum()  # images are independent: one backward
    (grad,) = torch.autograd.grad(score, x)
    return grad


def _predicted(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    if target is not None:
        return _check_target(target, x.shape[0], x.device)
    with torch.no_grad():
        return model(x).argmax(dim=1)


def saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Vanilla gradient saliency (Simonyan et al. 2014).

    Args:
        model: a classifier; put in eval mode for the call and restored after.
        x: normalised image batch (B, C, H, W).
        target: class index per image (B,), or None for the predicted class.

    Returns:
        |d logit_target / d x|, max over channels, scaled per image to [0, 1]: (B, H, W).
    """
    _check_batch(x)
    with _inspecting(model):
        grad = _input_gradient(model, x, _predicted(model, x, target))
    return _normalise(grad.abs().amax(dim=1))


def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | None = None,
    samples: int = 16,
    noise: float = 0.15,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies of ``x``.

    Args:
        model: a classifier; put in eval mode for the call and restored after.
        x: normalised image batch (B, C, H, W).
        target: class index per image (B,), or None for the class predicted on clean ``x``.
        samples: noisy copies per image.
        noise: Gaussian noise std as a fraction of each image's value range (max - min).
        generator: random generator for the noise, for reproducible maps.

    Returns:
        Mean |gradient| (max over channels) over the copies, scaled to [0, 1]: (B, H, W).
    """
    _check_batch(x)
    if samples < 1:
        raise ConfigError(f"Expected samples >= 1, received samples={samples}")
    flat = x.detach().flatten(1)
    std = noise * (flat.max(dim=1).values - flat.min(dim=1).values)[:, None, None, None]
    total = torch.zeros(x.shape[0], *x.shape[2:], device=x.device)
    with _inspecting(model):
        cls = _predicted(model, x, target)
        for _ in range(samples):
            eps = torch.randn(x.shape, generator=generator, device=x.device)
            total += _input_gradient(model, x + std * eps, cls).abs().amax(dim=1)
    return _normalise(total / samples)


def _find_layer(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ConfigError(
            f"Unknown layer {layer!r} for {type(model).__name__}; "
            f"received layer={layer!r}, expected one of {sorted(n for n in modules if n)[:20]}..."
        )
    return modules[layer]


def _activation_and_logits(
    model: nn.Module, x: torch.Tensor, layer: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations of ``layer`` (default: ``forward_features`` output) and the logits."""
    if layer is None:
        feats = model.forward_features(x)  # type: ignore[operator]
        return feats, model.forward_head(feats)  # type: ignore[operator]
    captured: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise ConfigError(f"Layer {layer!r} must output a tensor, received {type(output)}")
        captured.append(output)
        # Hand on a copy, so a following inplace ReLU cannot overwrite what we keep.
        return output.clone()

    handle = _find_layer(model, layer).register_forward_hook(keep)
    try:
        logits = model(x)
    finally:
        handle.remove()
    if not captured:
        raise ConfigError(f"Layer {layer!r} was not called in the forward pass")
    return captured[-1], logits


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | None = None,
    layer: str | None = None,
    size: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ReLU(sum_k alpha_k A^k), upsampled to the image.

    Args:
        model: a classifier with ``forward_features``/``forward_head`` (when ``layer``
            is None) or any module; put in eval mode for the call and restored after.
        x: normalised image batch (B, C, H, W), or signals (B, C, L).
        target: class index per image (B,), or None for the predicted class.
        layer: name from ``model.named_modules()`` whose output is A (its last call,
            if the module runs more than once); None means the last feature maps.
        size: the map's output size; default the input's (H, W) or (L,). A 2-D map of a
            1-D input (a spectrogram CNN's) defaults to the model's ``spectrogram`` size.

    Returns:
        The class activation map, upsampled (bilinear, or linear over time) to ``size``,
        scaled to [0, 1]: (B, H, W), or (B, L) for maps over time.
        For an :class:`~cnnlab.models.Ensemble` without ``layer``: the mean of its
        members' maps for the class the ensemble predicts (or ``target``), rescaled.
    """
    if x.dim() not in (3, 4):
        raise ShapeMismatchError(
            f"Expected x of shape (B, C, H, W) or (B, C, L), received {tuple(x.shape)}"
        )
    if layer is None and isinstance(model, Ensemble):
        # No single last feature map: each member's map, for the ensemble's class.
        if target is None:
            with _inspecting(model), torch.no_grad():
                target = model(x).argmax(1)
        maps = [grad_cam(m, x, target, size=size) for m in model.members]
        return _normalise(torch.stack(maps).mean(0))
    with _inspecting(model):
        # Frozen parameters: the input must require grad for A to carry a gradient.
        x = x.detach().clone().requires_grad_(True)
        acts, logits = _activation_and_logits(model, x, layer)
        cls = _resolve_target(logits, target)
        (grads,) = torch.autograd.grad(logits.gather(1, cls[:, None]).sum(), acts)
    if acts.dim() not in (3, 4):
        raise ShapeMismatchError(
            f"Grad-CAM needs feature maps (B, K, h, w) or (B, K, l), received {tuple(acts.shape)}"
        )
    spatial = tuple(range(2, acts.dim()))
    alpha = grads.mean(dim=spatial, keepdim=True)  # (B, K, 1[, 1]): spatial mean of dy/dA^k
    cam = F.relu((alpha * acts).sum(dim=1, keepdim=True))  # (B, 1, h[, w])
    if size is None:
        size = _map_size(model, x, acts)
    mode = "bilinear" if cam.dim() == 4 else "linear"
    cam = F.interpolate(cam, size=tuple(size), mode=mode, align_corners=False)
    return _normalise(cam[:, 0])


def _map_size(model: nn.Module, x: torch.Tensor, acts: torch.Tensor) -> tuple[int, ...]:
    """The input's own size, or for 2-D maps of a 1-D input the spectrogram's."""
    if acts.dim() == x.dim():
        return tuple(x.shape[2:])
    spectrogram = getattr(model, "spectrogram", None)
    if acts.dim() == 4 and spectrogram is not None:
        with torch.no_grad():
            return tuple(spectrogram(x).shape[-2:])
    raise ShapeMismatchError(
        f"Grad-CAM of feature maps {tuple(acts.shape)} over an input {tuple(x.shape)}: "
        "pass size= for the map"
    )


def _patch_masks(height: int, width: int, patch: int, stride: int) -> torch.Tensor:
    """One (H, W) 0/1 mask per patch position, shape (P, H, W); the last row/column reach the edge."""

    def starts(size: int) -> list[int]:
        first = list(range(0, max(size - patch, 0) + 1, stride))
        return first if first[-1] + patch >= size else [*first, size - patch]

    masks = [
        torch.zeros(height, width).index_fill_(0, torch.arange(r, min(r + patch, height)), 1)
        * torch.zeros(height, width).index_fill_(1, torch.arange(c, min(c + patch, width)), 1)
        for r in starts(height)
        for c in starts(width)
    ]
    return torch.stack(masks)


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | None = None,
    patch: int = 4,
    stride: int = 2,
    fill: float = 0.0,
    normalize: bool = True,
) -> torch.Tensor:
    """Occlusion sensitivity (Zeiler & Fergus 2014): probability lost under a sliding patch.

    Args:
        model: a classifier; put in eval mode for the call and restored after.
        x: normalised image batch (B, C, H, W).
        target: class index per image (B,), or None for the predicted class.
        patch: side of the square patch, in pixels.
        stride: step between patch positions, in pixels.
        fill: value written into the patch (0.0 is the mean of a normalised input).
        normalize: scale each map to [0, 1]; False keeps the raw drop in probability.

    Returns:
        Per pixel, the mean drop in target probability over the patches covering it: (B, H, W).
    """
    _check_batch(x)
    if patch < 1 or stride < 1:
        raise ConfigError(f"Expected patch, stride >= 1, received patch={patch}, stride={stride}")
    B, _, H, W = x.shape  # (B, C, H, W)
    masks = _patch_masks(H, W, patch, stride).to(x)  # (P, H, W)
    heat = torch.zeros(B, H, W, device=x.device)
    with _inspecting(model), torch.no_grad():
        base = model(x).softmax(dim=1)
        cls = _resolve_target(base, target)
        base_p = base.gather(1, cls[:, None])[:, 0]  # (B,)
        for i in range(B):
            drops = []
            for chunk in masks.split(_OCCLUSION_CHUNK):
                m = chunk[:, None]  # (p, 1, H, W)
                occluded = x[i] * (1 - m) + fill * m  # (p, C, H, W)
                drops.append(base_p[i] - model(occluded).softmax(dim=1)[:, cls[i]])
            heat[i] = torch.einsum("p,phw->hw", torch.cat(drops), masks)
    heat = heat / masks.sum(dim=0).clamp_min(1)
    return _normalise(heat) if normalize else heat


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward keeps a gradient only where it and the input are positive."""

    @staticmethod
    def forward(ctx: Any, inp: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inp)
        return inp.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (inp,) = ctx.saved_tensors
        return grad.clamp(min=0) * (inp > 0)


class _DeconvReLU(torch.autograd.Function):
    """ReLU whose backward is a ReLU of the gradient, whatever the input was (deconvnet)."""

    @staticmethod
    def forward(ctx: Any, inp: torch.Tensor) -> torch.Tensor:
        return inp.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


@contextmanager
def _swapped_relus(model: nn.Module, function: type[torch.autograd.Function]) -> Iterator[None]:
    """Route every ``nn.ReLU`` through ``function``; inplace flags and hooks restored after."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    inplace = [m.inplace for m in relus]
    handles = []
    for m in relus:
        # An inplace ReLU would overwrite the input the hook recomputes from.
        m.inplace = False
        handles.append(m.register_forward_hook(lambda mod, inp, out: function.apply(inp[0])))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in zip(relus, inplace, strict=True):
            m.inplace = flag


def _modified_backprop(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | None,
    function: type[torch.autograd.Function],
) -> torch.Tensor:
    _check_batch(x)
    with _inspecting(model):
        cls = _predicted(model, x, target)
        with _swapped_relus(model, function):
            grad = _input_gradient(model, x, cls)
    return _normalise(grad.abs().amax(dim=1))


def guided_backprop(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015).

    Every ``nn.ReLU`` module passes back only positive gradients at positive inputs.
    ReLUs applied functionally (``F.relu``, ``torch.relu``) inside a ``forward``
    cannot be hooked and keep their ordinary backward.

    Args:
        model: a classifier; put in eval mode for the call and restored after.
        x: normalised image batch (B, C, H, W).
        target: class index per image (B,), or None for the predicted class.

    Returns:
        |guided gradient|, max over channels, scaled per image to [0, 1]: (B, H, W).
    """
    return _modified_backprop(model, x, target, _GuidedReLU)


def deconvnet(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Deconvnet attribution (Zeiler & Fergus 2014) as a modified gradient.

    Every ``nn.ReLU`` module passes back the positive part of the gradient,
    whatever its input was. Functional ReLUs (``F.relu``) cannot be hooked and
    keep their ordinary backward.

    Args:
        model: a classifier; put in eval mode for the call and restored after.
        x: normalised image batch (B, C, H, W).
        target: class index per image (B,), or None for the predicted class.

    Returns:
        |deconvnet signal|, max over channels, scaled per image to [0, 1]: (B, H, W).
    """
    return _modified_backprop(model, x, target, _DeconvReLU)


def _jet(t: np.ndarray) -> np.ndarray:
    """A jet-like colour map: 0 -> dark blue, 0.5 -> green, 1 -> dark red; (H, W) -> (H, W, 3)."""
    centres = np.array([3.0, 2.0, 1.0])  # where red, green and blue peak, in units of t/4
    return np.clip(1.5 - np.abs(4.0 * t[..., None] - centres), 0.0, 1.0)


def _as_hwc(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Any of (H, W), (H, W, C), (C, H, W) with C in {1, 3} -> float RGB (H, W, 3) in [0, 1]."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    scaled = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    if scaled.ndim == 2:
        scaled = scaled[..., None]
    if scaled.ndim == 3 and scaled.shape[0] in (1, 3) and scaled.shape[-1] not in (1, 3):
        scaled = scaled.transpose(1, 2, 0)
    if scaled.ndim != 3 or scaled.shape[-1] not in (1, 3):
        raise ShapeMismatchError(
            f"Expected an image (H, W), (H, W, C) or (C, H, W) with C in (1, 3), "
            f"received {arr.shape}"
        )
    return np.broadcast_to(np.clip(scaled, 0.0, 1.0), (*scaled.shape[:2], 3))


def overlay(
    image: np.ndarray | torch.Tensor, heatmap: np.ndarray | torch.Tensor, alpha: float = 0.5
) -> np.ndarray:
    """Blend an image with a jet-coloured heat map.

    Args:
        image: grayscale or RGB, (H, W), (H, W, C) or (C, H, W), uint8 or floats in [0, 1].
        heatmap: (H, W) values in [0, 1] (e.g. one map from :func:`grad_cam`).
        alpha: weight of the heat map; 0 shows only the image.

    Returns:
        uint8 RGB array (H, W, 3).
    """
    rgb = _as_hwc(image)
    heat = heatmap.detach().cpu().numpy() if isinstance(heatmap, torch.Tensor) else heatmap
    heat = np.asarray(heat, dtype=np.float64)
    if heat.shape != rgb.shape[:2]:
        raise ShapeMismatchError(
            f"Expected a heat map of shape {rgb.shape[:2]}, received {heat.shape}"
        )
    blended = (1.0 - alpha) * rgb + alpha * _jet(np.clip(heat, 0.0, 1.0))
    return np.round(blended * 255.0).astype(np.uint8)
