"""The explain_* texts show the dot products and the right numbers; parse_matrix reads user input."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.reference.explain import explain_backprop, explain_conv, explain_pool, parse_matrix


def test_parse_matrix_reads_rows_split_by_semicolons() -> None:
    m = parse_matrix("1 2 5 3; 3 0 1 2; 2 1 3 4; 1 1 2 0")
    np.testing.assert_array_equal(m, [[1, 2, 5, 3], [3, 0, 1, 2], [2, 1, 3, 4], [1, 1, 2, 0]])
    np.testing.assert_array_equal(parse_matrix("1,-2.5\n3, 4;"), [[1, -2.5], [3, 4]])


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "Expected rows"), ("1 2; 3", "equal length"), ("1 x", "numbers only")],
)
def test_parse_matrix_rejects_bad_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_matrix(text)


def test_explain_pool_shows_each_window_and_the_output() -> None:
    text = explain_pool(parse_matrix("1 2 5 3; 3 0 1 2; 2 1 3 4; 1 1 2 0"))
    assert "y[0,0] = max(1, 2, 3, 0) = 3  (winner at row 1, col 0)" in text
    assert "y[1,1] = max(3, 4, 2, 0) = 4  (winner at row 2, col 3)" in text
    assert text.split("Output (2x2):\n")[1].startswith("  3 5\n  2 4")


def test_explain_conv_writes_out_each_dot_product() -> None:
    image = parse_matrix("1 2 3; 4 5 6; 7 8 9; 10 11 12")
    text = explain_conv(image, parse_matrix("1 0; 2 -1"))
    assert "y[0,0] = 1*1 + 2*0 + 4*2 + 5*(-1) = 4" in text
    assert "y[2,1] = 8*1 + 9*0 + 11*2 + 12*(-1) = 18" in text
    assert "Output (3x2):" in text


def test_explain_conv_with_stride_and_padding() -> None:
    text = explain_conv(parse_matrix("1 2; 3 4"), parse_matrix("1 1; 1 1"), stride=2, padding=1)
    assert "ring(s) of zero padding" in text
    assert "y[0,0] = 0*1 + 0*1 + 0*1 + 1*1 = 1" in text
    assert "y[1,1] = 4*1 + 0*1 + 0*1 + 0*1 = 4" in text


def test_explain_backprop_shows_flipped_kernel_and_gradients() -> None:
    text = explain_backprop(
        parse_matrix("1 2 3; 4 5 6; 7 8 9"), parse_matrix("1 2; 3 4"), parse_matrix("1 0; 0 1")
    )
    assert "Kernel flipped 180°:\n  4 3\n  2 1" in text
    assert "dx[1,1] = 1*4 + 0*3 + 0*2 + 1*1 = 5" in text
    assert "dL/dx:\n  1 2 0\n  3 5 2\n  0 3 4" in text
    assert "dw[1,1] = 5*1 + 6*0 + 8*0 + 9*1 = 14" in text
    assert "dL/db = sum of dL/dy = 2" in text


def test_explain_backprop_rejects_wrong_grad_shape() -> None:
    with pytest.raises(ValueError, match=r"Expected grad_out of shape \(2, 2\)"):
        explain_backprop(np.ones((3, 3)), np.ones((2, 2)), np.ones((3, 3)))
