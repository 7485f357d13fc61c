"""WaveNet: mu-law against its formula in NumPy, causality and the receptive field measured
by gradients, conditioning, and fast generation equal to the naive way."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.models.registry import create_model, list_models, model_info
from cnnlab.models.wavenet import WaveNet, generation_speed, mu_law_decode, mu_law_encode

SMALL: dict[str, Any] = {
    "residual_channels": 8,
    "dilation_channels": 8,
    "skip_channels": 16,
    "layers_per_stack": 3,
    "stacks": 2,
}  # dilations 1, 2, 4, 1, 2, 4: sum 14


def small(seed: int = 0, **changes: Any) -> WaveNet:
    torch.manual_seed(seed)
    return WaveNet(**{**SMALL, **changes}).double()


def codes(
    batch: int, length: int, seed: int = 0, condition: list[int] | None = None
) -> torch.Tensor:
    x = torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(seed))
    return x if condition is None else torch.cat([torch.tensor(condition)[:, None], x], 1)


# -- mu-law --------------------------------------------------------------------------------


def numpy_mu_law(x: np.ndarray, mu: int) -> tuple[np.ndarray, np.ndarray]:
    """The companding formula written out: codes, and the levels they decode to."""
    f = np.sign(x) * np.log(1 + mu * np.abs(x)) / np.log(1 + mu)
    code = np.floor((f + 1) / 2 * mu + 0.5).astype(np.int64)
    g = 2 * code / mu - 1
    return code, np.sign(g) * ((1 + mu) ** np.abs(g) - 1) / mu


@pytest.mark.parametrize("mu", [255, 15])
def test_mu_law_matches_the_formula_in_numpy(mu: int) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, 20_000)
    x[:5] = [-1.0, -0.5, 0.0, 0.5, 1.0]
    code, level = numpy_mu_law(x, mu)
    got = mu_law_encode(torch.from_numpy(x), mu)
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), code)
    decoded = mu_law_decode(got, mu)
    assert decoded.dtype == torch.get_default_dtype()
    np.testing.assert_allclose(decoded.numpy(), level, rtol=1e-6, atol=1e-7)
    assert code.min() == 0 and code.max() == mu  # -1 and 1 are the end codes


def test_silence_is_the_middle_code_and_the_ends_are_clipped() -> None:
    assert mu_law_encode(torch.zeros(3)).tolist() == [128, 128, 128]
    # The middle level sits at f = 1/255: x = (256^(1/255) - 1) / 255, not at 0.
    level = (256 ** (1 / 255) - 1) / 255
    assert mu_law_decode(torch.tensor([128])).item() == pytest.approx(level, rel=1e-6)
    assert mu_law_encode(torch.tensor([-3.0, -1.0, 1.0, 7.0])).tolist() == [0, 0, 255, 255]
    assert mu_law_decode(torch.tensor([0, 255])).tolist() == [-1.0, 1.0]


@pytest.mark.parametrize("mu", [255, 15])
def test_mu_law_round_trip_error_is_within_the_derived_bound(mu: int) -> None:
    """The code is f = sign(x) ln(1 + mu|x|) / ln(1 + mu) rounded to a grid of step 2/mu,
    so |f - f^| <= 1/mu. Decoding is g(f) = sign(f) ((1 + mu)^|f| - 1) / mu with
    g'(f) = ln(1 + mu) (1 + mu)^|f| / mu, largest at the far end of the half step; with
    (1 + mu)^|f| = 1 + mu|x|: |x - x^| <= ln(1 + mu) (1 + mu)^(1/mu) (1 + mu|x|) / mu^2."""
    x = torch.linspace(-1, 1, 400_001, dtype=torch.float64)
    error = (mu_law_decode(mu_law_encode(x, mu), mu).double() - x).abs()
    bound = math.log1p(mu) * (1 + mu) ** (1 / mu) * (1 + mu * x.abs()) / mu**2
    assert bool((error <= bound + 1e-6).all())  # 1e-6: decode runs in float32
    assert float((error / bound).max()) > 0.9  # and the bound is close to what is reached
    # The two ends: 8.7e-5 near silence, 2.2e-2 at full scale for mu = 255.
    if mu == 255:
        assert float(error[x.abs() < 1e-6].max()) < 8.8e-5
        assert float(error.max()) < 0.0223


def test_mu_law_errors() -> None:
    with pytest.raises(ConfigError, match=r"expected float samples"):
        mu_law_encode(torch.tensor([1, 2]))
    with pytest.raises(ConfigError, match=r"codes in \[0, 255\], received values in \[0, 256\]"):
        mu_law_decode(torch.tensor([0, 256]))
    with pytest.raises(ConfigError, match=r"integer codes, received torch.float32"):
        mu_law_decode(torch.tensor([0.5]))
    with pytest.raises(ConfigError, match=r"mu >= 1, received mu=0"):
        mu_law_encode(torch.zeros(1), mu=0)


# -- the network ---------------------------------------------------------------------------


def test_registered_as_a_generation_model() -> None:
    info = model_info("wavenet")
    assert (info.task, info.input_shape, info.test_input_shape) == ("generate", (4096,), (256,))
    assert "wavenet" in list_models(task="generate")
    assert "wavenet" not in list_models(task="classify")
    # build_model passes in_channels = input_shape[0]; codes have no channels to size.
    model = create_model("wavenet", in_channels=256)
    assert isinstance(model, WaveNet) and model.input_dtype == torch.int64
    out = model(torch.zeros(2, *info.test_input_shape or (), dtype=torch.int64))
    assert out.shape == (2, 256, 256)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, 1 * (1 + 2 * (1 + 2 + 4)) + 1),
        ({"kernel_size": 3}, 2 * (1 + 2 * (1 + 2 + 4)) + 1),
        ({"kernel_size": 4, "stacks": 1, "layers_per_stack": 4}, 3 * (1 + 1 + 2 + 4 + 8) + 1),
    ],
)
def test_receptive_field_is_the_formula_and_the_measured_extent(
    changes: dict[str, int], expected: int
) -> None:
    model = small(**changes)
    assert model.receptive_field == expected
    length = expected + 12
    for t in (3, length - 1):  # near the start (the padding) and with the full field
        reached = embedded_gradient(model, codes(1, length), t)
        assert reached.nonzero().flatten().tolist() == list(range(max(0, t - expected + 1), t + 1))


def test_paper_sized_receptive_field() -> None:
    # 2 stacks of dilations 1 .. 512 with kernel 2, plus the first causal conv: 2048 codes.
    assert WaveNet().receptive_field == (2 * 1023 + 1) + 1


def embedded_gradient(model: WaveNet, x: torch.Tensor, t: int) -> torch.Tensor:
    """|d out[0, :, t] / d embedding output| summed over channels, per position (L,)."""
    kept: list[torch.Tensor] = []

    def keep(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        output.retain_grad()
        kept.append(output)

    handle = model.embedding.register_forward_hook(keep)
    try:
        model(x)[0, :, t].sum().backward()
    finally:
        handle.remove()
    grad = kept[0].grad
    assert grad is not None
    return grad[0].abs().sum(-1) != 0  # embedding output is (B, L, R)


@pytest.mark.parametrize("num_conditions", [0, 3])
def test_output_at_t_has_zero_gradient_from_codes_after_t(num_conditions: int) -> None:
    model = small(num_conditions=num_conditions)
    condition = [2] if num_conditions else None
    for t in range(0, 20, 3):
        reached = embedded_gradient(model, codes(1, 20, condition=condition), t)
        assert reached[t] and not reached[t + 1 :].any()


def test_shapes_with_and_without_conditioning() -> None:
    assert small()(codes(3, 10)).shape == (3, 256, 10)
    model = small(num_conditions=4, num_classes=16)
    x = codes(2, 10, condition=[0, 3]) % 16  # (2, 11)
    assert model(x).shape == (2, 16, 10)  # column 0 is the condition, not a time step


def test_the_condition_changes_every_position_and_only_through_column_0() -> None:
    model = small(num_conditions=3)
    x = codes(1, 12)
    out = [model(torch.cat([torch.tensor([[c]]), x], 1)) for c in range(3)]
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        assert ((out[a] - out[b]).abs().amax(1) > 1e-6).all()
    torch.testing.assert_close(model(torch.cat([torch.tensor([[1]]), x], 1)), out[1])


def test_input_errors_name_what_was_received() -> None:
    model = small(num_conditions=3)
    with pytest.raises(ShapeMismatchError, match=r"int64 codes \(B, 1 \+ L\), received dtype=torch.float32 shape=\(2, 5\)"):  # fmt: skip
        model(torch.zeros(2, 5))
    with pytest.raises(ShapeMismatchError, match=r"received dtype=torch.int64 shape=\(2, 1, 5\)"):
        model(torch.zeros(2, 1, 5, dtype=torch.int64))
    with pytest.raises(ShapeMismatchError, match=r"L >= 1, received \(2, 1\)"):
        model(torch.zeros(2, 1, dtype=torch.int64))
    with pytest.raises(ConfigError, match=r"condition ids \(column 0\) in \[0, 3\), received values in \[0, 3\]"):  # fmt: skip
        model(codes(2, 5, condition=[0, 3]))
    with pytest.raises(ConfigError, match=r"codes in \[0, 256\), received values in \[-1, 0\]"):
        small()(torch.tensor([[0, -1]]))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"residual_channels": 0}, "residual_channels >= 1, received residual_channels=0"),
        ({"stacks": 0}, "stacks >= 1, received stacks=0"),
        ({"num_conditions": -1}, "num_conditions >= 0, received num_conditions=-1"),
        ({"num_classes": 0}, "num_classes >= 1, received num_classes=0"),
    ],
)
def test_config_errors(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WaveNet(**changes)


# -- generation ----------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("num_conditions", [0, 3])
def test_the_stream_gives_the_forward_logits_step_by_step(
    kernel_size: int, num_conditions: int
) -> None:
    torch.manual_seed(4)
    model = WaveNet(**SMALL, kernel_size=kernel_size, num_conditions=num_conditions)  # float32
    condition = [1, 2] if num_conditions else None
    x = codes(2, 70, seed=5, condition=condition)
    with torch.no_grad():
        whole = model(x)
        stream = model.stream(torch.tensor(condition) if condition else None, batch=2)
        first, rest = stream(x[:, -70:-30]), stream(x[:, -30:])  # state carries over
    torch.testing.assert_close(torch.cat([first, rest], -1), whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("num_conditions", [0, 3])
def test_fast_and_naive_generation_draw_identical_codes(
    kernel_size: int, num_conditions: int
) -> None:
    # float64: the two ways round differently, and in float32 a difference of 1e-7 in a
    # probability could, rarely, move a draw across a boundary; in float64 it cannot here.
    model = small(kernel_size=kernel_size, num_conditions=num_conditions)
    n = model.receptive_field + 9  # past the point where the naive way crops its window
    condition = torch.tensor([0, 2]) if num_conditions else None
    drawn = [
        model.generate(
            n, batch=2, condition=condition, fast=fast, generator=torch.Generator().manual_seed(7)
        )
        for fast in (True, False)
    ]
    assert drawn[0].shape == (2, n) and drawn[0].dtype == torch.int64
    assert torch.equal(drawn[0], drawn[1])
    assert not torch.equal(drawn[0][0], drawn[0][1])  # the batch draws independently


def test_prime_is_continued_identically_both_ways() -> None:
    model = small(num_conditions=2)
    prime = codes(1, 30, seed=9)[0]
    drawn = [
        model.generate(20, condition=1, fast=fast, prime=prime, batch=2,
                       generator=torch.Generator().manual_seed(1))
        for fast in (True, False)
    ]  # fmt: skip
    assert torch.equal(drawn[0], drawn[1])


def test_low_temperature_draws_the_most_likely_code() -> None:
    model = small()
    drawn = model.generate(25, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    seen = torch.cat([torch.tensor([[128]]), drawn[:, :-1]], 1)  # the silence code starts it
    with torch.no_grad():
        greedy = model(seen).argmax(1)
    assert torch.equal(drawn, greedy)


def test_generation_is_reproducible_and_restores_the_mode() -> None:
    model = small().train()
    a = model.generate(30, generator=torch.Generator().manual_seed(3))
    b = model.generate(30, generator=torch.Generator().manual_seed(3))
    c = model.generate(30, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training


def test_generation_errors() -> None:
    plain, conditioned = small(), small(num_conditions=3)
    with pytest.raises(ConfigError, match=r"unconditioned .* received condition=1"):
        plain.generate(3, condition=1)
    with pytest.raises(ConfigError, match=r"expected condition=<id in \[0, 3\)>, received None"):
        conditioned.generate(3)
    with pytest.raises(
        ConfigError, match=r"condition ids in \[0, 3\), received values in \[5, 5\]"
    ):
        conditioned.generate(3, condition=5)
    with pytest.raises(ShapeMismatchError, match=r"one condition or 2 .* received 3"):
        conditioned.generate(3, condition=torch.tensor([0, 1, 2]), batch=2)
    with pytest.raises(ShapeMismatchError, match=r"prime int64 codes .* dtype=torch.float32"):
        plain.generate(3, prime=torch.zeros(4))
    with pytest.raises(ConfigError, match=r"temperature > 0, received num_samples=3 temperature=0"):
        plain.generate(3, temperature=0)
    with pytest.raises(ConfigError, match=r"batch >= 1, received batch=0"):
        plain.generate(3, batch=0)


def test_generation_speed_reports_both_ways() -> None:
    timed = generation_speed(small(num_conditions=2), num_samples=5)
    assert timed["fast_seconds"] > 0 and timed["naive_seconds"] > 0
    assert timed["speedup"] == pytest.approx(timed["naive_seconds"] / timed["fast_seconds"])
