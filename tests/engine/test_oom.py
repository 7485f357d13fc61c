"""Gradient accumulation and out-of-memory recovery: an injected OOM halves the
micro-batch and reruns the step, ending with the weights of a run at the smaller
micro-batch from the start; at micro-batch 1 it gives up with a clear error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from cnnlab import Trainer, create_model
from cnnlab.core.errors import ShapeMismatchError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.step import OutOfMemoryAtOne, TrainStep, is_out_of_memory
from cnnlab.models import from_spec
from cnnlab.tasks import get_task

SMALL = {"widths": [8, 16], "blocks": [1, 1]}


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet_mini", num_classes=3, in_channels=1, **SMALL)


def plain() -> torch.nn.Module:
    spec = {
        "input_shape": [1, 12, 12],
        "layers": [{"conv": {"out": 6, "padding": 1}}, "relu", {"maxpool": 2}],
    }
    return from_spec(spec, num_classes=3)


def memory_limit(
    net: torch.nn.Module, most: int, error: type[Exception] = torch.OutOfMemoryError
) -> None:
    """Training batches over ``most`` images raise an out-of-memory error, as a small GPU would."""

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if module.training and inputs[0].shape[0] > most:
            if error is RuntimeError:
                raise RuntimeError(
                    "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
                )
            raise error("CUDA out of memory. Tried to allocate 2.00 GiB")

    net.register_forward_pre_hook(hook)


def test_accumulated_gradients_equal_the_whole_batchs(bars: ImageDataset) -> None:
    x = (bars.x_train[:32].float() / 255 - 0.2) / 0.3
    y = {"label": bars.y_train[:32]}
    task = get_task("classify")
    grads = []
    for parts in (1, 4, 5):
        net = plain()  # no BatchNorm, no dropout: the micro-batches see what the batch saw
        torch.manual_seed(0)
        net.load_state_dict({k: torch.randn_like(v) * 0.1 for k, v in net.state_dict().items()})
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        losses, outputs = TrainStep(net, task, opt, accumulate=parts)(x, y)
        assert outputs.shape == (32, 3)
        grads.append((losses["loss"], [p.grad.clone() for p in net.parameters()]))
    for loss, g in grads[1:]:
        torch.testing.assert_close(loss, grads[0][0], atol=1e-6, rtol=1e-6)
        for a, b in zip(g, grads[0][1], strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_recovery_ends_with_the_weights_of_the_smaller_micro_batch(
    bars: ImageDataset, quick_config: TrainConfig, tmp_path: Path
) -> None:
    lines: list[str] = []
    limited = model()
    memory_limit(limited, 8)
    config = dataclasses.replace(
        quick_config, runs_dir=str(tmp_path / "a"), epochs=2, autotune=False
    )
    recovered = Trainer(limited, config, log=lines.append)
    recovered.fit(bars)
    assert recovered.step.accumulate == 4  # 32 -> 16 -> 8 images per micro-batch
    assert [r["to"] for r in recovered.step.recoveries] == [2, 4]
    assert any("out of memory: micro-batch 32 -> 16" in line for line in lines)
    straight = Trainer(model(), dataclasses.replace(config, runs_dir=str(tmp_path / "b"), accumulate=4),
                       log=lambda _: None)  # fmt: skip
    straight.fit(bars)
    for (name, a), b in zip(
        recovered.model.state_dict().items(), straight.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


def test_out_of_memory_at_micro_batch_one_gives_up_clearly(
    bars: ImageDataset, quick_config: TrainConfig
) -> None:
    net = model()
    memory_limit(net, 0, RuntimeError)  # the CPU allocator's error: not even one image fits
    trainer = Trainer(
        net, dataclasses.replace(quick_config, epochs=1, autotune=False), log=lambda _: None
    )
    with pytest.raises(OutOfMemoryAtOne, match="out of memory at micro-batch 1"):
        trainer.fit(bars)


def test_only_memory_errors_are_recovered() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried...")
    )
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    net = plain()
    step = TrainStep(net, get_task("classify"), torch.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(ShapeMismatchError, match="expects input"):
        step(torch.zeros(4, 2, 12, 12), {"label": torch.zeros(4, dtype=torch.int64)})
    assert step.accumulate == 1
    with pytest.raises(ValueError, match="accumulate"):
        TrainStep(
            net, get_task("classify"), torch.optim.SGD(net.parameters(), lr=0.1), accumulate=0
        )


def test_a_resumed_run_keeps_the_micro_batch_that_fitted(
    bars: ImageDataset, quick_config: TrainConfig, tmp_path: Path
) -> None:
    from cnnlab.engine.checkpoint import load_checkpoint

    config = dataclasses.replace(quick_config, runs_dir=str(tmp_path), epochs=1, autotune=False)
    limited = model()
    memory_limit(limited, 8)
    Trainer(limited, config, log=lambda _: None).fit(bars)
    assert int(load_checkpoint(config.run_dir / "checkpoint.safetensors")["accumulate"]) == 4
    lines: list[str] = []
    again = model()
    memory_limit(again, 8)
    resumed = Trainer(again, config, log=lines.append)
    resumed.fit(bars, resume=True)
    assert resumed.step.accumulate == 4 and resumed.step.recoveries == []
    assert any("accumulate 1 -> 4" in line for line in lines)
