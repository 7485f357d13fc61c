"""Question (issue 6): on 2 cores, do two 1-thread processes under PyTorch DDP (gloo, each
on half the batch) train faster than one process with 2 intra-op threads?

Two single-thread training runs side by side do more images per second together than
one 2-thread run, so data parallelism looked like free speed. This measures it on the
default model (`resnet_mini`, channels_last, batch 128 in all), alternating the two
sides each round: the 2-thread process, then 2 DDP ranks of 64 images each, which
all-reduce their gradients every step. It prints images/second of each and their ratio.

    .venv/bin/python benchmarks/data_parallel.py [--rounds 3] [--steps 60] [--bf16]

With ``--bf16`` both sides train under bf16 autocast (what the tuner picks on AMX CPUs).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import cnnlab
from cnnlab.engine.bench import make_train_step
from cnnlab.engine.config import TrainConfig

BATCH = 128
WARMUP = 5  # untimed steps: oneDNN picks its kernels on the first calls


def timed_steps(model: nn.Module, batch: int, steps: int, bf16: bool) -> float:
    """Seconds for ``steps`` training steps on one fixed random batch, after a warm-up.

    The step is `cnnlab bench`'s: the default TrainConfig's optimizer and loss, NHWC.
    """
    step = make_train_step(model, (1, 28, 28), batch, 10, TrainConfig(bf16=bf16))
    for _ in range(WARMUP):
        step()
    if dist.is_initialized():
        dist.barrier()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - started


def make_model() -> nn.Module:
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet_mini", num_classes=10)
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def rank_main(rank: int, world: int, store: str, steps: int, bf16: bool, out: Any) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    model = nn.parallel.DistributedDataParallel(make_model())
    seconds = timed_steps(model, BATCH // world, steps, bf16)
    if rank == 0:
        out.put(seconds)
    dist.destroy_process_group()


def data_parallel_seconds(steps: int, bf16: bool, world: int = 2) -> float:
    context = mp.get_context("spawn")
    out = context.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "store")
        ranks = [
            context.Process(target=rank_main, args=(r, world, store, steps, bf16, out))
            for r in range(world)
        ]
        for p in ranks:
            p.start()
        seconds = out.get()
        for p in ranks:
            p.join()
    return float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--bf16", action="store_true", help="both sides under bf16 autocast")
    args = parser.parse_args()
    ratios = []
    for r in range(args.rounds):
        torch.set_num_threads(2)
        single = timed_steps(make_model(), BATCH, args.steps, args.bf16)
        ddp = data_parallel_seconds(args.steps, args.bf16)
        ratios.append(single / ddp)
        images = BATCH * args.steps
        print(
            f"round {r}: 1 process x 2 threads {images / single:.0f} img/s; "
            f"2 DDP processes x 1 thread {images / ddp:.0f} img/s; ratio {single / ddp:.2f}",
            flush=True,
        )
    print(f"median ratio (DDP over threads) {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
