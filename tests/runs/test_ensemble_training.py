"""Ensembles trained side by side: the plan, the members' configs, and a real run."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.core.errors import ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.engine import Trainer
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import evaluate_model, probabilities
from cnnlab.models import Ensemble
from cnnlab.runs import ensemble as ens
from cnnlab.runs import run_training
from cnnlab.runs.report import write_report
from cnnlab.runs.run import build_model as build_run_model


@pytest.mark.parametrize(
    ("members", "cores", "threads", "expected"),
    [
        (2, 2, None, (2, 1)),  # one process per core
        (3, 2, None, (2, 1)),  # never more processes than cores
        (2, 8, None, (2, 4)),  # the cores shared out
        (2, 1, None, (1, 1)),  # one core: one member after the other
        (2, 8, 1, (2, 1)),  # the config's threads win
    ],
)
def test_plan(members: int, cores: int, threads: int | None, expected: tuple[int, int]) -> None:
    config = TrainConfig(ensemble=members, threads=threads)
    assert ens.plan(config, cores=cores) == expected


def test_members_get_their_own_seed_folder_and_threads(tmp_path: Path) -> None:
    config = TrainConfig(name="e", runs_dir=str(tmp_path), seed=3, ensemble=2, epochs=4)
    members = [ens.member_config(config, i, threads=1, parallel=True) for i in range(2)]
    # Seed s with N members takes seeds s*N .. s*N+N-1: ensembles of seeds 3 and 4 share none.
    assert [m.seed for m in members] == [6, 7]
    assert [m.run_dir for m in members] == [
        tmp_path / "e" / "member-0",
        tmp_path / "e" / "member-1",
    ]
    assert all(m.ensemble == 1 and m.threads == 1 and m.epochs == 4 for m in members)
    assert not any(m.progress or m.report for m in members)


def test_ensemble_must_be_a_positive_int() -> None:
    with pytest.raises(ConfigError, match="ensemble=0"):
        TrainConfig(ensemble=0)


@pytest.mark.parametrize("cores", [1, 2])  # one after the other; two processes at once
def test_a_run_saves_members_and_their_average(
    tmp_path: Path,
    quick_config: TrainConfig,
    bars: ImageDataset,
    cores: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ens, "available_cores", lambda: cores)
    config = TrainConfig.from_dict(
        {
            **quick_config.to_dict(), "ensemble": 2, "epochs": 2, "report": False,
            "threads": None, "whiten": True,
        }
    )  # fmt: skip
    metrics = run_training(config, data=bars)
    run_dir = config.run_dir
    members = [cnnlab.load(run_dir / f"member-{i}") for i in range(2)]
    # Different seeds, different weights (above the whitened first layer, which they share).
    heads = [list(m.parameters())[-2] for m in members]
    assert heads[0].shape == (3, 16) and not torch.equal(*heads)
    saved = cnnlab.load(run_dir)
    assert isinstance(saved, Ensemble)
    # The whitened first layers stay frozen in the saved members and the saved ensemble.
    frozen = [n for n, p in saved.named_parameters() if not p.requires_grad]
    assert frozen == ["members.0.features.0.weight", "members.1.features.0.weight"]
    assert not members[0].features[0].weight.requires_grad
    # Oracle: the saved ensemble predicts the mean of its saved members' probabilities.
    mean = (probabilities(members[0], bars.x_test) + probabilities(members[1], bars.x_test)) / 2
    torch.testing.assert_close(probabilities(saved, bars.x_test), mean, atol=1e-5, rtol=1e-4)
    test = evaluate_model(saved, bars.x_test, bars.y_test)
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["test_accuracy"] == metrics["test_accuracy"] == test["accuracy"]
    assert [m["seed"] for m in on_disk["members"]] == [0, 1]
    assert on_disk["train_seconds"] == max(m["train_seconds"] for m in on_disk["members"])
    for i in range(2):
        member = json.loads((run_dir / f"member-{i}" / "metrics.json").read_text())
        assert member["test_accuracy"] == on_disk["members"][i]["test_accuracy"]
        assert (run_dir / f"member-{i}" / "history.csv").exists()
    if cores == 1:  # the report shows member-0's layers and curves, the ensemble's predictions
        page = write_report(run_dir, max_images=2, data=bars).read_text()
        assert "Layers of member-0, one of the 2 models" in page
        # One member's layer table, with its frozen first layer counted.
        assert "members.1." not in page and "members.0." not in page
        assert page.count("total params:") == 1
        assert f"frozen: {members[0].features[0].weight.numel():,}" in page
        assert "No history.csv" not in page


def test_fast_dev_run_writes_nothing(
    tmp_path: Path, quick_config: TrainConfig, bars: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ens, "available_cores", lambda: 1)
    config = TrainConfig.from_dict({**quick_config.to_dict(), "ensemble": 2, "fast_dev_run": True})
    metrics = run_training(config, data=bars)
    assert 0 <= metrics["test_accuracy"] <= 1 and len(metrics["members"]) == 2
    assert not config.run_dir.exists()


def test_a_trainer_refuses_an_ensemble_config(quick_config: TrainConfig) -> None:
    config = TrainConfig.from_dict({**quick_config.to_dict(), "ensemble": 2})
    model = cnnlab.create_model("resnet_mini", num_classes=3, widths=[4], blocks=[1])
    with pytest.raises(ConfigError, match=r"ensemble=2.*run_training"):
        cnnlab.Trainer(model, config)


def _state(pid: int) -> str:
    """The process's state letter from /proc ('Z' for a zombie), '' once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return fields[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sigint_ignored", [False, True])  # True: a job started with `&`
