"""Shared helpers for the NumPy reference engine's tests: a finite-difference gradient."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

NumericGrad = Callable[[Callable[[np.ndarray], float], np.ndarray], np.ndarray]


def numeric_grad(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every entry of x (float64)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f(x)
        x[i] = old - h
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


@pytest.fixture
def fd_grad() -> NumericGrad:
    """The finite-difference gradient function, as a fixture (test files cannot import each other)."""
    return numeric_grad
