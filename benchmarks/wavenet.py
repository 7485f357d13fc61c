"""Claim: a digit-conditioned WaveNet trained for at most 12 minutes on FSDD (fsdd-mulaw,
2 CPU cores) (a) predicts held-out speech better than uniform guessing (ln 256 = 5.545
nats/sample) and than the training set's mu-law code histogram (a unigram, add-one
smoothed), on the same test targets; (b) generates with per-layer queues (Paine et al.
2016) much faster than by recomputing the receptive field for every sample; (c) makes
clips that a spectrogram_cnn trained on real FSDD hears as the asked digit more often
than chance (10%).

Steps, each through cnnlab's Python API:
1. For each seed: train WaveNet (``WAVENET``, ``TRAIN``) within ``TRAIN["time_budget"]``
   (cnnlab.engine.budget: the steps that fit on this machine now, a hard stop at 110%)
   and read its test NLL; the baselines are scored on the same test targets.
2. The first seed's model: fast and naive generation of ``SPEED_SAMPLES`` codes
   (cnnlab.models.wavenet.generation_speed), the median of ``SPEED_RUNS`` runs.
3. ``CLIPS_PER_DIGIT`` clips per digit (1 s, fast queues, one batch), written to
   runs/wavenet-samples/, classified by a spectrogram_cnn (trained here with
   ``CLASSIFIER``, or given with --classifier). The classifier is also scored on the
   real test recordings, raw and mu-law round-tripped: a control that it hears 8-bit
   mu-law speech as well as the original. Chance is judged by shuffling the asked digits
   among the clips, so the classifier's own bias (it hears most babble as one digit)
   cannot pass for conditioning.

    CNNLAB_DATA_DIRS=../shared/data .venv/bin/python benchmarks/wavenet.py \
        [--seeds 0 1 2] [--classifier runs/wavenet-classifier] [--json out.json]

Timings share the machine with whatever else runs on it: the load average before and
after is printed beside them.
"""

from __future__ import annotations  # noqa: I001 (cnnlab loads first: see below)

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import cnnlab  # noqa: F401  (before torch: it sets GOMP_SPINCOUNT, read as torch loads)
import torch

from cnnlab import data as datasets
from cnnlab.core.io import write_json
from cnnlab.core.rundir import RunDir
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.fsdd import SAMPLE_RATE
from cnnlab.data.wav import write_wav
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import probabilities
from cnnlab.models.saved import load
from cnnlab.models.wavenet import WaveNet, generation_speed, mu_law_decode, mu_law_encode
from cnnlab.runs.run import train_one

# -- what is trained, in one place --------------------------------------------------------

DATASET_ARGS = {"chunk": 4000, "conditioned": True, "split": "official"}  # 0.5 s per clip
WAVENET = {
    "residual_channels": 32, "dilation_channels": 32, "skip_channels": 64,
    "layers_per_stack": 10, "stacks": 1,  # dilations 1..512: receptive field 1025 (0.13 s)
}  # fmt: skip  # two stacks (field 2048), same budget: NLL 2.51 vs 2.54, heard as asked 13.5%
# vs 17% (200 clips, noisy), generation 1.8x slower: not worth it at this budget
TRAIN: dict[str, Any] = {
    "model": "wavenet", "dataset": "fsdd-mulaw", "dataset_args": DATASET_ARGS,
    "model_args": WAVENET,
    "time_budget": "10.5m",  # the budget's hard stop (110%) keeps training under 12 min
    "batch_size": 8,  # 8 clips x 4000 samples a step: 337 steps an epoch
    "optimizer": "adam", "lr": 0.003, "weight_decay": 0.0, "schedule": "onecycle",
    "grad_clip": 1.0,
    "label_smoothing": 0.0,  # a density model: smoothing raises the NLL it can reach
    "augment": "none", "tta": False, "eval_batch_size": 50,
    # One thread: with other jobs on the 2 cores (load ~7), a step of this model took
    # 1.7-2.9 s on one thread and 4.5-6.9 s on two.
    "threads": 1,
    "report": False, "progress": False,
}  # fmt: skip
CLASSIFIER: dict[str, Any] = {
    "model": "spectrogram_cnn", "dataset": "fsdd", "dataset_args": {"split": "official"},
    "epochs": 20, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "weight_decay": 1e-4,
    # Without "noise": trained with noise on every clip, the net never hears digital
    # silence and scored 28% on the clean test recordings (100% with 20 dB noise added).
    "augment": "timeshift,amplitude", "tta": False, "report": False, "progress": False,
}  # fmt: skip
SECONDS = 1.0  # length of each generated clip
CLIPS_PER_DIGIT = 20  # 200 clips: one batch; 100 gave 14-24% over three sampling seeds
TEMPERATURE = 1.0  # the model as trained; 0.9 made clips 5x quieter (median RMS)
SPEED_SAMPLES = SAMPLE_RATE  # 1 s
SPEED_RUNS = 3
NUM_CODES = 256


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- (a) likelihood against two baselines -------------------------------------------------


