"""The served model: one loaded run, what its page and API show, as JSON-ready values.

Everything here runs on the model's own thread (cnnlab.app.serve_batch), one call at a
time: views register hooks on the model, and a concurrent forward pass would fire them.
"""

from __future__ import annotations

import base64
import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from cnnlab.core.errors import CheckpointError, ConfigError
from cnnlab.core.records import require_record
from cnnlab.core.rundir import RunDir
from cnnlab.engine.predictor import probabilities, task_of
from cnnlab.inspect.attribution import grad_cam
from cnnlab.inspect.receptive import conv_arithmetic, receptive_field
from cnnlab.inspect.summary import summary
from cnnlab.inspect.visualize import feature_maps
from cnnlab.models.ensemble import Ensemble
from cnnlab.models.saved import load, preprocess

MAX_SAMPLES = 48  # test images offered on the page
DIGITS = 4  # decimals of the numbers sent to the page


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(array)).decode()


def rounded(t: torch.Tensor) -> Any:
    return np.round(t.detach().double().numpy(), DIGITS).tolist()


class ServedModel:
    """A saved model folder loaded once: predictions, its architecture and its views."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.model = load(run_dir).eval()
        self.record = require_record(self.model)
        if not self.record.input_shape or not self.record.classes:
            raise CheckpointError(f"{run_dir}: config.json lacks input_shape or classes")
        if self.record.preprocess:
            raise ConfigError(
                f"{run_dir} takes {self.record.preprocess.get('kind', 'prepared')} inputs "
                "(text, WAV or recordings); the page serves image models"
            )
        self.input_shape = tuple(int(v) for v in self.record.input_shape)
        self.classes = list(self.record.classes)
        self.task = task_of(self.model)
        # Views of one layer need one network: an ensemble shows its member 0.
        self.network: nn.Module = (
            self.model.members[0] if isinstance(self.model, Ensemble) else self.model
        )
        self.rows = summary(self.network, self.input_shape)
        self._samples: tuple[torch.Tensor, list[int]] | None = None

    # -- predictions --------------------------------------------------------------------

    def predict(
        self, items: list[tuple[torch.Tensor, tuple[int, int]]], top_k: int = 5
    ) -> list[dict[str, Any]]:
        """uint8 images (C, H, W) with their files' (H, W) -> one JSON result each."""
        batch = torch.stack([image for image, _ in items])
        scores = probabilities(self.model, batch, batch_size=len(batch))
        return [
            self.describe(image, s, size, top_k)
            for (image, size), s in zip(items, scores, strict=True)
        ]

    def describe(
        self, image: torch.Tensor, scores: torch.Tensor, size: tuple[int, int], top_k: int
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task.name}
        if self.task.name in ("classify", "multilabel"):
            k = min(top_k, len(self.classes))
            values, indices = scores.topk(k)
            out["top"] = [
                {"class": self.classes[i], "index": i, "probability": round(float(v), DIGITS)}
                for v, i in zip(values.tolist(), indices.tolist(), strict=True)
            ]
            out["probabilities"] = rounded(scores)
        if self.task.name != "classify":
            out["lines"] = [list(line) for line in self.task.summarise(scores, self.classes, size)]
            pictures = self.task.pictures(image, scores, self.classes, size)
            out["pictures"] = {name: png_data_uri(p) for name, p in pictures.items()}
        if self.task.name == "detect":
            out["detections"] = self.task.records(scores, size, 1)
        return out

    # -- the architecture ---------------------------------------------------------------

    def describe_model(self) -> dict[str, Any]:
        modules = dict(self.network.named_modules())
        layers = []
        for row in self.rows:
            module = modules.get(row.name)
            layer: dict[str, Any] = {
                "name": row.name, "kind": row.kind, "output_shape": list(row.output_shape),
                "params": row.params, "rf": row.rf, "jump": row.jump,
                "maps": len(row.output_shape) == 3,
            }  # fmt: skip
            if isinstance(module, nn.Conv2d):
                layer |= {"kernel": list(module.kernel_size), "stride": list(module.stride),
                          "filters": True, "arithmetic": module.groups == 1}  # fmt: skip
            layers.append(layer)
        return {
            "run_dir": str(self.run_dir),
            "record": self.record.to_dict(),
            "task": self.task.name,
            "classes": self.classes,
            "input_shape": list(self.input_shape),
            "ensemble": len(self.model.members) if isinstance(self.model, Ensemble) else 0,
            "grad_cam": self.task.name in ("classify", "multilabel"),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "layers": layers,
        }

    # -- views of one input -------------------------------------------------------------

    def _input(self, image: torch.Tensor) -> torch.Tensor:
        return preprocess(image[None], self.record)

    def _check_layer(self, layer: str) -> None:
        if layer not in {row.name for row in self.rows}:
            raise ConfigError(f"Expected a layer name from GET /model, received {layer!r}")

    def feature_maps(self, image: torch.Tensor, layer: str) -> dict[str, Any]:
        self._check_layer(layer)
        maps = feature_maps(self.network, self._input(image), layer)[layer][0].float()
        if maps.dim() != 3:
            raise ConfigError(f"layer {layer!r} outputs {tuple(maps.shape)}, not feature maps")
        flat = maps.flatten(1)
        return {"layer": layer, "shape": list(maps.shape), "maps": rounded(maps),
                "min": rounded(flat.min(1).values), "max": rounded(flat.max(1).values)}  # fmt: skip

    def filters(self, layer: str) -> dict[str, Any]:
        self._check_layer(layer)
        conv = dict(self.network.named_modules())[layer]
        if not isinstance(conv, nn.Conv2d):
            raise ConfigError(f"layer {layer!r} is a {type(conv).__name__}; filters are a Conv2d's")
        return {"layer": layer, "shape": list(conv.weight.shape), "weights": rounded(conv.weight)}

    def grad_cam(self, image: torch.Tensor, cls: int | None, layer: str | None) -> dict[str, Any]:
        if self.task.name not in ("classify", "multilabel"):
            raise ConfigError(f"Grad-CAM explains a class score; a {self.task.name} model has none")
        if layer is not None:
            self._check_layer(layer)
        if cls is not None and not 0 <= cls < len(self.classes):
            raise ConfigError(f"Expected a class index in [0, {len(self.classes)}), received {cls}")
        target = None if cls is None else torch.tensor([cls])
        model = self.model if layer is None else self.network
        heat = grad_cam(model, self._input(image), target, layer=layer)[0]
        return {"class": cls, "layer": layer, "heatmap": rounded(heat)}

    def receptive_field(
        self, image: torch.Tensor, layer: str, y: int, x: int, channel: int | None
    ) -> dict[str, Any]:
        self._check_layer(layer)
        out = receptive_field(self.network, self._input(image), layer, (y, x), channel)
        row = next(r for r in self.rows if r.name == layer)
        result: dict[str, Any] = {
            "layer": layer, "cell": [y, x], "box": out["box"], "size": out["size"],
            "effective": rounded(out["effective"]), "summary_rf": row.rf, "jump": row.jump,
        }  # fmt: skip
        conv = dict(self.network.named_modules())[layer]
        if isinstance(conv, nn.Conv2d) and conv.groups == 1 and not isinstance(conv.padding, str):
            c = 0 if channel is None else channel
            math = conv_arithmetic(self.network, self._input(image), layer, (y, x), c)
            result["arithmetic"] = {
                "channel": c, "patch": rounded(math["patch"]), "kernel": rounded(math["kernel"]),
                "bias": round(math["bias"], DIGITS), "sum": round(math["sum"], DIGITS),
                "output": round(math["output"], DIGITS),
            }  # fmt: skip
        return result

    # -- the run: test images and curves ------------------------------------------------

    def samples(self) -> tuple[torch.Tensor, list[int]]:
        """Up to MAX_SAMPLES test images of the run's dataset and their labels (classify)."""
        if self._samples is None:
            from cnnlab import data as datasets

            if not self.record.dataset:
                raise ConfigError("the run's record names no dataset")
            data = datasets.load(self.record.dataset, **(self.record.dataset_args or {}))
            step = max(1, len(data.x_test) // MAX_SAMPLES)
            index = torch.arange(0, len(data.x_test), step)[:MAX_SAMPLES]
            labels = data.targets_test.get("label")
            truth = [
                int(labels[i]) if labels is not None and labels.dim() == 1 else -1 for i in index
            ]
            self._samples = (data.x_test[index], truth)
        return self._samples

    def history(self) -> list[dict[str, str]]:
        """The rows of the run's history.csv (empty while none is written)."""
        path = RunDir.of(self.run_dir).history
        if not path.exists():
            return []
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
