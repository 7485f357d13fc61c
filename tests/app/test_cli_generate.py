"""`cnnlab generate`: a WaveNet trained here on a conditioned staircase of codes writes WAV
files of the right rate and length, whose samples are the model's own codes decoded; the
seed reproduces a clip, the condition reaches the model, and bad runs and conditions are
refused naming what was received."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.app.cli_generate import add_generate_parser
from cnnlab.core.errors import CheckpointError, ConfigError
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.wav import read_wav
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.trainer import Trainer
from cnnlab.models import create_model
from cnnlab.models.wavenet import WaveNet, mu_law_decode, mu_law_encode
from cnnlab.runs.run import build_model

RATE = 1000  # not FSDD's 8 kHz: the command must take the rate from the run's record
MULAW = {"kind": "mulaw", "sample_rate": RATE, "mu": 255}
TINY = {
    "residual_channels": 16, "dilation_channels": 16, "skip_channels": 32,
    "layers_per_stack": 3, "stacks": 1,
}  # fmt: skip  # receptive field 9: enough to see a period of 4


def staircase(n: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes 96, 128, ... climbing in 2 + c steps and starting over (c = the condition in
    column 0), from a random phase: (inputs (n, 1 + length), next codes (n, length))."""
    g = torch.Generator().manual_seed(seed)
    condition = torch.randint(0, 3, (n,), generator=g)
    phase = torch.randint(0, 12, (n, 1), generator=g)
    sequence = 96 + 32 * ((phase + torch.arange(length + 1)) % (2 + condition[:, None]))
    return torch.cat([condition[:, None], sequence[:, :-1]], 1), sequence[:, 1:]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conditioned WaveNet run trained for a few seconds on the staircase."""
    (x_train, w_train), (x_test, w_test) = staircase(96, 24, 0), staircase(32, 24, 1)
    data = ImageDataset(
        "staircase", x_train, None, x_test, None, ["two", "three", "four"],
        targets_train={"waveform": w_train}, targets_test={"waveform": w_test},
        task="generate", extra={"conditioned": "yes"}, preprocess=MULAW,
    )  # fmt: skip
    runs = tmp_path_factory.mktemp("runs")
    config = TrainConfig.from_dict({
        "name": "wave", "runs_dir": str(runs), "model": "wavenet", "model_args": TINY,
        "epochs": 12, "batch_size": 16, "lr": 0.01, "optimizer": "adam", "weight_decay": 0.0,
        "schedule": "constant", "label_smoothing": 0.0, "augment": "none", "tta": False,
        "progress": False, "report": False, "autotune": False, "threads": 1,
    })  # fmt: skip
    torch.manual_seed(0)
    trainer = Trainer(build_model(config, data), config, log=lambda _: None)
    trainer.fit(data)
    return cnnlab.save(trainer.model, runs / "wave")


def generate(run: Path, out: Path, *flags: str) -> int:
    """`cnnlab generate RUN -o OUT FLAGS...` through the command's own parser."""
    parser = argparse.ArgumentParser(prog="cnnlab")
    add_generate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["generate", str(run), "-o", str(out), *flags])
    code: int = args.func(args)
    return code


