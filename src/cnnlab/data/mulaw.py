"""mu-law companding (ITU-T G.711's formula, as WaveNet uses it): samples in [-1, 1] <->
integer codes in [0, mu], finer near silence than near full scale."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cnnlab.core.errors import ConfigError

__all__ = ["mu_law_decode", "mu_law_encode"]


def mu_law_encode(x: Tensor, mu: int = 255) -> Tensor:
    """Samples in [-1, 1] -> int64 codes in [0, mu]; values outside [-1, 1] are clipped.

    f = sign(x) ln(1 + mu |x|) / ln(1 + mu) is quantised to the nearest of mu + 1 evenly
    spaced levels on [-1, 1]: code = floor((f + 1) / 2 * mu + 1/2). Silence (0) maps to
    the middle code, floor(mu / 2 + 1/2) (128 for mu = 255).
    """
    _check_mu(mu)
    if not x.is_floating_point():
        raise ConfigError(f"mu_law_encode: expected float samples in [-1, 1], received {x.dtype}")
    x = x.clamp(-1, 1)
    f = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return torch.floor((f + 1) / 2 * mu + 0.5).long()


def mu_law_decode(codes: Tensor, mu: int = 255) -> Tensor:
    """Codes in [0, mu] -> samples in [-1, 1] (the inverse of the companding, at the level's
    centre): x = sign(f) ((1 + mu)^|f| - 1) / mu with f = 2 code / mu - 1."""
    _check_mu(mu)
    if codes.is_floating_point() or codes.dtype == torch.bool:
        raise ConfigError(f"mu_law_decode: expected integer codes, received {codes.dtype}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > mu):
        raise ConfigError(
            f"mu_law_decode: expected codes in [0, {mu}], received values in "
            f"[{int(codes.min())}, {int(codes.max())}]"
        )
    f = 2 * codes.double() / mu - 1  # float64 inside: float32 would lose 1e-5 near 0
    x = torch.sign(f) * torch.expm1(f.abs() * math.log1p(mu)) / mu
    return x.to(torch.get_default_dtype())


def _check_mu(mu: int) -> None:
    if mu < 1:
        raise ConfigError(f"Expected mu >= 1, received mu={mu}")
