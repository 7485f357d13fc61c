"""Data-parallel training on the existing engine: PyTorch DDP, gloo on CPU, NCCL on CUDA.

``cnnlab train --nproc N`` starts N processes on this machine (``torch.multiprocessing``,
spawn); under ``torchrun`` (several machines) each process is one rank already and
reads its rank from the environment. Per rank:

- one torch thread unless ``threads`` says otherwise;
- the model wrapped in ``DistributedDataParallel``: gradients are averaged across ranks
  in backward, so every rank holds the same weights after every step (checked: a weight
  checksum is compared across the ranks after each step, and a difference stops the run);
- the data: every rank draws the same epoch permutation and augments the same global
  batch of ``batch_size`` images (the loader's generator is seeded alike), then keeps its
  own contiguous ``batch_size / N`` slice of it. This shards each epoch as PyTorch's
  ``DistributedSampler`` with ``set_epoch`` would, and it also makes N processes compute
  what one process does with the same global batch: on a model without BatchNorm the
  weights agree to float rounding (a test checks 1e-5);
- BatchNorm: SyncBatchNorm does not run on CPU in torch 2.13. Each rank normalises with
  the statistics of its own slice, and DDP broadcasts rank 0's running statistics to
  the others at every forward (``broadcast_buffers``), so the saved model carries rank
  0's;
- rank 0 alone writes the run folder; checkpoints are written by rank 0 after a barrier
  (atomically, as always), and every rank resumes from that file;
- evaluation: validation runs on every rank over the whole validation split (the
  ranks agree on plateau schedules and early stopping without talking), and the test
  split is evaluated once, on rank 0: each test image counted exactly once;
- CPU settings: no autotuning (ranks timing candidates side by side would choose
  differently); fp32 eager unless channels_last / bf16 are set; no torch.compile.

If a rank dies (killed, out of memory), the launcher stops the others and says which
rank failed; ``--resume`` continues from the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cnnlab.core.errors import CnnlabError, ConfigError


class RankFailed(CnnlabError):
    """A rank of a distributed run stopped; the others were stopped too."""


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def under_torchrun() -> bool:
    """True in a process torchrun started (it sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized()


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_env(timeout: float = 120.0) -> None:
    """Join the process group torchrun describes (MASTER_ADDR, MASTER_PORT, RANK, ...)."""
    dist.init_process_group(backend(), timeout=datetime.timedelta(seconds=timeout))


def check_agree(model: torch.nn.Module, step: int) -> None:
    """RankFailed unless every rank holds the same weights (a float64 checksum, compared
    exactly: one scalar all_gather per step)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        sums = [float(g) for g in gathered]
        raise RankFailed(f"the ranks hold different weights after step {step}: checksums {sums}")


def destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def check_config(config: Any, world: int) -> None:
    """ConfigError for what a distributed run cannot do, before any rank starts."""
    if config.batch_size % world:
        raise ConfigError(
            f"Expected batch_size divisible by the {world} processes, received "
            f"batch_size={config.batch_size}"
        )
    if config.time_budget not in (None, "none"):
        raise ConfigError(
            f"a distributed run trains for a number of epochs; received time_budget="
            f"{config.time_budget!r}, set it to none"
        )
    if config.ensemble > 1:
        raise ConfigError(
            "--nproc trains one model on several processes; --ensemble trains several"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, config: Any, resume: bool, data: Any, port: int, world: int) -> None:
    from cnnlab.runs.run import train_one

    dist.init_process_group(
        backend(), init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )  # fmt: skip
    try:
        quiet = dataclasses.replace(config, progress=config.progress and rank == 0)
        log = print if rank == 0 else (lambda line: None)
        train_one(quiet, resume=resume, data=data, log=log)
    finally:
        dist.destroy_process_group()


def launch(config: Any, *, resume: bool = False, data: Any = None) -> dict[str, Any]:
    """Train ``config`` on ``config.nproc`` processes of this machine; rank 0's metrics.

    Raises:
        RankFailed: a rank exited (its exit code or signal named); the others were stopped.
    """
    world = config.nproc
    check_config(config, world)
    print(f"distributed: {world} processes ({backend()}), batch {config.batch_size} = "
          f"{world} x {config.batch_size // world}", flush=True)  # fmt: skip
    try:
        mp.start_processes(
            _worker, args=(config, resume, data, _free_port(), world), nprocs=world,
            join=True, start_method="spawn",
        )  # fmt: skip
    except mp.ProcessExitedException as e:
        checkpoint = config.run_dir / "checkpoint.safetensors"
        kept = (
            f"the last checkpoint is {checkpoint}"
            if checkpoint.exists()
            else "no checkpoint was written yet"
        )
        raise RankFailed(
            f"rank {e.error_index} of {world} stopped ({e}); the other ranks were stopped. "
            f"{kept}; continue with --resume"
        ) from None
    except mp.ProcessRaisedException as e:
        last = str(e).strip().splitlines()[-1]
        raise RankFailed(
            f"a rank of {world} raised: {last}; the other ranks were stopped"
        ) from None
    result: dict[str, Any] = json.loads((config.run_dir / "metrics.json").read_text())
    return result
