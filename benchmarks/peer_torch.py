"""Peer worker: the seed-000 network in plain PyTorch, the loop a user writes by hand.

Its own nn.Sequential (not cnnlab's model), NCHW fp32 in eager mode, PyTorch's default
initialisation, images pre-scaled to 0..1 in memory and a shuffled-index loop over them.
Imports no cnnlab. Prints one JSON line.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

import peer_common


def seed_net(num_classes: int = 10) -> nn.Sequential:
    """The seed's network for 28x28x1 inputs: 28 -> 28 -> 26 -> 13 -> 13 -> 11 -> 5."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * 5 * 5, 512), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(512, num_classes),
    )  # fmt: skip


def train_epoch(
    model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, batch: int
) -> None:
    model.train()
    order = torch.randperm(len(x))
    for i in range(0, len(x), batch):
        idx = order[i : i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum(
        int((model(xb).argmax(1) == yb).sum())
        for xb, yb in zip(x.split(1000), y.split(1000), strict=True)
    )
    return correct / len(x)


def main() -> None:
    args = peer_common.parse_args(__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = {k: torch.from_numpy(v) for k, v in peer_common.load_npz(args.data).items()}
    x_train, y_train = data["x_train"].float() / 255, data["y_train"].long()
    x_test, y_test = data["x_test"].float() / 255, data["y_test"].long()
    model = seed_net()
    if args.optimizer == "rmsprop":
        opt: torch.optim.Optimizer = torch.optim.RMSprop(
            model.parameters(), lr=args.lr, alpha=peer_common.RMSPROP_RHO
        )
    else:
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    seconds = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        train_epoch(model, opt, x_train, y_train, args.batch_size)
        seconds.append(time.perf_counter() - started)
    images = args.epochs * len(x_train)
    peer_common.emit(
        {
            "peer": "torch",
            "images": images,
            "train_seconds": sum(seconds),
            "fit_seconds": sum(seconds),
            "images_per_second": images / sum(seconds),
            "test_accuracy": accuracy(model, x_test, y_test),
            "versions": {"torch": torch.__version__},
        }
    )


if __name__ == "__main__":
    main()
