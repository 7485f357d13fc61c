"""Claim: cnnlab's Trainer.fit costs <=3% against a hand-written PyTorch loop.

Both train the same model (resnet_mini, fp32, channels_last) on the same in-memory
Fashion-MNIST images with the same batch size, optimizer and schedule; neither
augments. Runs alternate (hand, cnnlab, hand, cnnlab, ...) so machine noise hits
both alike; we report the median images/second of each and their ratio.

    .venv/bin/python benchmarks/trainer_overhead.py [--repeats 5] [--batches 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
from torch import nn

from cnnlab import TrainConfig, Trainer, create_model
from cnnlab.data import load
from cnnlab.data.dataset import ImageDataset

BATCH = 128


def hand_loop(data: ImageDataset, batches: int, seed: int) -> float:
    """The loop a PyTorch user writes by hand; returns images/second."""
    torch.manual_seed(seed)
    model = create_model("resnet_mini").to(memory_format=torch.channels_last)
    mean, std = data.channel_stats()
    mean_t, std_t = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.1, total_steps=batches, pct_start=0.25
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    g = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    order = torch.randperm(len(data.x_train), generator=g)
    for i in range(batches):
        idx = order[i * BATCH : (i + 1) * BATCH]
        x = ((data.x_train[idx].float() / 255 - mean_t) / std_t).contiguous(
            memory_format=torch.channels_last
        )
        loss = loss_fn(model(x), data.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return batches * BATCH / (time.perf_counter() - start)


def cnnlab_fit(data: ImageDataset, batches: int, seed: int) -> float:
    """Trainer.fit with the same settings, one epoch limited to ``batches``; images/second."""
    torch.manual_seed(seed)
    model = create_model("resnet_mini")
    with tempfile.TemporaryDirectory() as runs:
        config = TrainConfig(
            runs_dir=runs, epochs=1, batch_size=BATCH, limit_batches=batches, augment="none",
            seed=seed, progress=False, lr=0.1, channels_last=True,  # as the hand loop
        )  # fmt: skip
        trainer = Trainer(model, config, log=lambda _: None)
        history = trainer.fit(data)
    # The epoch's own clock: the loop only, like the hand loop's (not setup or checkpoint).
    return history[0]["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load("fashion-mnist")
    hand_loop(data, 5, 0)  # warm up oneDNN kernels for both
    hand, ours = [], []
    for r in range(args.repeats):
        hand.append(hand_loop(data, args.batches, r))
        ours.append(cnnlab_fit(data, args.batches, r))
        print(f"repeat {r + 1}: hand {hand[-1]:7.0f} img/s   cnnlab {ours[-1]:7.0f} img/s")
    ratios = [o / h for o, h in zip(ours, hand, strict=True)]
    result = {
        "hand_median": statistics.median(hand),
        "cnnlab_median": statistics.median(ours),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "repeats": args.repeats,
        "batches": args.batches,
        "threads": args.threads,
    }
    print(
        f"hand loop {result['hand_median']:.0f} img/s, cnnlab fit {result['cnnlab_median']:.0f} "
        f"img/s, ratio {result['ratio_median']:.3f} (pairs {result['ratio_min']:.3f}.."
        f"{result['ratio_max']:.3f})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
