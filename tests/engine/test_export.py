"""Export: every registered model to ONNX (onnxruntime's outputs equal PyTorch's at batch
1 and batch 3) and through torch.export's save/load round trip; the CLI, int8 and the
onnx backend of predict."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime", reason="export tests need onnxruntime (make install)")
pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript (make install)")

from cnnlab.app.cli import main as cli
from cnnlab.core.errors import ConfigError
from cnnlab.core.records import record_of
from cnnlab.engine.export import (
    PARITY_TOLERANCE,
    ExportParityError,
    check_parity,
    export,
)
from cnnlab.engine.predictor import predict_files
from cnnlab.models import create_model, list_models
from cnnlab.models.registry import model_info

# Exports that take 6 s or more each here (dynamo tracing of deep graphs): run by
# `make export-zoo` (CI runs it after make test), skipped by a plain make test.
SLOW = {
    "alexnet", "densenet121", "densenet169", "densenet201", "densenet_bc_100_12",
    "efficientnet_b0", "fcos_resnet50_fpn", "inception_v3", "resnet101", "resnet110",
    "resnet152", "resnet50", "seresnet50", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
    "vgg19", "vgg19_bn", "xception", "wrn28_10", "resnet56",
}  # fmt: skip


def small(name: str) -> torch.nn.Module:
    info = model_info(name)
    shape = info.test_input_shape or info.input_shape
    channels = {"in_channels": shape[0]} if len(shape) > 1 and info.task != "generate" else {}
    torch.manual_seed(0)
    model = create_model(name, **channels).eval()
    record_of(model).input_shape = list(shape)  # type: ignore[union-attr]
    return model


ZOO = os.environ.get("CNNLAB_EXPORT_ZOO") == "1"
zoo = [pytest.mark.zoo_export, pytest.mark.skipif(not ZOO, reason="make export-zoo runs it")]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=zoo) if n in SLOW else n for n in list_models()]
)
def test_every_model_exports_with_parity(name: str, tmp_path: Path) -> None:
    model = small(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx = export(model, tmp_path / "m.onnx")
        assert check_parity(model, onnx, "onnx") <= PARITY_TOLERANCE  # batch 1 and batch 3
        program = export(model, tmp_path / "m.pt2", "torch-export")
        assert check_parity(model, program, "torch-export") <= PARITY_TOLERANCE
    described = json.loads((tmp_path / "m.onnx.json").read_text())
    assert described["input"]["shape"][0] == "batch" and described["task"] == model_info(name).task
    assert not list(tmp_path.glob(".*partial*"))  # nothing half-written left behind


def test_parity_failure_removes_the_file(tmp_path: Path) -> None:
    model = small("lenet5")
    path = export(model, tmp_path / "m.onnx")
    with torch.no_grad():
        list(model.parameters())[-1].add_(1.0)  # the last bias: the file no longer matches
    with pytest.raises(ExportParityError, match="differ from PyTorch"):
        check_parity(model, path, "onnx")
    assert not path.exists()
    with pytest.raises(ConfigError, match="format"):
        export(model, tmp_path / "m.bin", "tflite")
    with pytest.raises(ConfigError, match="record"):
        export(torch.nn.Linear(2, 2), tmp_path / "x.onnx")


def test_cli_export_int8_and_predict_with_the_onnx_backend(
    served_run: Path, tmp_path: Path
) -> None:
    assert cli(["export", str(served_run), "--int8", "--calibration", "128"]) == 0
    assert (served_run / "model.onnx").exists() and (served_run / "model.int8.onnx").exists()
    assert cli(["export", str(served_run), "--format", "torch-export"]) == 0
    image = tmp_path / "x.png"
    from PIL import Image

    from cnnlab import data as datasets

    Image.fromarray(datasets.load("mnist-5k").x_test[0, 0].numpy()).save(image)
    torch_top = predict_files(served_run, [str(image)])[0].top  # the run has no TTA
    onnx_top = predict_files(served_run, [str(image)], backend="onnx")[0].top
    assert [c for c, _ in onnx_top] == [c for c, _ in torch_top]
    assert [p for _, p in onnx_top] == pytest.approx([p for _, p in torch_top], abs=1e-5)


@pytest.mark.parametrize("rule", ["softmax", "vote", "weighted", "stacked", "sigmoid"])
def test_an_ensemble_exports_as_one_graph(rule: str, tmp_path: Path) -> None:
    """Every member and the rule in one file: the graph equals the Ensemble, not a member,
    and a saved ensemble folder exports from the CLI."""
    import onnxruntime

    from cnnlab.models.ensemble import Ensemble
    from cnnlab.models.saved import save

    members = [small("lenet5") for _ in range(2)]
    with torch.no_grad():
        members[1].apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    ensemble = Ensemble(members, combine=rule).eval()
    gen = torch.Generator().manual_seed(1)
    if rule == "weighted":
        ensemble.weights.copy_(torch.tensor([0.2, 0.8]))
    if rule == "stacked":
        ensemble.stack_coef.normal_(generator=gen)
        ensemble.stack_bias.normal_(generator=gen)
    folder = save(ensemble, tmp_path / "ens")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli(["export", str(folder)]) == 0
    described = json.loads((folder / "model.onnx.json").read_text())
    assert described["ensemble"] == {"combine": rule, "members": ["lenet5", "lenet5"]}
    x = torch.randint(0, 256, (4, 1, 32, 32), generator=gen, dtype=torch.uint8)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    from cnnlab.engine.export import wrap

    with torch.no_grad():
        want = wrap(ensemble)[0](x)
        member = wrap(members[0])[0](x).log_softmax(1)
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, member, atol=1e-2)  # the rule, not the first member


def test_a_box_fusing_detector_ensemble_exports_its_members_side_by_side(tmp_path: Path) -> None:
    from cnnlab.models.ensemble import Ensemble

    members = [small("fcos") for _ in range(2)]
    ensemble = Ensemble(members, combine="wbf").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export(ensemble, tmp_path / "m.onnx")
        assert check_parity(ensemble, path, "onnx") <= PARITY_TOLERANCE
    described = json.loads((tmp_path / "m.onnx.json").read_text())
    assert "side by side" in described["output"] and described["ensemble"]["combine"] == "wbf"