def test_a_member_whose_parent_is_killed_interrupts_itself(
    tmp_path: Path, sigint_ignored: bool
) -> None:
    # parent: starts a "member" that watches it, prints the member's pid, then sleeps.
    member = (
        "import sys, time\n"
        "from cnnlab.runs.ensemble import stop_when_orphaned\n"
        "stop_when_orphaned(int(sys.argv[1]), poll=0.05, grace=60)\n"
        "try:\n"
        f"    open({str(tmp_path / 'ready')!r}, 'w').close()\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        f"    open({str(tmp_path / 'interrupted')!r}, 'w').close()\n"
    )
    parent = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {member!r}, str(os.getpid())])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True,
        preexec_fn=ignore_sigint if sigint_ignored else None,
    )  # fmt: skip
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    deadline = time.monotonic() + 60  # the member imports torch first
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(child) not in ("", "Z")  # the member runs while its parent lives
    proc.send_signal(signal.SIGKILL)  # no clean-up in the parent
    proc.wait()
    deadline = time.monotonic() + 20  # well under the 60 s grace: the clean path only
    while _state(child) not in ("", "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(child) in ("", "Z"), "the orphaned member kept running"
    assert (tmp_path / "interrupted").exists()  # it stopped by KeyboardInterrupt


def test_members_share_one_tuned_choice(
    bars: ImageDataset, quick_config: TrainConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    config = dataclasses.replace(quick_config, ensemble=2, epochs=20)  # 240 steps: tuned
    members = [ens.member_config(config, i, threads=1, parallel=True) for i in range(2)]
    line = ens.tune_once(members[0], bars)
    assert line.startswith("cpu settings: ") and "tuned" in line
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as fit() sets a member's threads before choosing
    try:
        for member in members:  # each member finds the same choice in the cache
            torch.manual_seed(member.seed)
            choice = Trainer(build_run_model(member, bars), member).choose_cpu_settings(bars)
            assert choice.source == "cached"
            assert choice.message() == line.replace("tuned", "cached")
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize(("step", "single"), [(0.5, True), (0.001, False)])
def test_a_short_budget_trains_one_model_instead_of_members(
    bars: ImageDataset,
    quick_config: TrainConfig,
    monkeypatch: pytest.MonkeyPatch,
    step: float,
    single: bool,
) -> None:
    monkeypatch.setattr(Trainer, "measure_step", lambda self, data: step)
    config = dataclasses.replace(
        quick_config, ensemble=2, time_budget="10s", ensemble_min_epochs=4, threads=None
    )
    member = ens.member_config(config, 0, threads=1, parallel=True)
    # 384 images / 32 = 12 steps per epoch: 10 s buy 1.7 epochs at 0.5 s, 833 at 0.001 s.
    chosen = ens.one_model_instead(config, member, bars)
    if single:
        assert chosen is not None and chosen.ensemble == 1 and chosen.run_dir == config.run_dir
        assert chosen.threads is None and chosen.time_budget == "10s"
    else:
        assert chosen is None
    assert (
        ens.one_model_instead(dataclasses.replace(config, ensemble_min_epochs=None), member, bars)
        is None
    )


def test_ensemble_min_epochs_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="ensemble_min_epochs=0"):
        TrainConfig(ensemble_min_epochs=0)
