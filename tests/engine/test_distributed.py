"""DDP on one machine, 2 processes (gloo): the ranks agree after every step, the result
equals one process with the same global batch, a killed rank stops the run with a clear
message and --resume finishes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine.config import TrainConfig
from cnnlab.models.saved import load
from cnnlab.runs import run_training

PLAIN = {
    "input_shape": [1, 12, 12],
    "layers": [{"conv": {"out": 6, "padding": 1}}, "relu", {"maxpool": 2}],
}


def config(tmp_path: Path, name: str, **changes: object) -> TrainConfig:
    spec = tmp_path / "plain.yaml"
    spec.write_text(yaml.safe_dump(PLAIN))  # no BatchNorm: the shards see what the batch saw
    values = dict(name=name, runs_dir=str(tmp_path), model=str(spec), epochs=2, batch_size=32,
                  lr=0.05, augment="flip", progress=False, report=False, threads=1,
                  autotune=False, tta=False, val_split=0.0)  # fmt: skip
    return TrainConfig(**{**values, **changes})  # type: ignore[arg-type]


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(
    bars: ImageDataset, tmp_path: Path
) -> None:
    two = run_training(config(tmp_path, "two", nproc=2), data=bars)
    one = run_training(config(tmp_path, "one"), data=bars)
    steps = 2 * (len(bars.x_train) // 32)
    assert two["distributed"] == {"processes": 2, "ranks_agreed_steps": steps}  # every step
    a, b = load(tmp_path / "one").state_dict(), load(tmp_path / "two").state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    assert two["test_images"] == len(bars.x_test)  # each test image once, on rank 0
    assert two["test_accuracy"] == one["test_accuracy"]


def test_what_a_distributed_run_refuses_before_starting(bars: ImageDataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="divisible by the 2 processes"):
        run_training(config(tmp_path, "odd", nproc=2, batch_size=33), data=bars)
    with pytest.raises(ConfigError, match="time_budget"):
        run_training(config(tmp_path, "budget", nproc=2, time_budget="1m"), data=bars)
    assert not (tmp_path / "odd").exists()


def workers(parent: int) -> list[int]:
    """The spawned ranks of a launcher process (its children running spawn_main)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(stat[3]) == parent and "spawn_main" in cmd:
            found.append(int(pid))
    return found


@pytest.mark.slow
def test_a_killed_rank_stops_the_others_and_resume_finishes(tmp_path: Path) -> None:
    spec = tmp_path / "plain.yaml"
    spec.write_text(yaml.safe_dump({**PLAIN, "input_shape": [1, 8, 8]}))
    command = [sys.executable, "-m", "cnnlab.app.cli", "train", "--model", str(spec), "--dataset", "digits",
               "--epochs", "60", "--batch-size", "16", "--nproc", "2", "--runs-dir", str(tmp_path),
               "--name", "ddp", "--no-progress", "--no-report", "--threads", "1", "--val-split", "0",
               "--no-autotune"]  # fmt: skip
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "ddp" / "checkpoint.safetensors"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert time.monotonic() < deadline and launcher.poll() is None, launcher.communicate()
        time.sleep(0.1)
    ranks = workers(launcher.pid)
    assert len(ranks) == 2
    os.kill(ranks[1], signal.SIGKILL)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1, out + err
    assert "of 2 stopped" in err and "the other ranks were stopped" in err and "--resume" in err
    assert not workers(launcher.pid)  # no rank left behind
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stdout
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["epochs"] == 60 and metrics["distributed"]["processes"] == 2
