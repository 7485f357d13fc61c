"""The course notes' worked examples and counting formulas, and the engine's independence from torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.reference import conv_flops, conv_macs, conv_matrix, conv_output_size, conv_param_count
from cnnlab.reference.conv import conv2d, conv_transpose2d
from cnnlab.reference.examples import (
    conv_4x3_example,
    conv_4x3_symbolic,
    conv_matrix_example,
    filter_params_example,
    max_pool_example,
    transposed_conv_example,
)


def test_max_pool_example_is_3_5_2_4() -> None:
    np.testing.assert_array_equal(max_pool_example(), [[3, 5], [2, 4]])


def test_conv_4x3_example_matches_the_notes_formula() -> None:
    image = np.arange(1.0, 13.0).reshape(4, 3)  # a..l = 1..12
    kernel = np.array([[2.0, -1.0], [0.5, 3.0]])  # α, β, γ, δ
    out = conv_4x3_example(image, kernel)
    assert out.shape == (3, 2)
    assert out[0, 0] == 1 * 2 + 2 * -1 + 4 * 0.5 + 5 * 3  # a*α + b*β + d*γ + e*δ
    assert out[2, 1] == 8 * 2 + 9 * -1 + 11 * 0.5 + 12 * 3  # h*α + i*β + k*γ + l*δ
    np.testing.assert_allclose(out, conv_4x3_symbolic(image, kernel), rtol=0, atol=1e-12)


def test_conv_matrix_has_the_appendix_layout() -> None:
    C = conv_matrix_example()  # kernel w[r, s] = 3*r + s + 1
    assert C.shape == (4, 16)
    w = lambda r, s: 3 * r + s + 1  # noqa: E731
    expected = np.zeros((4, 16))
    for row, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        for r in range(3):
            for s in range(3):
                expected[row, (i + r) * 4 + (j + s)] = w(r, s)
    np.testing.assert_array_equal(C, expected)
    # first row written out as in the appendix: w00 w01 w02 0 w10 w11 w12 0 w20 w21 w22 0 0 0 0 0
    np.testing.assert_array_equal(C[0], [1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0, 0, 0, 0, 0])


def test_conv_matrix_times_x_is_conv_and_its_transpose_is_conv_transpose() -> None:
    rng = np.random.default_rng(0)
    kernel, x, y = rng.normal(size=(3, 3)), rng.normal(size=(4, 4)), rng.normal(size=(2, 2))
    C = conv_matrix(kernel, (4, 4))
    np.testing.assert_allclose(
        C @ x.ravel(), conv2d(x[None, None], kernel[None, None]).ravel(), atol=1e-12
    )
    via_matrix, direct = transposed_conv_example(kernel, y)
    np.testing.assert_allclose(via_matrix, direct, atol=1e-12)
    torch_out = F.conv_transpose2d(torch.tensor(y[None, None]), torch.tensor(kernel[None, None]))[
        0, 0
    ]
    np.testing.assert_allclose(direct, torch_out.numpy(), atol=1e-12)
    kernel_b = rng.normal(size=(2, 3))
    C = conv_matrix(kernel_b, (5, 4))
    x = rng.normal(size=(5, 4))
    np.testing.assert_allclose(
        C @ x.ravel(), conv2d(x[None, None], kernel_b[None, None]).ravel(), atol=1e-12
    )
    y = rng.normal(size=(4, 2))
    np.testing.assert_allclose(
        C.T @ y.ravel(), conv_transpose2d(y[None, None], kernel_b[None, None]).ravel(), atol=1e-12
    )


def test_one_3x3x3_filter_plus_bias_is_28_parameters() -> None:
    assert filter_params_example() == 28


def test_param_count_formula_matches_a_torch_conv() -> None:
    for f, d1, k in [(3, 3, 1), (5, 6, 16), (1, 64, 32)]:
        layer = torch.nn.Conv2d(d1, k, f)
        assert conv_param_count(f, d1, k) == sum(p.numel() for p in layer.parameters())
        assert conv_param_count(f, d1, k, bias=False) == layer.weight.numel()


def test_flops_formula_counts_two_per_multiply_add() -> None:
    f, d1, k, size, s, p = 5, 3, 8, 32, 1, 2
    w2 = conv_output_size(size, f, s, p)  # (W1 - F + 2P)/S + 1
    assert w2 == (size - f + 2 * p) // s + 1 == 32
    # count the multiply-adds by hand: every output cell is one dot product of length F*F*D1
    multiply_adds = k * w2 * w2 * f * f * d1
    assert conv_flops(f, d1, k, w2, w2) == 2 * multiply_adds
    assert (
        conv_macs(f, d1, k, w2, w2) == (f * f * d1 + 1) * w2 * w2 * k
    )  # the slides' count, bias included


def test_engine_imports_without_torch() -> None:
    # cnnlab/__init__.py imports the torch models, so stand in an empty parent package:
    # what is checked is that cnnlab.reference itself never needs torch.
    code = (
        "import importlib.util, sys, types\n"
        "sys.modules['torch'] = None\n"
        "spec = importlib.util.find_spec('cnnlab')\n"
        "parent = types.ModuleType('cnnlab')\n"
        "parent.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['cnnlab'] = parent\n"
        "import cnnlab.reference, cnnlab.reference.lenet, cnnlab.reference.examples, cnnlab.reference.explain\n"
        "from cnnlab.reference.examples import max_pool_example\n"
        "assert max_pool_example().tolist() == [[3, 5], [2, 4]]\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m, v in sys.modules.items() if v is not None)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
