"""Take a saved model out of Python: ONNX (through torch.onnx's dynamo exporter) or a
``torch.export`` program, with the preprocessing **inside the graph**.

The exported graph takes what ``cnnlab predict`` reads from image files, uint8 images
(N, C, H, W) at the model's input size, converts them to float, scales to [0, 1] and
normalises by the ModelRecord's per-channel mean and std, then runs the model: its output
is the model's raw output (logits for a classifier). Inputs that are not images (token
ids, signals) go in as the model takes them. The batch axis is dynamic. Beside the file,
``<file>.json`` records what a caller needs without cnnlab: the input's dtype and shape,
the output's meaning, the classes, the task and the normalisation that the graph already
applies (for reference only).

An ensemble exports as one graph: every member and the combination rule (soft average,
vote, weighted, stacked, sigmoid, mean), all in tensor ops; its output is what the
Ensemble's forward gives (log-probabilities for the classification rules). The box rules
(``wbf``, ``nms``) export the members' raw outputs side by side: fusing boxes is decoding.

Detection exports the raw per-prior outputs; decoding and NMS (cnnlab.tasks.detect) stay
in Python, because data-dependent output sizes do not export cleanly to ONNX opset
ops onnxruntime runs on the CPU; the JSON says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import CnnlabError, ConfigError
from cnnlab.core.io import write_json
from cnnlab.core.records import ModelRecord, record_of
from cnnlab.models.ensemble import ENSEMBLE

FORMATS = ("onnx", "torch-export")


class ExportParityError(CnnlabError):
    """An exported graph whose outputs differ from the PyTorch model's."""


SUFFIX = {"onnx": ".onnx", "torch-export": ".pt2"}


class WithPreprocessing(nn.Module):
    """``model`` behind the record's preprocessing: uint8 images in, raw outputs out."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], images: bool) -> None:
        super().__init__()
        self.model, self.images = model, images
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.images:
            x = (x.float() / 255.0 - self.mean) / self.std
        return self.model(x)


def example_input(record: ModelRecord, model: nn.Module, batch: int = 2) -> torch.Tensor:
    """A batch of the inputs the exported graph takes (random, fixed seed)."""
    if not record.input_shape:
        raise ConfigError("the model's record has no input_shape; cannot make an example input")
    shape = (batch, *record.input_shape)
    gen = torch.Generator().manual_seed(0)
    if getattr(model, "input_dtype", torch.float32) == torch.int64:
        vocab = int(getattr(model, "vocab_size", 2))
        return torch.randint(0, vocab, shape, generator=gen)
    if len(shape) == 4:
        return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
    return torch.randn(shape, generator=gen)


def wrap(model: nn.Module) -> tuple[WithPreprocessing, ModelRecord]:
    record = record_of(model)
    if record is None:
        raise ConfigError(
            "Expected a saved or trained cnnlab model (with a record), received a bare module"
        )
    images = (
        record.input_shape is not None and len(record.input_shape) == 3 and not record.preprocess
    )
    images = images and getattr(model, "input_dtype", torch.float32) != torch.int64
    channels = record.input_shape[0] if record.input_shape else 1
    mean = record.mean or [0.0] * channels
    std = record.std or [1.0] * channels
    return WithPreprocessing(model.eval(), mean, std, images).eval(), record


def export(
    model: nn.Module, path: str | os.PathLike[str], fmt: str = "onnx", batch: int = 2
) -> Path:
    """Export ``model`` (with its record) to ``path``; writes ``path`` + ``.json`` beside it.

    Raises:
        ConfigError: an unknown format or a model without a record.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"Expected format in {FORMATS}, received {fmt!r}")
    wrapped, record = wrap(model)
    x = example_input(record, model, batch)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial{target.suffix}")  # same suffix: .pt2
    dims = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
    with torch.no_grad():
        if fmt == "onnx":
            onnx_program = torch.onnx.export(
                wrapped, (x,), dynamo=True, dynamic_shapes=dims, input_names=["x"],
                output_names=["y"], verbose=False,
            )  # fmt: skip
            assert onnx_program is not None
            onnx_program.save(str(partial))
        else:
            program = torch.export.export(wrapped, (x,), dynamic_shapes=dims)
            torch.export.save(program, str(partial))
    os.replace(partial, target)  # a crash mid-export leaves no half-written file
    write_json(target.with_name(target.name + ".json"), describe(record, wrapped, x, fmt))
    return target


