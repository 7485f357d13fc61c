"""The reliability suite (`make reliability`, run by CI): what long runs meet, tried for
real, and one table of what was lost (it must be nothing).

1. SIGKILL at random moments of a training run (a subprocess), some aimed at checkpoint
   writes (the kill lands while the checkpoint's temp file exists): after each, every
   checkpoint on disk must load, and the run resumed (`--resume`) to the end must hold
   weights bit-identical to an uninterrupted run's.
2. A full disk during a checkpoint save (the write fails with ENOSPC): the previous
   checkpoint stays intact and loadable, and the error says so.
3. A NaN loss: training stops, names the step, and keeps the last good checkpoint.
4. Tampered and truncated weight files, and a pickle payload renamed as weights: typed
   errors naming the file; the payload never executes.
5. The serving limits (tests/app/test_serve.py): bad uploads, body limits, 429, 504.

    .venv/bin/python tests/reliability.py --kills 20
"""

from __future__ import annotations

import argparse
import errno
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SPEC = "layers:\n  - conv: {out: 8, padding: 1}\n  - relu\n  - maxpool: 2\n"
EPOCHS = 40


def train_command(runs: Path, name: str, resume: bool = False) -> list[str]:
    command = [sys.executable, "-m", "cnnlab.app.cli", "train", "--model", str(runs / "net.yaml"),
               "--dataset", "digits", "--epochs", str(EPOCHS), "--batch-size", "32", "--runs-dir",
               str(runs), "--name", name, "--no-progress", "--no-report", "--threads", "1",
               "--no-autotune", "--seed", "3"]  # fmt: skip
    return [*command, "--resume"] if resume else command


def weights(run: Path) -> dict[str, torch.Tensor]:
    from cnnlab.core.io import load_tensors

    return load_tensors(run / "model.safetensors")[0]


def kill_once(
    runs: Path, name: str, aim_at_write: bool, target_write: int, moment: float
) -> tuple[bool, bool, int]:
    """Start the training run ``name`` afresh and SIGKILL it at the ``target_write``-th
    checkpoint temp file seen, or ``moment`` seconds after its start. Returns whether the
    kill landed, whether a checkpoint write was under way, and how many writes were seen."""
    run = runs / name
    shutil.rmtree(run, ignore_errors=True)
    proc = subprocess.Popen(
        train_command(runs, name), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    started = time.monotonic()
    writes: set[str] = set()
    during_write = False
    while proc.poll() is None:
        temps = set()
        if run.exists():
            temps = {p.name for p in run.iterdir() if p.name.startswith(".checkpoint")}
        writes |= temps
        due = len(writes) >= target_write if aim_at_write else time.monotonic() - started > moment
        if due:
            during_write = bool(temps)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0002 if aim_at_write else 0.005)
    proc.wait()
    return proc.returncode == -signal.SIGKILL, during_write, len(writes)


