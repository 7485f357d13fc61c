"""The generate task: its loss and NLL against hand-written cross-entropy, exact
accumulation, data checks, and a WaveNet trained through cnnlab's one training loop."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cnnlab
from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.core.records import record_of
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.trainer import Trainer
from cnnlab.models.wavenet import WaveNet
from cnnlab.runs.run import build_model
from cnnlab.tasks import get_task
from cnnlab.tasks.generate import Generate

K = 256


def hand_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target] per position, written out: (B, L)."""
    log_z = logits.double().exp().sum(1).log()  # (B, L)
    return log_z - logits.double().gather(1, target[:, None])[:, 0]


def batch(n: int = 4, length: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, K, length, generator=g) * 3, torch.randint(0, K, (n, length), generator=g)


def test_registered_with_its_contract() -> None:
    task = get_task("generate")
    assert isinstance(task, Generate)
    assert (task.targets, task.metric, task.model_task) == (("waveform",), "nll", "generate")
    assert task.ensemble_combine == "softmax"


def test_loss_is_the_cross_entropy_by_hand() -> None:
    logits, target = batch()
    loss = get_task("generate").loss(logits, {"waveform": target})["loss"]
    assert float(loss) == pytest.approx(float(hand_nll(logits, target).mean()), rel=1e-6)
    smoothed = Generate(label_smoothing=0.1).loss(logits, {"waveform": target})["loss"]
    oracle = F.cross_entropy(logits, target, label_smoothing=0.1)
    assert float(smoothed) == pytest.approx(float(oracle), rel=1e-6)


def test_eval_loss_sums_each_sequences_mean() -> None:
    logits, target = batch(n=3)
    summed = get_task("generate").eval_loss(logits, {"waveform": target})
    assert float(summed) == pytest.approx(float(hand_nll(logits, target).mean(1).sum()), rel=1e-6)


def test_uniform_logits_score_ln_256_nats_and_8_bits() -> None:
    target = torch.randint(0, K, (3, 7))
    metrics = get_task("generate").metrics()
    metrics.update(torch.zeros(3, K, 7), {"waveform": target})
    result = metrics.compute()
    assert result["nll"] == pytest.approx(math.log(256), abs=1e-12)  # 5.545
    assert result["bits_per_sample"] == pytest.approx(8.0, abs=1e-12)


def test_metrics_accumulate_exactly_over_uneven_batches() -> None:
    logits, target = batch(n=7, length=5, seed=1)
    metrics = get_task("generate").metrics()
    for rows in (slice(0, 3), slice(3, 4), slice(4, 7)):
        metrics.update(logits[rows], {"waveform": target[rows]})
    result = metrics.compute()
    nll = hand_nll(logits, target)
    assert result["nll"] == pytest.approx(float(nll.mean()), rel=1e-12)
    assert result["bits_per_sample"] == pytest.approx(float(nll.mean()) / math.log(2), rel=1e-12)
    correct = sum(int(logits[i, :, t].argmax() == target[i, t]) for i in range(7) for t in range(5))
    assert result["accuracy"] == correct / 35
    assert get_task("generate").metrics().compute()["nll"] == 0.0  # empty: no division by 0


def test_scores_and_summary() -> None:
    logits, _ = batch(n=2, length=4)
    task = get_task("generate")
    scores = task.scores(logits)
    torch.testing.assert_close(scores.sum(1), torch.ones(2, 4))
    lines = dict(task.summarise(scores[0], task.class_names(None), (1, 4)))
    code = int(scores[0, :, -1].argmax())
    assert lines["next code"].startswith(f"{code} (p = ")


# -- data ------------------------------------------------------------------------------------