def describe(
    record: ModelRecord, wrapped: WithPreprocessing, x: torch.Tensor, fmt: str
) -> dict[str, Any]:
    output = {
        "classify": "logits (N, num_classes); softmax gives the class probabilities",
        "multilabel": "logits (N, num_classes); sigmoid gives each label's probability",
        "segment": "logits (N, num_classes, H, W); argmax over classes gives the mask",
        "detect": "raw per-prior outputs (N, P, 5 + K); decode and NMS with cnnlab (cnnlab.tasks.detect)",
        "keypoints": "keypoint outputs as the model gives them",
    }.get(record.task, "the model's raw output")
    ensemble = record.architecture == ENSEMBLE and isinstance(record.model_args, dict)
    if ensemble:
        combine = record.model_args.get("combine", "softmax")  # saved without a key: softmax
        side_by_side = (
            "the members' raw per-prior outputs side by side (N, M x P, 5 + K); decode and "
            "fuse with cnnlab (cnnlab.tasks.detect, {})"
        )
        output = {
            "softmax": "log of the members' mean class probabilities (N, num_classes)",
            "weighted": "log of the members' weighted mean class probabilities (N, num_classes)",
            "vote": "log of each class's share of the members' votes (N, num_classes)",
            "boosted": "log of each class's share of the members' SAMME-weighted votes (N, num_classes)",
            "stacked": "the meta-learner's log-probabilities (N, num_classes)",
            "sigmoid": "logit of the members' mean label probabilities (N, num_classes)",
            "mean": f"the mean of the members' outputs, each: {output}",
            "wbf": side_by_side.format("weighted box fusion"),
            "nms": side_by_side.format("NMS over every member's boxes"),
        }.get(combine, output)
    described = {
        "format": fmt,
        "input": {"name": "x", "dtype": str(x.dtype).replace("torch.", ""), "shape": ["batch", *x.shape[1:]]},
        "preprocessing": (
            "inside the graph: x / 255, minus mean, divided by std (per channel)"
            if wrapped.images else "none: the model's own inputs"
        ),
        "mean": record.mean, "std": record.std,
        "output": output, "task": record.task, "classes": record.classes,
        "architecture": record.architecture, "tta": "not applied (the graph is one forward pass)",
    }  # fmt: skip
    if ensemble:
        described["ensemble"] = {
            "combine": combine,
            "members": [m.get("architecture") for m in record.model_args.get("members", [])],
        }
    return described


def default_path(run_dir: str | os.PathLike[str], fmt: str, int8: bool = False) -> Path:
    """Where ``cnnlab export`` writes by default: RUN_DIR/model.onnx, model.int8.onnx, model.pt2."""
    return Path(run_dir) / (f"model{'.int8' if int8 else ''}{SUFFIX[fmt]}")


class OnnxRunner:
    """An exported ONNX file run by onnxruntime on the CPU: uint8 images in, raw outputs out."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ConfigError(
                f"the onnx backend needs onnxruntime ({e}); pip install 'cnnlab[export]'"
            ) from None
        if not Path(path).exists():
            raise ConfigError(
                f"{path} does not exist; write it with cnnlab export RUN_DIR --format onnx"
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"x": x.numpy()})[0])


PARITY_TOLERANCE = 1e-4  # of the output's scale: max |a - b| / max(1, max |b|)


def check_parity(model: nn.Module, path: str | os.PathLike[str], fmt: str) -> float:
    """The exported file's outputs against PyTorch's at batch 1 and batch 3, as the
    largest difference relative to the outputs' scale.

    Raises:
        ExportParityError: beyond PARITY_TOLERANCE (the file is removed: nothing wrong kept).
    """
    wrapped, record = wrap(model)
    if fmt == "onnx":
        run: Any = OnnxRunner(path)
    else:
        run = torch.export.load(str(path)).module()
    worst = 0.0
    for batch in (1, 3):
        x = example_input(record, model, batch)
        with torch.no_grad():
            want = wrapped(x).float()
            got = run(x).float()
        scale = max(1.0, float(want.abs().max()))
        worst = max(worst, float((got - want).abs().max()) / scale)
    if not worst <= PARITY_TOLERANCE:
        Path(path).unlink(missing_ok=True)
        raise ExportParityError(
            f"{path}: outputs differ from PyTorch's by {worst:.2e} of their scale "
            f"(tolerance {PARITY_TOLERANCE:g}); the file was removed"
        )
    return worst


def calibration_images(model: nn.Module, n: int) -> torch.Tensor:
    """``n`` training images of the run's dataset (evenly spaced), for int8 calibration."""
    from cnnlab import data as datasets

    record = record_of(model)
    if record is None or not record.dataset:
        raise ConfigError("int8 calibration needs the run's dataset; the record names none")
    data = datasets.load(record.dataset, **(record.dataset_args or {}))
    step = max(1, len(data.x_train) // n)
    return data.x_train[::step][:n]


def quantize_int8(
    model: nn.Module,
    fp32: str | os.PathLike[str],
    path: str | os.PathLike[str],
    n: int = 512,
    images: torch.Tensor | None = None,
) -> Path:
    """Static int8 quantisation of an exported ONNX file (QDQ, per-channel int8 weights,
    uint8 activations, MinMax calibration on ``images`` or ``n`` of the run's training
    images) with onnxruntime's quantisation tools."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = list((images if images is not None else calibration_images(model, n)).split(64))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.left, None)
            return None if batch is None else {"x": batch.numpy()}

    target = Path(path)
    prepared = target.with_name(f".{target.stem}.prepared.onnx")
    partial = target.with_name(f".{target.stem}.partial.onnx")
    try:
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(partial), Reader(), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
        )  # fmt: skip
        os.replace(partial, target)
    finally:
        prepared.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return target