def kill_and_resume(
    runs: Path,
    reference: dict[str, torch.Tensor],
    i: int,
    aim_at_write: bool,
    span: tuple[float, float],
) -> dict[str, Any]:
    """One kill: at a random moment of training (``span``: seconds after the start), or
    aimed at a random checkpoint write (the n-th temp file seen). Returns what happened
    and what was lost."""
    from cnnlab.engine.checkpoint import load_checkpoint

    name = f"kill-{i}"
    run = runs / name
    moment = random.uniform(*span)
    target_write = random.randint(1, EPOCHS - 1)
    # A run that ends before its kill (a faster machine, a write too quick to see) is tried
    # again, sooner: the table counts kills that happened, and CI needs all of them.
    killed, during_write, seen = kill_once(runs, name, aim_at_write, target_write, moment)
    retries = 0
    while not killed and retries < 7:
        retries += 1
        moment *= 0.6
        target_write = max(1, min(target_write, seen) // 2)
        killed, during_write, seen = kill_once(runs, name, aim_at_write, target_write, moment)
    lost: list[str] = []
    checkpoint = run / "checkpoint.safetensors"
    epoch = None
    if checkpoint.exists():
        try:
            epoch = int(load_checkpoint(checkpoint)["epoch"])
        except Exception as e:  # a checkpoint that does not load is a loss
            lost.append(f"checkpoint does not load: {e}")
    resume = checkpoint.exists()
    done = subprocess.run(train_command(runs, name, resume=resume), capture_output=True, text=True)
    if done.returncode != 0:
        lost.append(f"resume failed: {done.stderr[-300:]}")
    else:
        got = weights(run)
        if set(got) != set(reference) or any(
            not torch.equal(got[k], reference[k]) for k in reference
        ):
            lost.append("resumed weights differ from the uninterrupted run's")
    if any(p.name.endswith(".tmp") for p in run.iterdir()):
        lost.append("a temp file was left behind after the resume")
    return {
        "killed": killed,
        "retries": retries,
        "during_write": during_write,
        "epoch": epoch,
        "lost": lost,
    }


def full_disk(runs: Path) -> list[str]:
    """The third checkpoint write fails with ENOSPC; the second must stay intact."""
    import cnnlab.core.io as io
    from cnnlab.core.errors import CheckpointError
    from cnnlab.engine.checkpoint import load_checkpoint
    from cnnlab.engine.config import TrainConfig
    from cnnlab.runs import run_training

    real_mkstemp, real_fdopen = io.tempfile.mkstemp, io.os.fdopen
    seen = {"name": "", "checkpoints": 0}

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)
        seen["name"] = name
        return fd, name

    class Full:
        """A file on a full disk: every write fails."""

        def __init__(self, f: Any) -> None:
            self.f = f

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        f = real_fdopen(fd, *args, **kwargs)
        if Path(str(seen["name"])).name.startswith(".checkpoint"):
            seen["checkpoints"] = int(seen["checkpoints"]) + 1
            if seen["checkpoints"] == 3:
                return Full(f)
        return f

    config = TrainConfig(name="disk", runs_dir=str(runs), model=str(runs / "net.yaml"), dataset="digits",
                         epochs=5, progress=False, report=False, threads=1, autotune=False)  # fmt: skip
    io.tempfile.mkstemp, io.os.fdopen = mkstemp, fdopen  # type: ignore[assignment]
    lost = []
    try:
        run_training(config)
        lost.append("the failed write went unnoticed")
    except CheckpointError as e:
        if "No space left" not in str(e) or "intact" not in str(e):
            lost.append(f"the error does not say what happened: {e}")
    finally:
        io.tempfile.mkstemp, io.os.fdopen = real_mkstemp, real_fdopen  # type: ignore[assignment]
    try:
        if int(load_checkpoint(runs / "disk" / "checkpoint.safetensors")["epoch"]) != 2:
            lost.append("the previous checkpoint is not the second epoch's")
    except Exception as e:
        lost.append(f"the previous checkpoint does not load: {e}")
    if any(p.name.endswith(".tmp") for p in (runs / "disk").iterdir()):
        lost.append("a temp file was left behind")
    return lost


def nan_loss(runs: Path) -> list[str]:
    from cnnlab.core.errors import TrainingDivergedError
    from cnnlab.engine.callbacks import Callback
    from cnnlab.engine.checkpoint import load_checkpoint
    from cnnlab.engine.config import TrainConfig
    from cnnlab.runs.run import train_one

    class Poison(Callback):
        def before_batch(self, trainer: Any) -> None:
            if trainer.epoch == 3 and trainer.batch == 5:
                with torch.no_grad():
                    next(trainer.model.parameters()).fill_(float("nan"))

    config = TrainConfig(name="nan", runs_dir=str(runs), model=str(runs / "net.yaml"), dataset="digits",
                         epochs=6, progress=False, report=False, threads=1, autotune=False)  # fmt: skip
    lost = []
    try:
        train_one(config, callbacks=[Poison()])
        lost.append("a NaN loss went unnoticed")
    except TrainingDivergedError as e:
        if "epoch 4, batch 6" not in str(e) or "last good checkpoint" not in str(e):
            lost.append(f"the error does not name the step and the checkpoint: {e}")
    state = load_checkpoint(runs / "nan" / "checkpoint.safetensors")
    if int(state["epoch"]) != 3 or not all(
        torch.isfinite(v).all() for v in state["model"].values()
    ):
        lost.append("the last good checkpoint was not kept")
    return lost


