"""Ensemble: the log of the members' mean probabilities, saved and loaded like a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.core.errors import CheckpointError, ConfigError
from cnnlab.core.io import write_json
from cnnlab.models import Ensemble, build_model, create_model


def _members(n: int = 3, num_classes: int = 5) -> list[nn.Module]:
    torch.manual_seed(0)
    return [
        create_model("resnet_mini", num_classes=num_classes, widths=[4, 8], blocks=[1, 1])
        for _ in range(n)
    ]


def test_output_is_the_log_of_the_mean_softmax() -> None:
    members = _members()
    ensemble = Ensemble(members).eval()
    x = torch.randn(6, 1, 12, 12)
    with torch.no_grad():
        out = ensemble(x).double().numpy()
        # NumPy oracle: softmax each member's logits, average, take the log.
        logits = [m(x).double().numpy() for m in members]
    probs = [np.exp(z - z.max(1, keepdims=True)) for z in logits]
    probs = [p / p.sum(1, keepdims=True) for p in probs]
    expected = np.log(np.mean(probs, axis=0))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(np.exp(out).sum(1), 1.0, atol=1e-5)  # already normalised


def test_one_member_is_that_member() -> None:
    (member,) = _members(1)
    ensemble = Ensemble([member]).eval()
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), member(x).log_softmax(1))


def test_every_member_gets_a_gradient() -> None:
    ensemble = Ensemble(_members(2))
    loss = nn.functional.cross_entropy(ensemble(torch.randn(4, 1, 12, 12)), torch.arange(4))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ensemble.parameters())


def test_bad_members_are_refused_with_what_was_received() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        Ensemble([])
    mixed = [_members(1, num_classes=5)[0], _members(1, num_classes=3)[0]]
    with pytest.raises(ConfigError, match=r"\[5, 3\]"):
        Ensemble(mixed)
    with pytest.raises(ConfigError, match="members"):
        build_model({"architecture": "ensemble", "model_args": {"members": []}})


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    ensemble = Ensemble(_members(2)).eval()
    cnnlab.save(ensemble, tmp_path / "ens", classes=list("abcde"), input_shape=(1, 12, 12))
    loaded = cnnlab.load(tmp_path / "ens")
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 2
    x = torch.randn(3, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ensemble(x))


def test_modules_without_a_config_predict_but_cannot_be_saved(tmp_path: Path) -> None:
    plain = Ensemble([nn.Sequential(nn.Flatten(), nn.Linear(144, 3))])
    assert plain(torch.randn(2, 1, 12, 12)).shape == (2, 3)
    with pytest.raises(ConfigError, match="create_model"):
        cnnlab.save(plain, tmp_path / "plain")


def test_a_damaged_ensemble_config_is_a_checkpoint_error(tmp_path: Path) -> None:
    ensemble = Ensemble(_members(2))
    folder = cnnlab.save(ensemble, tmp_path / "ens")
    write_json(folder / "config.json", {"architecture": "ensemble", "model_args": {}})
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        cnnlab.load(folder)


def test_grad_cam_of_an_ensemble_averages_its_members_maps() -> None:
    from cnnlab.inspect.attribution import grad_cam

    members = _members(2)
    ensemble = Ensemble(members).eval()
    x = torch.randn(3, 1, 12, 12)
    cam = grad_cam(ensemble, x)
    assert cam.shape == (3, 12, 12) and cam.min() >= 0 and cam.max() <= 1
    # Oracle: each member's map for the class the ensemble predicts, averaged, rescaled.
    with torch.no_grad():
        cls = ensemble(x).argmax(1)
    mean = torch.stack([grad_cam(m, x, cls) for m in members]).mean(0)
    low = mean.flatten(1).min(1).values[:, None, None]
    high = mean.flatten(1).max(1).values[:, None, None]
    torch.testing.assert_close(cam, (mean - low) / (high - low))
