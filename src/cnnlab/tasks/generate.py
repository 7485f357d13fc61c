"""Autoregressive generation (WaveNet): a distribution over the next code at every position,
trained with cross-entropy and scored in nats per sample (lower is better).

Data convention. Inputs are int64 codes (N, L), e.g. 8-bit mu-law audio
(cnnlab.data.mulaw.mu_law_encode); the ``waveform`` target (N, L) holds, for every
input position, the code that follows it. A dataset builds both from whole sequences
``codes`` (N, L + 1): ``x = codes[:, :-1]``, ``waveform = codes[:, 1:]``.

Conditioned datasets (``data.extra["conditioned"] == "yes"``) prepend one column to the
inputs, (N, 1 + L): column 0 is each sequence's condition id, and ``data.classes`` names
the conditions (e.g. the ten spoken digits), so the model is built with
``num_conditions = len(data.classes)``. The task's own class names are the codes
("0" .. "255"): they name the model's outputs; the condition names are kept in the saved
model's task_args (``conditions``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.core.errors import ConfigError
from cnnlab.tasks.base import Targets, Task, register_task

NUM_CODES = 256  # 8-bit mu-law, as in the WaveNet paper


class NextSampleMetrics:
    """Exact over any batching: summed NLL (float64) and integer counts over every
    predicted position. ``nll`` is nats per sample, ``bits_per_sample`` the same in bits,
    ``accuracy`` how often the most likely code is the true next one."""

    def __init__(self) -> None:
        self.nll_sum = 0.0
        self.correct = 0
        self.count = 0

    def update(self, outputs: Tensor, targets: Targets) -> None:
        logits = outputs.detach().double()  # (B, K, L)
        target = targets["waveform"].long()  # (B, L)
        self.nll_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        self.correct += int((logits.argmax(1) == target).sum())
        self.count += target.numel()

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        nll = self.nll_sum / n
        return {"nll": nll, "bits_per_sample": nll / math.log(2), "accuracy": self.correct / n}


@register_task
class Generate(Task):
    """Next-sample prediction: models map codes (B, L) to logits (B, num_classes, L).

    The headline metric ``nll`` is the test negative log-likelihood in nats per
    predicted sample: LOWER is better (uniform guessing over 256 codes scores
    ln 256 = 5.545).

    Options:
        num_classes: code levels (256).
        conditions: names of the condition ids, for a conditioned dataset (set from it).
        label_smoothing: the training loss' label smoothing; the test loss and the metrics
            have none. TrainConfig's default (0.1) is tuned for classification and raises
            the NLL a density model can reach: generation recipes should set 0.
    """

    name = "generate"
    targets = ("waveform",)
    metric = "nll"
    ensemble_combine = "softmax"
    model_task = "generate"

    def __init__(
        self,
        num_classes: int = NUM_CODES,
        conditions: list[str] | None = None,
        label_smoothing: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.num_classes, self.conditions = int(num_classes), conditions
        self.label_smoothing = float(label_smoothing)

    # -- data and model --------------------------------------------------------------------

    @staticmethod
    def conditioned(data: Any) -> bool:
        """Whether the inputs carry a condition id in column 0."""
        return bool(data.extra.get("conditioned") == "yes")

    def check_data(self, data: Any) -> None:
        super().check_data(data)
        extra = int(self.conditioned(data))
        for split, x, targets in (
            ("train", data.x_train, data.targets_train),
            ("test", data.x_test, data.targets_test),
        ):
            wave = targets["waveform"]
            where = f"dataset {data.name!r} ({split})"
            if wave.dtype != torch.int64 or wave.dim() != 2:
                raise ConfigError(
                    f"{where} field 'waveform': expected int64 next-sample codes (N, L), "
                    f"received dtype={wave.dtype} shape={tuple(wave.shape)}"
                )
            columns = "(N, 1 + L) (condition id, then codes)" if extra else "(N, L)"
            if x.dtype != torch.int64 or x.dim() != 2 or x.shape[1] != wave.shape[1] + extra:
                raise ConfigError(
                    f"{where} inputs: expected int64 codes {columns} with L = {wave.shape[1]} "
                    f"(the waveform's length), received dtype={x.dtype} shape={tuple(x.shape)}"
                )
            _check_range(where, "field 'waveform'", wave, self.num_classes)
            _check_range(where, "input codes", x[:, extra:], self.num_classes)
            if extra:
                _check_range(where, "condition ids (column 0)", x[:, 0], len(data.classes))

    def class_names(self, data: Any) -> list[str]:
        """The codes, "0" .. "255": what the model's outputs name."""
        return [str(code) for code in range(self.num_classes)]

    def model_args(self, data: Any) -> dict[str, Any]:
        args: dict[str, Any] = {"num_classes": self.num_classes}
        if self.conditioned(data):
            args["num_conditions"] = len(data.classes)
        return args

    def record_args(self, data: Any) -> dict[str, Any]:
        args: dict[str, Any] = {"num_classes": self.num_classes}
        if self.conditioned(data):
            args["conditions"] = list(data.classes)
        return args

    def expected_output(self, data: Any, batch: int) -> tuple[int, ...]:
        return (batch, self.num_classes, int(data.targets_train["waveform"].shape[1]))

    def output_hint(self, data: Any) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.model_args(data).items())
        return f"build a generation model (cnnlab models --task generate) with {args}"

    # -- training and evaluation -------------------------------------------------------------

    def loss(self, outputs: Tensor, targets: Targets) -> dict[str, Tensor]:
        """Cross-entropy over the code axis, the mean over every position of the batch."""
        ce = F.cross_entropy(
            outputs.float(), targets["waveform"].long(), label_smoothing=self.label_smoothing
        )
        return {"loss": ce}

    def metrics(self) -> NextSampleMetrics:
        return NextSampleMetrics()

    def eval_loss(self, outputs: Tensor, targets: Targets) -> Tensor:
        """Each sequence's mean NLL per sample, summed over the batch."""
        per = F.cross_entropy(outputs, targets["waveform"].long(), reduction="none")  # (B, L)
        return per.mean(1).sum()

    def scores(self, outputs: Tensor) -> Tensor:
        """The next code's probabilities at every position (N, num_classes, L)."""
        return outputs.softmax(1)

    def summarise(
        self, scores: Tensor, classes: list[str], size: tuple[int, int]
    ) -> list[tuple[str, str]]:
        """For one sequence's scores (K, L): the most likely code after its last sample
        and how sure the model is on average."""
        top, code = scores.max(0)  # (L,), (L,)
        return [
            ("next code", f"{classes[int(code[-1])]} (p = {float(top[-1]):.3f})"),
            ("mean top-1 probability", f"{float(top.mean()):.3f} over {scores.shape[1]} samples"),
        ]


def _check_range(where: str, what: str, values: Tensor, bound: int) -> None:
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= bound):
        raise ConfigError(
            f"{where} {what}: expected values in [0, {bound}), received values in "
            f"[{int(values.min())}, {int(values.max())}]"
        )