def damaged_files(runs: Path) -> tuple[int, list[str]]:
    from cnnlab.core.errors import CheckpointError
    from cnnlab.models.saved import load

    source = runs / "kill-0"
    cases, lost = 0, []
    marker = runs / "PAYLOAD_RAN"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    payloads = {
        "truncated": lambda b: b[: len(b) // 2],
        "tampered (one byte of the data flipped)": lambda b: (
            b[:-10] + bytes([b[-10] ^ 0xFF]) + b[-9:]
        ),
        "header garbage": lambda b: b"\xff" * 16 + b[16:],
        "a pickle payload renamed as weights": lambda b: pickle.dumps(Payload()),
        "empty": lambda b: b"",
    }
    for what, damage in payloads.items():
        cases += 1
        folder = runs / f"damaged-{cases}"
        folder.mkdir()
        for f in ("config.json", "model.safetensors"):
            (folder / f).write_bytes((source / f).read_bytes())
        (folder / "model.safetensors").write_bytes(
            damage((source / "model.safetensors").read_bytes())
        )
        try:
            load(folder)
            lost.append(f"{what}: loaded without an error")
        except CheckpointError as e:
            if "model.safetensors" not in str(e):
                lost.append(f"{what}: the error does not name the file: {e}")
        except Exception as e:
            lost.append(f"{what}: untyped error {type(e).__name__}: {e}")
    if marker.exists():
        lost.append("the pickle payload executed")
    return cases, lost


def serving_limits() -> tuple[int, list[str]]:
    tests = ROOT / "tests" / "app" / "test_serve.py"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", str(tests), "-k",
                           "bad_uploads or body_limit or multipart or deadline or 429 or batcher"],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    passed = int(last.split(" passed")[0].split()[-1]) if " passed" in last else 0
    return passed, ([] if done.returncode == 0 else [last])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    random.seed(args.seed)
    rows: list[tuple[str, int, str]] = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        (runs / "net.yaml").write_text(SPEC)
        started = time.monotonic()
        reference_run = subprocess.run(
            train_command(runs, "reference"), capture_output=True, text=True
        )
        assert reference_run.returncode == 0, reference_run.stderr[-2000:]
        total = time.monotonic() - started
        reference = weights(runs / "reference")
        span = (0.45 * total, 0.9 * total)  # training fills the end, after imports and loading
        results = [kill_and_resume(runs, reference, i, i % 2 == 1, span) for i in range(args.kills)]
        killed = sum(r["killed"] for r in results)
        writes = sum(r["during_write"] for r in results)
        lost = [x for r in results for x in r["lost"]]
        before = sum(r["epoch"] is None for r in results)
        retries = sum(r["retries"] for r in results)
        rows.append((f"SIGKILL during training ({writes} during a checkpoint write, {before} before the "
                     f"first checkpoint was on disk; {retries} runs ended before their kill and were rerun), "
                     "then --resume: checkpoints load, bit-identical",
                     killed, "; ".join(lost) or "nothing"))  # fmt: skip
        failed |= bool(lost) or killed < args.kills
        for what, check in (("full disk during a checkpoint save (ENOSPC)", full_disk),
                            ("NaN loss at epoch 4, batch 6", nan_loss)):  # fmt: skip
            lost_here = check(runs)
            rows.append((what, 1, "; ".join(lost_here) or "nothing"))
            failed |= bool(lost_here)
        cases, lost_here = damaged_files(runs)
        rows.append(("truncated / tampered / garbage / empty / pickle-payload weights", cases,
                     "; ".join(lost_here) or "nothing"))  # fmt: skip
        failed |= bool(lost_here)
    passed, lost_here = serving_limits()
    rows.append(
        (
            "serving limits (bad uploads, body caps, 429, 504): tests",
            passed,
            "; ".join(lost_here) or "nothing",
        )
    )
    failed |= bool(lost_here)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'what was tried':<{width}}  times  lost")
    for what, times, lost_text in rows:
        print(f"{what:<{width}}  {times:>5}  {lost_text}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
