"""`cnnlab generate`: audio from a saved WaveNet run, written as a 16-bit WAV file."""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING, Any

from cnnlab.core.errors import ConfigError

if TYPE_CHECKING:  # torch loads only when a command runs: `cnnlab --help` stays instant
    from cnnlab.core.records import ModelRecord
    from cnnlab.models.wavenet import WaveNet


def load_generator(run_dir: str | os.PathLike[str]) -> tuple[WaveNet, ModelRecord]:
    """The saved generation model in ``run_dir`` and its record.

    The record is read (and its task checked) before the weights, so pointing the
    command at a classifier fails at once, not after building it.

    Raises:
        ConfigError: the run is not a generate-task WaveNet.
        CheckpointError: the folder is not a saved model, or its files are damaged.
    """
    from cnnlab.models.saved import load, read_record
    from cnnlab.models.wavenet import WaveNet

    record = read_record(run_dir)
    if record.task != "generate":
        raise ConfigError(
            f"{run_dir}: expected a generation model (task 'generate', e.g. wavenet trained "
            f"on fsdd-mulaw), received a {record.task!r} model ({record.architecture})"
        )
    model = load(run_dir)
    if not isinstance(model, WaveNet):
        raise ConfigError(
            f"{run_dir}: expected a WaveNet, received {type(model).__name__} "
            f"({record.architecture}); only WaveNet has a sampler"
        )
    return model, record


def mulaw_settings(record: ModelRecord) -> tuple[int, int]:
    """(sample rate in Hz, mu) from the record's ``preprocess``, as the dataset set it."""
    pre = record.preprocess
    if pre.get("kind") != "mulaw" or "sample_rate" not in pre or "mu" not in pre:
        raise ConfigError(
            "expected the model's preprocess to be {'kind': 'mulaw', 'sample_rate': ..., 'mu': "
            f"...}} (a mu-law audio dataset such as fsdd-mulaw), received {pre}"
        )
    return int(pre["sample_rate"]), int(pre["mu"])


def condition_id(model: WaveNet, record: ModelRecord, condition: str | None) -> int | None:
    """The condition id for ``--condition``, given as a name (e.g. the digit "3") or an
    index; None for an unconditioned model."""
    names = condition_names(model, record)
    if not model.num_conditions:
        if condition is not None:
            raise ConfigError(
                f"this model is unconditioned (num_conditions=0), received "
                f"--condition {condition}; drop --condition"
            )
        return None
    if condition is None:
        raise ConfigError(
            f"this model is conditioned on {model.num_conditions} ids; expected "
            f"--condition with one of {names}, received none"
        )
    if condition in names:
        return names.index(condition)
    if condition.lstrip("-").isdigit() and 0 <= int(condition) < model.num_conditions:
        return int(condition)
    raise ConfigError(
        f"expected --condition to be one of {names} (or an index in "
        f"[0, {model.num_conditions})), received {condition!r}"
    )


def condition_names(model: WaveNet, record: ModelRecord) -> list[str]:
    """The names of the condition ids as the dataset gave them ("0" .. "9" for FSDD)."""
    return [str(n) for n in record.task_args.get("conditions") or range(model.num_conditions)]


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.data.mulaw import mu_law_decode
    from cnnlab.data.wav import write_wav

    if not args.seconds > 0 or not args.temperature > 0:
        raise ConfigError(
            f"Expected --seconds > 0 and --temperature > 0, received "
            f"--seconds {args.seconds} --temperature {args.temperature}"
        )
    model, record = load_generator(args.run_dir)
    sample_rate, mu = mulaw_settings(record)
    condition = condition_id(model, record, args.condition)
    num_samples = max(1, round(args.seconds * sample_rate))
    # No --seed: a fresh one, printed, so that a clip worth keeping can be made again.
    seed = args.seed if args.seed is not None else torch.Generator().seed() % 2**31
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    codes = model.generate(
        num_samples, condition=condition, generator=generator,
        temperature=args.temperature, fast=not args.naive,
    )  # fmt: skip  # (1, num_samples)
    seconds = time.perf_counter() - started
    write_wav(args.output, mu_law_decode(codes[0], mu), sample_rate)
    way = "naive: the forward over the receptive field" if args.naive else "fast queues"
    shown = "" if condition is None else f", condition {condition_names(model, record)[condition]}"
    print(
        f"generated {num_samples} samples ({num_samples / sample_rate:.2f} s at "
        f"{sample_rate} Hz{shown}, seed {seed}) in {seconds:.2f} s: "
        f"{num_samples / seconds:,.0f} samples/s ({way}) -> {args.output}"
    )
    return 0


def add_generate_parser(sub: Any) -> None:
    """Register `cnnlab generate`."""
    p = sub.add_parser(
        "generate",
        help="sample audio from a trained WaveNet run and write it as a WAV file",
        description="Sample codes one at a time from a saved WaveNet (task 'generate'), "
        "decode them with the mu-law of its dataset and write a 16-bit mono WAV.",
    )
    p.add_argument("run_dir", help="a saved WaveNet run, e.g. runs/wavenet")
    p.add_argument("--seconds", type=float, default=1.0, help="length of the audio (default 1)")
    p.add_argument("--output", "-o", required=True, help="the WAV file to write")
    p.add_argument(
        "--condition",
        help="for a conditioned model: the condition's name or index (the digit, for fsdd-mulaw)",
    )
    p.add_argument("--seed", type=int, help="seed of the sampling (default: a fresh one, printed)")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="softmax temperature; below 1 sharpens each step's distribution (default 1)",
    )
    p.add_argument(
        "--naive",
        action="store_true",
        help="recompute the forward over the receptive field for every sample (slow; "
        "for comparison with the per-layer queues)",
    )
    p.set_defaults(func=cmd_generate)
