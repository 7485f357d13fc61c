"""Kim's (2014) sentence CNN: counts, a NumPy oracle, the four modes, max-norm, training."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.core.records import record_of
from cnnlab.models.kim_cnn import KimCNN
from cnnlab.models.registry import create_model, model_info


def n_params(model: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def small(**kwargs: Any) -> KimCNN:
    torch.manual_seed(0)
    args: dict[str, Any] = {"vocab_size": 30, "embed_dim": 6, "num_filters": 4}
    return KimCNN(**{**args, **kwargs})


def convs(model: KimCNN) -> list[nn.Conv1d]:
    return [c for c in model.features.convs if isinstance(c, nn.Conv1d)]


def ids(batch: int, length: int, vocab_size: int = 30, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, vocab_size, (batch, length), generator=g)


def test_parameter_counts_by_hand() -> None:
    v = 1000
    # Embedding V*300; conv of width w: 300*w*100 weights + 100 biases; linear 300*2 + 2.
    convs = sum(300 * w * 100 + 100 for w in (3, 4, 5))
    assert convs == 360_300
    rand = KimCNN(vocab_size=v)
    assert n_params(rand) == n_params(rand, trainable=True) == v * 300 + convs + 602
    static = KimCNN(vocab_size=v, mode="static")
    assert n_params(static, trainable=True) == convs + 602
    multi = KimCNN(vocab_size=v, mode="multichannel")
    assert n_params(multi) == 2 * v * 300 + convs + 602  # the conv is shared by both channels
    assert n_params(multi, trainable=True) == v * 300 + convs + 602


def test_shapes_and_the_body_head_split() -> None:
    model = small().eval()
    x = ids(3, 9)
    features = model.forward_features(x)
    assert features.shape == (3, 3 * 4)
    assert model(x).shape == (3, 2)
    assert torch.equal(model.forward_head(features), model(x))
    maps = model.feature_maps(x)
    assert [tuple(m.shape) for m in maps] == [(3, 4, 9 - w + 1) for w in (3, 4, 5)]
    # Max over time of each map is the pooled feature vector.
    assert torch.equal(torch.cat([m.amax(2) for m in maps], 1), features)


def _numpy_forward(model: KimCNN, x: np.ndarray) -> np.ndarray:
    """Eq. (1)-(4) of Kim's paper, one window and one channel at a time, in float64."""
    tables = [model.features.embedding, model.features.static_embedding]
    channels = [t.weight.detach().double().numpy()[x] for t in tables if t is not None]
    pooled = []
    for conv in convs(model):
        w = conv.weight.detach().double().numpy()  # (F, D, width)
        assert conv.bias is not None
        b = conv.bias.detach().double().numpy()
        width = w.shape[2]
        # c_i = ReLU(sum over channels of w . x_{i:i+w-1} + b), Kim's multichannel rule
        c = np.stack(
            [
                sum(np.einsum("bld,fdl->bf", e[:, i : i + width], w) for e in channels) + b
                for i in range(x.shape[1] - width + 1)
            ],
            axis=2,
        )
        pooled.append(np.maximum(c, 0).max(axis=2))
    z = np.concatenate(pooled, axis=1)
    lin = model.classifier
    return z @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()


@pytest.mark.parametrize("mode", ["rand", "multichannel"])
def test_forward_matches_a_numpy_oracle(mode: str) -> None:
    model = small(mode=mode).eval()
    if mode == "multichannel":  # make the channels differ, as after some training
        with torch.no_grad():
            model.features.embedding.weight[2:] += 0.1
    x = ids(4, 11)
    expected = _numpy_forward(model, x.numpy())
    np.testing.assert_allclose(model(x).detach().double().numpy(), expected, atol=1e-5)


def _one_adam_step(model: KimCNN) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(ids(4, 8)), torch.tensor([0, 1, 0, 1]))
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize(
    ("mode", "trained_changes", "static_changes"),
    [("static", False, None), ("non-static", True, None), ("multichannel", True, False)],
)
def test_modes_freeze_what_kim_freezes(
    mode: str, trained_changes: bool, static_changes: bool | None
) -> None:
    model = small(mode=mode)
    vectors = torch.rand(30, 6)
    model.load_embeddings(vectors)
    features = model.features
    assert (features.static_embedding is not None) == (mode == "multichannel")
    before = features.embedding.weight.clone()
    conv_before = convs(model)[0].weight.clone()
    _one_adam_step(model)
    assert not torch.equal(convs(model)[0].weight, conv_before)
    assert (not torch.equal(features.embedding.weight, before)) == trained_changes
    if features.static_embedding is not None:
        assert torch.equal(features.static_embedding.weight[1:], vectors[1:])
        assert not features.static_embedding.weight.requires_grad
    assert not features.embedding.weight[0].any()  # <pad> stays zero


def test_load_embeddings_copies_and_checks_the_shape() -> None:
    model = small(mode="multichannel")
    vectors = torch.rand(30, 6) + 1
    model.load_embeddings(vectors)
    for table in (model.features.embedding, model.features.static_embedding):
        assert table is not None
        assert torch.equal(table.weight[1:], vectors[1:]) and not table.weight[0].any()
    with pytest.raises(ShapeMismatchError, match=r"\(30, 6\).*received \(30, 300\)"):
        model.load_embeddings(torch.rand(30, 300))