def test_writes_a_wav_of_the_records_rate_and_the_asked_length(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clip.wav"
    assert generate(run_dir, out, "--seconds", "0.25", "--condition", "two", "--seed", "3") == 0
    samples, rate = read_wav(out)
    assert rate == RATE and samples.shape == (250,)
    printed = capsys.readouterr().out
    assert "250 samples (0.25 s at 1000 Hz, condition two, seed 3)" in printed
    assert "samples/s (fast queues)" in printed and str(out) in printed
    # The samples are the model's own codes, decoded (16-bit PCM keeps them to 1/32768).
    model = cnnlab.load(run_dir)
    assert isinstance(model, WaveNet)
    codes = model.generate(250, condition=0, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(samples, mu_law_decode(codes[0]).numpy(), atol=1 / 32768)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temp file left


def test_the_seed_reproduces_a_clip(run_dir: Path, tmp_path: Path) -> None:
    paths = {name: tmp_path / f"{name}.wav" for name in ("a", "b", "other")}
    for name, seed in (("a", "7"), ("b", "7"), ("other", "8")):
        # Temperature 3: the trained model is too sure of the staircase for seeds to differ.
        flags = ["--seconds", "0.1", "--condition", "1", "--temperature", "3", "--seed", seed]
        assert generate(run_dir, paths[name], *flags) == 0
    assert paths["a"].read_bytes() == paths["b"].read_bytes()
    assert paths["a"].read_bytes() != paths["other"].read_bytes()


def test_naive_sampling_writes_the_same_kind_of_clip(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--naive recomputes the forward per sample; that it draws the codes the queues draw
    is tested on the model in float64 (tests/models/test_wavenet.py): in float32 a rounding
    difference may flip one draw and every draw after it."""
    out = tmp_path / "naive.wav"
    flags = ["--seconds", "0.05", "--condition", "0", "--temperature", "0.2", "--naive"]
    assert generate(run_dir, out, *flags) == 0
    assert "(naive: the forward over the receptive field)" in capsys.readouterr().out
    codes = mu_law_encode(torch.from_numpy(read_wav(out)[0]))[10:]
    assert len(codes) == 40 and float((codes[2:] == codes[:-2]).float().mean()) > 0.9


@pytest.mark.parametrize(("condition", "name", "period"), [("two", "two", 2), ("2", "four", 4)])
def test_the_condition_reaches_the_model(
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    condition: str,
    name: str,
    period: int,
) -> None:
    """Condition "two" (id 0) climbs in 2 steps, id 2 ("four") in 4: a cold sample of the
    trained model repeats with the condition's period and not with a shorter one."""
    out = tmp_path / "cold.wav"
    flags = ["--seconds", "0.1", "--condition", condition, "--temperature", "0.2", "--seed", "0"]
    assert generate(run_dir, out, *flags) == 0
    assert f"condition {name}," in capsys.readouterr().out  # an index is shown by its name
    codes = mu_law_encode(torch.from_numpy(read_wav(out)[0]))[10:]  # past the silent prime
    assert set(codes.tolist()) <= {96, 128, 160, 192}
    assert float((codes[period:] == codes[:-period]).float().mean()) > 0.9
    assert float((codes[2:] == codes[:-2]).float().mean()) < 0.5 or period == 2


def save_model(path: Path, name: str, **args: Any) -> Path:
    return cnnlab.save(create_model(name, **args), path, extra={"preprocess": MULAW})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--condition", "five"], r"--condition to be one of \['two', 'three', 'four'\] \(or an index in \[0, 3\)\), received 'five'"),
        (["--condition", "3"], r"an index in \[0, 3\)\), received '3'"),
        (["--condition", "-1"], r"received '-1'"),
        ([], r"conditioned on 3 ids; expected --condition with one of \['two', 'three', 'four'\], received none"),
        (["--condition", "1", "--seconds", "0"], r"--seconds > 0 and --temperature > 0, received --seconds 0.0 --temperature 1.0"),
        (["--condition", "1", "--temperature", "-1"], r"received --seconds 1.0 --temperature -1.0"),
    ],
)  # fmt: skip
def test_bad_conditions_and_settings_are_refused(
    run_dir: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    out = tmp_path / "x.wav"
    with pytest.raises(ConfigError, match=message):
        generate(run_dir, out, *flags)
    assert not out.exists()


def test_a_condition_for_an_unconditioned_model_is_refused(tmp_path: Path) -> None:
    run = save_model(tmp_path / "plain", "wavenet", **TINY)
    with pytest.raises(ConfigError, match=r"unconditioned \(num_conditions=0\), received --condition 3"):  # fmt: skip
        generate(run, tmp_path / "x.wav", "--condition", "3")
    assert generate(run, tmp_path / "ok.wav", "--seconds", "0.01", "--seed", "0") == 0
    assert read_wav(tmp_path / "ok.wav")[0].shape == (10,)


def test_runs_that_are_not_mulaw_wavenets_are_refused(tmp_path: Path) -> None:
    classifier = cnnlab.save(
        create_model("resnet_mini", in_channels=1, num_classes=3, widths=[8, 16], blocks=[1, 1]),
        tmp_path / "classifier",
    )
    with pytest.raises(ConfigError, match=r"expected a generation model \(task 'generate'.*received a 'classify' model \(resnet_mini\)"):  # fmt: skip
        generate(classifier, tmp_path / "x.wav")
    untrained = cnnlab.save(create_model("wavenet", **TINY), tmp_path / "raw")
    with pytest.raises(ConfigError, match=r"preprocess to be \{'kind': 'mulaw'.*received \{\}"):
        generate(untrained, tmp_path / "x.wav")
    with pytest.raises(CheckpointError, match=r"config.json: not found"):
        generate(tmp_path / "missing", tmp_path / "x.wav")
    plain = save_model(tmp_path / "plain", "wavenet", **TINY)
    record = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**record, "task": "classify"}))
    with pytest.raises(ConfigError, match=r"received a 'classify' model \(wavenet\)"):
        generate(plain, tmp_path / "x.wav")
