"""LeNet-5 (LeCun et al., 1998) from the NumPy reference layers, trained on scikit-learn's digits."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cnnlab.reference.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from cnnlab.reference.model import SGD, Sequential
from cnnlab.reference.ops import softmax_cross_entropy, softmax_cross_entropy_backward


def lenet5(rng: np.random.Generator, num_classes: int = 10) -> Sequential:
    """LeNet-5's layout (6 and 16 5x5 filters, then 120-84-classes) for 16x16 grey inputs.

    The paper feeds 32x32 images. Digits are 8x8, so we upsample them to 16x16 and pad
    both convolutions by 2 so they keep the size: after C1 (16x16), S2 (8x8), C3 (8x8) and
    S4 (4x4) the head sees 16*4*4 = 256 features instead of the paper's 16*5*5 = 400
    (without C3's padding the head would see only 2x2 maps and test accuracy drops to
    ~95%). Training at 16x16 takes ~10 s; 32x32 would take ~4x as long. We use ReLU and max pooling
    rather than the paper's scaled tanh and trainable subsampling: they train faster with
    plain SGD, and the other layers are here for anyone who wants the original.
    """
    return Sequential(
        Conv2d(1, 6, 5, rng, padding=2),  # C1: (N, 6, 16, 16)
        ReLU(),
        MaxPool2d(2),  # S2: (N, 6, 8, 8)
        Conv2d(6, 16, 5, rng, padding=2),  # C3: (N, 16, 8, 8)
        ReLU(),
        MaxPool2d(2),  # S4: (N, 16, 4, 4)
        Flatten(),  # (N, 256)
        Linear(16 * 4 * 4, 120, rng),  # C5
        ReLU(),
        Linear(120, 84, rng),  # F6
        ReLU(),
        Linear(84, num_classes, rng),  # output
    )


@dataclass
class DigitsConfig:
    """Hyperparameters for :func:`train_lenet_digits`, with the reason for each default."""

    epochs: int = 12  # 99.2% test accuracy with seed 0, 98.6% with seed 1 (measured)
    batch_size: int = 32  # 45 steps per epoch over 1437 training images
    lr: float = 0.01  # 0.02 also works; 0.05 diverges with momentum 0.9
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0  # drives the split, the init and the shuffling


@dataclass
class DigitsResult:
    """Outcome of one training run."""

    test_accuracy: float
    final_train_loss: float
    seconds: float


def load_digits_16x16(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, upsampled to 16x16, standardised, split 80/20 (stratified).

    Returns:
        (x_train, y_train, x_test, y_test), images shaped (N, 1, 16, 16).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype(np.float64) / 16.0  # (1797, 8, 8), pixel values 0..16
    x = x.repeat(2, axis=1).repeat(2, axis=2)[:, None]  # nearest-neighbour -> (1797, 1, 16, 16)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=0.2, stratify=digits.target, random_state=seed
    )
    mean, std = x_tr.mean(), x_tr.std()  # training statistics only
    return (x_tr - mean) / std, y_tr, (x_te - mean) / std, y_te


def accuracy(model: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Fraction of images whose highest logit is the true class (eval mode)."""
    model.eval()
    hits = sum(
        int((model.forward(x[i : i + batch_size]).argmax(axis=1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return hits / len(x)


def train_lenet_digits(config: DigitsConfig | None = None) -> DigitsResult:
    """Train :func:`lenet5` with SGD on the digits and report test accuracy and wall time."""
    cfg = config or DigitsConfig()
    start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_digits_16x16(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = lenet5(rng)
    opt = SGD(model.params(), model.grads(), cfg.lr, cfg.momentum, cfg.weight_decay)
    loss = float("nan")
    for _ in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(x_tr))
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            logits = model.forward(x_tr[idx])  # 1. forward
            loss, probs = softmax_cross_entropy(logits, y_tr[idx])  # 2. loss
            model.backward(softmax_cross_entropy_backward(probs, y_tr[idx]))  # 3. backward
            opt.step()  # 4. update
    return DigitsResult(accuracy(model, x_te, y_te), loss, time.perf_counter() - start)