def unigram_nll(data: ImageDataset) -> float:
    """Test NLL (nats/sample) of the training targets' code histogram, add-one smoothed:
    every test sample predicted by the same distribution, whatever came before it."""
    counts = torch.bincount(data.targets_train["waveform"].flatten(), minlength=NUM_CODES)
    log_p = torch.log((counts.double() + 1) / (counts.sum() + NUM_CODES))
    return float(-log_p[data.targets_test["waveform"]].mean())


def train_wavenet(
    seed: int, data: ImageDataset, runs_dir: Path, overrides: dict[str, Any]
) -> tuple[dict[str, Any], WaveNet]:
    config = TrainConfig.from_dict(
        {**TRAIN, **overrides, "name": f"wavenet-seed{seed}", "runs_dir": str(runs_dir),
         "seed": seed}
    )  # fmt: skip
    print(f"seed {seed}: training {config.model_args} (load {load_average()})", flush=True)
    train_one(config, data=data)
    return trained_wavenet(config.run_dir, seed)


def trained_wavenet(run_dir: Path, seed: int | None = None) -> tuple[dict[str, Any], WaveNet]:
    """A finished WaveNet run: (its row of the NLL table, the model)."""
    metrics = json.loads(RunDir.of(run_dir).metrics.read_text())
    model = load(run_dir)
    assert isinstance(model, WaveNet), f"{run_dir} holds {type(model).__name__}, not a WaveNet"
    budget = metrics.get("time_budget", {})
    steps = budget.get("used", {}).get("steps")  # the last epoch of a budget may be partial
    row = {
        "seed": seed, "test_nll": metrics["test_nll"],
        "test_bits_per_sample": metrics["test_bits_per_sample"],
        "test_accuracy": metrics["test_accuracy"], "steps": steps,
        "epochs": steps / budget["steps_per_epoch"] if steps else metrics["epochs"],
        "train_seconds": metrics["train_seconds"],
        "spent_seconds": budget.get("spent_seconds", metrics["wall_seconds"]),
        "load_after": load_average(), "run_dir": str(run_dir),
    }  # fmt: skip
    print(f"seed {seed}: {json.dumps(row)}", flush=True)
    return row, model


def likelihood_summary(rows: list[dict[str, Any]], unigram: float) -> dict[str, Any]:
    nll = [r["test_nll"] for r in rows]
    uniform = math.log(NUM_CODES)
    return {
        "uniform_nll": uniform, "unigram_nll": unigram,
        "median_nll": statistics.median(nll), "min_nll": min(nll), "max_nll": max(nll),
        "beats_uniform": max(nll) < uniform, "beats_unigram": max(nll) < unigram,
    }  # fmt: skip


# -- (b) generation speed -------------------------------------------------------------------


def speed(model: WaveNet, samples: int, runs: int) -> dict[str, Any]:
    """Median seconds of fast and naive generation of ``samples`` codes over ``runs``."""
    timed = [generation_speed(model, samples, condition=0) for _ in range(runs)]
    fast = statistics.median(t["fast_seconds"] for t in timed)
    naive = statistics.median(t["naive_seconds"] for t in timed)
    return {
        "samples": samples, "runs": runs, "receptive_field": model.receptive_field,
        "fast_seconds": fast, "naive_seconds": naive, "speedup": naive / fast,
        "fast_samples_per_s": samples / fast, "naive_samples_per_s": samples / naive,
        "all": timed, "load_after": load_average(),
    }  # fmt: skip