def staircase(
    n: int, length: int, seed: int, conditioned: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes climbing 96, 128, ... in 2 + c steps and starting over (c = the condition,
    0..2; 1 unconditioned), from a random phase: (inputs, next codes), the inputs with the
    condition column if asked. Only the condition tells what follows 128 or 160."""
    g = torch.Generator().manual_seed(seed)
    condition = torch.randint(0, 3, (n,), generator=g) if conditioned else torch.ones(n).long()
    phase = torch.randint(0, 12, (n, 1), generator=g)
    sequence = 96 + 32 * ((phase + torch.arange(length + 1)) % (2 + condition[:, None]))
    x, wave = sequence[:, :-1], sequence[:, 1:]
    return (torch.cat([condition[:, None], x], 1) if conditioned else x), wave


def dataset(conditioned: bool = True, n: int = 96, length: int = 24) -> ImageDataset:
    x_train, w_train = staircase(n, length, 0, conditioned)
    x_test, w_test = staircase(32, length, 1, conditioned)
    return ImageDataset(
        "staircase", x_train, None, x_test, None, ["two", "three", "four"],
        targets_train={"waveform": w_train}, targets_test={"waveform": w_test},
        task="generate", extra={"conditioned": "yes"} if conditioned else {},
    )  # fmt: skip


def test_model_args_and_outputs_follow_the_dataset() -> None:
    task = get_task("generate")
    conditioned, plain = dataset(), dataset(conditioned=False)
    task.check_data(conditioned)
    task.check_data(plain)
    assert task.model_args(conditioned) == {"num_classes": K, "num_conditions": 3}
    assert task.model_args(plain) == {"num_classes": K}
    assert task.record_args(conditioned)["conditions"] == ["two", "three", "four"]
    assert task.class_names(plain) == [str(c) for c in range(K)]
    assert task.expected_output(conditioned, 5) == (5, K, 24)
    with pytest.raises(ShapeMismatchError, match=r"outputs \(2, 256, 23\) .* needs \(2, 256, 24\); .*num_conditions=3"):  # fmt: skip
        task.check_outputs(torch.zeros(2, K, 23), conditioned)


def with_targets(data: ImageDataset, **changes: torch.Tensor) -> ImageDataset:
    x_train = changes.pop("x_train", data.x_train)
    x_test = changes.pop("x_test", data.x_test)
    return ImageDataset(
        data.name, x_train, None, x_test, None, data.classes,
        targets_train={**data.targets_train, **changes}, targets_test=data.targets_test,
        extra=data.extra,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"waveform": torch.zeros(96, 24)}, r"'waveform': expected int64 next-sample codes \(N, L\), received dtype=torch.float32"),
        ({"waveform": torch.zeros(96, 24, 1).long()}, r"received dtype=torch.int64 shape=\(96, 24, 1\)"),
        ({"waveform": torch.full((96, 24), 256)}, r"'waveform': expected values in \[0, 256\), received values in \[256, 256\]"),
        ({"waveform": torch.zeros(96, 23).long()}, r"inputs: expected int64 codes \(N, 1 \+ L\) .* L = 23 .* shape=\(96, 25\)"),
        ({"x_train": torch.zeros(96, 1, 25), "x_test": torch.zeros(32, 1, 25)}, r"inputs: expected int64 .* received dtype=torch.float32 shape=\(96, 1, 25\)"),
        ({"x_train": torch.full((96, 25), 2).long().index_fill(0, torch.tensor([5]), 3)}, r"condition ids \(column 0\): expected values in \[0, 3\), received values in \[2, 3\]"),
        ({"x_train": torch.cat([torch.zeros(96, 1), torch.full((96, 24), -2)], 1).long()}, r"input codes: expected values in \[0, 256\), received values in \[-2, -2\]"),
    ],
)  # fmt: skip
def test_bad_data_is_refused_naming_what_was_received(
    change: dict[str, torch.Tensor], message: str
) -> None:
    with pytest.raises(ConfigError, match=r"dataset 'staircase' \(train\) .*" + message):
        get_task("generate").check_data(with_targets(dataset(), **change))


def test_a_dataset_without_waveforms_is_refused() -> None:
    data = dataset()
    data.targets_train = {"label": torch.zeros(96).long()}
    with pytest.raises(ConfigError, match=r"needs \['waveform'\]; missing \['waveform'\]"):
        get_task("generate").check_data(data)


# -- one training loop ---------------------------------------------------------------------


def test_the_trainer_trains_a_conditioned_wavenet(tmp_path: Path) -> None:
    data = dataset()
    config = TrainConfig.from_dict({
        "name": "wave", "runs_dir": str(tmp_path), "model": "wavenet",
        "model_args": {"residual_channels": 16, "dilation_channels": 16, "skip_channels": 32,
                       "layers_per_stack": 3, "stacks": 1},
        "epochs": 4, "batch_size": 16, "lr": 0.01, "optimizer": "adam", "weight_decay": 0.0,
        "schedule": "constant", "label_smoothing": 0.0, "augment": "none", "progress": False,
        "report": False, "autotune": False, "threads": 1,
    })  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config, data)  # sized by the task: 256 codes, 3 conditions
    assert isinstance(model, WaveNet) and model.num_conditions == 3
    trainer = Trainer(model, config, log=lambda _: None)
    history = trainer.fit(data)
    assert history[-1]["train_loss"] < 0.2 * history[0]["train_loss"]
    result = trainer.evaluate(data.x_test, data.targets_test)
    # Every sequence has the same length, so the mean of the per-sequence means is the NLL.
    assert result["loss"] == pytest.approx(result["nll"], rel=1e-5)
    assert result["nll"] < 1.0 and result["accuracy"] > 0.9 and result["n"] == 32  # ln 256 = 5.5
    # Saved and loaded: the same model, told which conditions it was trained on.
    loaded = cnnlab.load(cnnlab.save(trainer.model, tmp_path / "saved"))
    torch.testing.assert_close(loaded(data.x_test[:4]), trainer.model.eval()(data.x_test[:4]))
    record = record_of(loaded)
    assert (
        record is not None
        and record.task == "generate"
        and record.task_args["conditions"] == data.classes
    )