def test_rand_mode_starts_from_kims_uniform_init() -> None:
    weight = KimCNN(vocab_size=500).features.embedding.weight
    assert not weight[0].any()
    assert weight[1:].abs().max() <= 0.25
    assert weight[1:].var().item() == pytest.approx(0.25**2 / 3, rel=0.05)


def test_max_norm_clamps_big_rows_after_a_step_and_leaves_small_rows() -> None:
    model = small(num_classes=3, dropout=0.0)
    linear = model.classifier
    with torch.no_grad():
        linear.weight[2] = 0.01  # stays far below 3 even after the step below
    opt = torch.optim.SGD([linear.weight], lr=1.0)
    out = model(ids(2, 8))
    # A huge gradient on row 0 only.
    (out[:, 0].sum() * -1000.0).backward()
    assert linear.weight.grad is not None
    linear.weight.grad[1:] = 0
    opt.step()
    before = linear.weight.detach().clone()
    assert before[0].norm() > 3.0
    model(ids(2, 8))
    after = linear.weight.detach()
    assert after[0].norm().item() <= 3.0 + 1e-5
    assert after[0].norm().item() == pytest.approx(3.0, rel=1e-5)
    torch.testing.assert_close(after[0], before[0] * 3.0 / before[0].norm())  # direction kept
    assert torch.equal(after[1:], before[1:])  # rows within the norm untouched


def test_max_norm_none_leaves_the_weight() -> None:
    model = small(max_norm=None)
    with torch.no_grad():
        model.classifier.weight.fill_(5.0)
    model(ids(1, 6))
    assert (model.classifier.weight == 5.0).all()


def test_short_input_is_padded_on_the_right() -> None:
    model = small().eval()
    x = ids(2, 2)
    padded = torch.cat([x, torch.zeros(2, 3, dtype=torch.int64)], dim=1)  # widest filter: 5
    assert torch.equal(model(x), model(padded))
    assert [m.shape[2] for m in model.feature_maps(x)] == [3, 2, 1]
    assert model(torch.zeros(1, 0, dtype=torch.int64)).shape == (1, 2)


def test_dropout_only_in_training() -> None:
    model = small(dropout=0.5)
    x = ids(8, 10)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(1)
    first = model(x)
    torch.manual_seed(2)
    assert not torch.equal(first, model(x))


def test_a_known_word_decides_the_label_and_adam_learns_it() -> None:
    # Sentences of random words 4..29 with either "great" (id 2, label 1) or "awful"
    # (id 3, label 0) somewhere in them.
    g = torch.Generator().manual_seed(0)
    n, length = 64, 12
    x = torch.randint(4, 30, (n, length), generator=g)
    y = torch.arange(n) % 2
    x[torch.arange(n), torch.randint(0, length, (n,), generator=g)] = 3 - y
    model = small(embed_dim=16, num_filters=8, dropout=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    assert (model(x).argmax(1) == y).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "dynamic"}, "mode='dynamic'"),
        ({"in_channels": 3}, "in_channels=3.*multichannel"),
        ({"filter_sizes": ()}, r"filter_sizes=\(\)"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"max_norm": 0}, "max_norm=0"),
        ({"padding_idx": 30}, "padding_idx=30"),
        ({"num_filters": 0}, "num_filters=0"),
        ({"num_classes": 0}, "num_classes=0"),
    ],
)
def test_bad_arguments_say_what_was_received(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        small(**kwargs)


def test_bad_inputs_say_what_was_expected() -> None:
    model = small()
    with pytest.raises(ShapeMismatchError, match=r"\(B, L\).*float32.*\(2, 5\)"):
        model(torch.rand(2, 5))
    with pytest.raises(ShapeMismatchError, match=r"\(2, 1, 5\)"):
        model(ids(2, 5).unsqueeze(1))
    with pytest.raises(ConfigError, match=r"vocab_size=30.*received ids from 2 to 31"):
        model(torch.tensor([[2, 31]]))


def test_registered_and_built_from_json_arguments() -> None:
    info = model_info("kim_cnn")
    assert info.input_shape == (56,) and info.test_input_shape == (20,)
    assert (info.paper, info.year, info.task) == ("Kim 2014", 2014, "classify")
    model = create_model("kim_cnn", num_classes=2, vocab_size=50, mode="rand", num_filters=5)
    assert isinstance(model, KimCNN) and model.input_dtype is torch.int64
    record = record_of(model)
    assert record is not None and record.model_args["vocab_size"] == 50
    x = torch.randint(0, 50, (2, *info.test_input_shape))
    assert model(x).shape == (2, 2)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    rebuilt = KimCNN(**{**record.model_args, "filter_sizes": [3, 4, 5]})
    assert rebuilt.filter_sizes == (3, 4, 5)


def test_two_forwards_then_one_backward_when_no_row_is_clamped() -> None:
    # The in-place clamp runs only when a row exceeds max_norm, so a weight within the
    # bound keeps its autograd version and a second forward does not break the first.
    model = small()
    x = ids(2, 8)
    (model(x).sum() + model(x).sum()).backward()
    assert model.classifier.weight.grad is not None