# -- (c) conditioned generation, classified ---------------------------------------------------


def train_classifier(runs_dir: Path) -> Path:
    config = TrainConfig.from_dict(
        {**CLASSIFIER, "name": "wavenet-classifier", "runs_dir": str(runs_dir)}
    )
    print(f"training the classifier: spectrogram_cnn on fsdd (load {load_average()})", flush=True)
    metrics, _ = train_one(config)
    print(f"classifier: test accuracy {metrics['test_accuracy']:.2%}", flush=True)
    return config.run_dir


def generate_clips(
    model: WaveNet, per_digit: int, seconds: float, temperature: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Clips (10 * per_digit, samples) in [-1, 1], their digits, and the seconds taken."""
    digits = torch.arange(model.num_conditions).repeat_interleave(per_digit)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    codes = model.generate(
        round(seconds * SAMPLE_RATE), condition=digits, batch=len(digits), generator=generator,
        temperature=temperature,
    )  # fmt: skip
    return mu_law_decode(codes), digits, time.perf_counter() - started


def heard_digits(classifier: Any, waves: torch.Tensor) -> torch.Tensor:
    """The classifier's digit (N,) for each clip (N, L)."""
    return probabilities(classifier, waves[:, None, :]).argmax(1)


def confusion_matrix(asked: torch.Tensor, heard: torch.Tensor) -> torch.Tensor:
    """Counts (10, 10): rows the asked digit, columns the digit heard."""
    confusion = torch.zeros(10, 10, dtype=torch.int64)
    return confusion.index_put_((asked, heard), torch.ones_like(asked), accumulate=True)


def permutation_p_value(asked: torch.Tensor, heard: torch.Tensor, rounds: int = 10_000) -> float:
    """P(as many hits or more) with the asked digits shuffled among the clips: chance for
    this classifier as it is (it hears most babble as one digit), not for an ideal one."""
    generator = torch.Generator().manual_seed(0)
    hits = int((asked == heard).sum())
    shuffled = torch.stack(
        [asked[torch.randperm(len(asked), generator=generator)] for _ in range(rounds)]
    )
    return (1 + int(((shuffled == heard).sum(1) >= hits).sum())) / (1 + rounds)


def conditioning(
    model: WaveNet, classifier_dir: Path, samples_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    waves, asked, seconds = generate_clips(
        model, args.clips_per_digit, SECONDS, args.temperature, args.seeds[0]
    )
    for i, (wave, digit) in enumerate(zip(waves, asked.tolist(), strict=True)):
        write_wav(samples_dir / f"digit{digit}-{i % args.clips_per_digit}.wav", wave, SAMPLE_RATE)
    classifier = load(classifier_dir)
    heard = heard_digits(classifier, waves)
    real = datasets.load("fsdd", split="official")
    x, y = real.x_test[:, 0], real.targets_test["label"]
    real_heard = heard_digits(classifier, x)
    mulaw_heard = heard_digits(classifier, mu_law_decode(mu_law_encode(x)))
    confusion = confusion_matrix(asked, heard)
    return {
        "clips": len(asked), "seconds_each": SECONDS, "temperature": args.temperature,
        "generation_seconds": seconds, "samples_per_s": waves.numel() / seconds,
        "accuracy": float((heard == asked).float().mean()), "chance": 0.1,
        "p_value_vs_chance": permutation_p_value(asked, heard),
        "confusion": confusion.tolist(), "heard_as": confusion.sum(0).tolist(),
        "classifier": str(classifier_dir),
        "classifier_real_test_accuracy": float((real_heard == y).float().mean()),
        "classifier_mulaw_test_accuracy": float((mulaw_heard == y).float().mean()),
        "samples_dir": str(samples_dir), "load_after": load_average(),
    }  # fmt: skip


# -- the report -------------------------------------------------------------------------------


def print_report(result: dict[str, Any]) -> None:
    like, fast, cond = result["likelihood"], result["speed"], result["conditioning"]
    print("\n(a) test NLL, nats/sample (lower is better)")
    for row in result["seeds"]:
        run = row["run_dir"] if row["seed"] is None else f"seed {row['seed']}"
        print(
            f"  {run}: {row['test_nll']:.4f} ({row['test_bits_per_sample']:.3f} "
            f"bits; top-1 {row['test_accuracy']:.1%}) after {row['epochs']:.2f} epochs, "
            f"{row['train_seconds']:.0f} s training, {row['spent_seconds']:.0f} s in all"
        )
    print(
        f"  median {like['median_nll']:.4f} (min {like['min_nll']:.4f}, max "
        f"{like['max_nll']:.4f}) vs uniform {like['uniform_nll']:.4f} and unigram "
        f"{like['unigram_nll']:.4f}: beats uniform {like['beats_uniform']}, unigram "
        f"{like['beats_unigram']}"
    )
    print(f"\n(b) {fast['samples']} samples, median of {fast['runs']} runs")
    print(
        f"  fast {fast['fast_seconds']:.1f} s ({fast['fast_samples_per_s']:,.0f} samples/s), "
        f"naive {fast['naive_seconds']:.1f} s ({fast['naive_samples_per_s']:,.0f} samples/s): "
        f"{fast['speedup']:.1f}x, receptive field {fast['receptive_field']}"
    )
    print(f"\n(c) {cond['clips']} clips of {cond['seconds_each']} s heard by the classifier")
    print(
        f"  as the asked digit: {cond['accuracy']:.1%} vs chance 10% (p = "
        f"{cond['p_value_vs_chance']:.2g}, asked digits shuffled); classifier on real test "
        f"recordings {cond['classifier_real_test_accuracy']:.1%}, mu-law round-tripped "
        f"{cond['classifier_mulaw_test_accuracy']:.1%}"
    )
    print("  confusion (rows: asked digit, columns: heard digit)")
    for digit, row in enumerate(cond["confusion"]):
        print(f"  {digit}: " + " ".join(f"{n:2d}" for n in row))
    print(f"  clips: {cond['samples_dir']}; load average now {load_average()}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs-dir", default="runs", help="run folders and samples go here")
    parser.add_argument(
        "--wavenet", help="a finished WaveNet run to score instead of training (--seeds unused)"
    )
    parser.add_argument("--classifier", help="a trained spectrogram_cnn run (default: train one)")
    parser.add_argument("--clips-per-digit", type=int, default=CLIPS_PER_DIGIT)
    parser.add_argument("--temperature", type=float, default=TEMPERATURE)
    parser.add_argument("--speed-samples", type=int, default=SPEED_SAMPLES)
    parser.add_argument("--speed-runs", type=int, default=SPEED_RUNS)
    parser.add_argument(
        "--train", type=json.loads, default={},
        help='TrainConfig overrides as JSON, e.g. \'{"time_budget": "3m"}\'',
    )  # fmt: skip
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    runs_dir = Path(args.runs_dir)
    # Generation runs on the training's threads too (the trainer sets them only when it
    # trains; --wavenet skips it).
    torch.set_num_threads(int({**TRAIN, **args.train}["threads"] or torch.get_num_threads()))
    started, load_before = time.perf_counter(), load_average()
    data = datasets.load("fsdd-mulaw", **{**DATASET_ARGS, **args.train.get("dataset_args", {})})
    if args.wavenet:
        trained = [trained_wavenet(Path(args.wavenet))]
    else:
        trained = [train_wavenet(seed, data, runs_dir, args.train) for seed in args.seeds]
    rows, model = [row for row, _ in trained], trained[0][1]
    result: dict[str, Any] = {
        "config": {**TRAIN, **args.train}, "seeds": rows,
        "likelihood": likelihood_summary(rows, unigram_nll(data)),
        "speed": speed(model, args.speed_samples, args.speed_runs),
    }  # fmt: skip
    classifier = Path(args.classifier) if args.classifier else train_classifier(runs_dir)
    samples_dir = runs_dir / "wavenet-samples"
    result["conditioning"] = conditioning(model, classifier, samples_dir, args)
    result["machine"] = {
        "cpu_count": os.cpu_count(), "load_before": load_before, "load_after": load_average(),
        "wall_seconds": time.perf_counter() - started,
    }  # fmt: skip
    print_report(result)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
