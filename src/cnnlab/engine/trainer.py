"""The training loop: fit, evaluate, predict — explicit, in numbered steps."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from cnnlab.core.errors import (
    CheckpointError,
    ConfigError,
    ShapeMismatchError,
    TrainingDivergedError,
)
from cnnlab.core.io import atomic_write_text, write_json
from cnnlab.core.records import record_of, set_record
from cnnlab.core.rundir import RunDir
from cnnlab.data.augment import build_augment
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.loader import BatchLoader, Normalize
from cnnlab.engine import autotune, budget, distributed, evaluator, finetune, lr_find
from cnnlab.engine.callbacks import Callback, EarlyStopping
from cnnlab.engine.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.ema import WeightEMA
from cnnlab.engine.history import epoch_line, history_csv, is_scalar
from cnnlab.engine.optim import Schedule, build_optimizer
from cnnlab.engine.step import TrainStep
from cnnlab.engine.whiten import MAX_IMAGES as MAX_WHITEN_IMAGES
from cnnlab.engine.whiten import whiten_first_conv
from cnnlab.tasks import Task, as_targets, get_task
from cnnlab.tasks.base import Targets
from cnnlab.transfer.freezing import GradualUnfreeze, keep_frozen_norms_eval

# Tuning costs a few seconds, once per model, shape and machine (the choice is cached);
# runs shorter than this use autotune.untuned_default instead.
MIN_TUNE_STEPS = 200


class Trainer:
    """Train a model for any task on an in-memory dataset.

    Args:
        model: any ``nn.Module`` whose outputs the task understands (classification:
            (B, C, H, W) images to (B, num_classes) logits).
        config: hyperparameters; see :class:`cnnlab.engine.config.TrainConfig`.
        task: what the model predicts; default: ``config.task``, else the dataset's.
        callbacks: extra :class:`Callback` objects, called in order.
        run_dir: where checkpoints and history go; defaults to ``config.run_dir``.
        log: where one-line messages go (epoch summaries, warnings).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        *,
        callbacks: Sequence[Callback] = (),
        run_dir: str | Path | None = None,
        log: Callable[[str], None] = print,
        task: Task | str | None = None,
    ) -> None:
        if config.ensemble > 1:
            raise ConfigError(
                f"Trainer trains one model, received ensemble={config.ensemble}; ensembles "
                "are trained by cnnlab.runs.run_training (or `cnnlab train`), which "
                "runs one Trainer per member"
            )
        self.model, self.config, self.log = model, config, log
        self.callbacks = list(callbacks)
        if config.early_stopping:
            self.callbacks.append(EarlyStopping(config.early_stopping))
        self.run_dir = Path(run_dir) if run_dir is not None else config.run_dir
        self.rank, self.world = distributed.rank_and_world()
        self.agreed_steps = 0  # distributed: steps after which the ranks' weights agreed
        self.saved_epoch: int | None = None  # the epoch of the checkpoint on disk
        self.save = not config.fast_dev_run and self.rank == 0  # rank 0 writes the run folder
        self.history: list[dict[str, float]] = []
        self.epoch = 0  # epochs completed
        self.batch = 0  # batch index within the current epoch
        self.global_step = 0  # optimizer steps taken
        self.steps_per_epoch = 0  # fit() sets it
        self.stop_training = False
        self.monitored_loss = float("inf")
        self.normalize = Normalize([0.0], [1.0])
        self.generator = torch.Generator().manual_seed(config.seed)
        # channels_last / bf16 / compile as used; fit() resolves the automatic (None) ones.
        self.cpu = autotune.Choice(autotune.CpuSettings.of(config), "config")
        self._forward: Callable[[torch.Tensor], torch.Tensor] = model
        self.ema: WeightEMA | None = None  # the weight average, when config.ema is set
        self.plan: budget.BudgetPlan | None = None  # a time budget's steps (config.time_budget)
        self.watch: budget.BudgetWatch | None = None
        self.unfreezer: GradualUnfreeze | None = None  # config.unfreeze_every
        self._task = task if task is not None else config.task
        self.task: Task = self._resolve_task(None)

    @property
    def files(self) -> RunDir:
        return RunDir(self.run_dir)

    @property
    def epochs(self) -> int:
        """Epochs this fit runs: a time budget's plan (which may be made again), else the
        config's (1 for fast_dev_run)."""
        if self.plan is not None:
            return self.plan.epochs
        return 1 if self.config.fast_dev_run else self.config.epochs

    @property
    def checkpoint_path(self) -> Path:
        return self.files.checkpoint

    def _resolve_task(self, data: ImageDataset | None) -> Task:
        """The task object (given, named by the config, or the dataset's default), bound to
        the model and, with ``data``, having checked that the data fit it."""
        chosen = self._task if self._task is not None else (data.task if data else "classify")
        if isinstance(chosen, Task):
            task = chosen
        else:
            options = {"label_smoothing": self.config.label_smoothing, **self.config.task_args}
            task = get_task(chosen, **options)
        task.bind(self.model)
        if data is not None:
            task.check_data(data)
        return task

    # -- fit -------------------------------------------------------------------------------

    def fit(self, data: ImageDataset, *, resume: bool = False) -> list[dict[str, float]]:
        """Train for ``config.epochs`` epochs; returns the history (one dict per epoch).

        With ``resume=True`` training continues from ``run_dir/checkpoint.safetensors``
        and ends with the same weights an uninterrupted run would have (same seed, CPU).
        """
        cfg = self.config
        # 1. Seed every source of randomness and fix the thread count.
        torch.manual_seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        # 2. Split, measure normalisation on the training part, check the data fit the
        #    task and the model fits the data.
        self.task = self._resolve_task(data)
        x_train, y_train, x_val, y_val = self._split(data)
        mean, std = data.channel_stats()
        self.normalize = Normalize(mean, std)
        self._check_fits(data)
        self._record(data, mean, std)
        self.unfreezer = finetune.apply_freezing(self.model, cfg, self.log)
        state = self._load_state() if resume else None
        if state is not None:
            self.saved_epoch = int(state["epoch"])
        if self.save and self.run_dir.exists():  # temp files of a write a kill cut short
            for stale in self.run_dir.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        self._resolve_cpu_settings(data, len(x_train), state)
        # 3. Loaders, the time budget's plan (if any), optimizer and schedule.
        train_loader = self._loader(x_train, y_train, data, self.generator)
        self.steps_per_epoch = len(train_loader)
        self.plan = self._plan_budget(data, x_train, y_train, x_val, state)
        self.optimizer = build_optimizer(finetune.parameters(self.model, cfg), cfg)
        total_steps = self.plan.total_steps if self.plan else None
        self.schedule = Schedule(self.optimizer, cfg, len(train_loader), total_steps)
        if cfg.whiten:  # before any EMA copy or restore: a resumed run loads the same values
            x = self.normalize(x_train[:MAX_WHITEN_IMAGES].to(torch.float32).div_(255))
            self.log(f"whitened and froze {whiten_first_conv(self.model, x)}")
        if cfg.ema:
            self.ema = WeightEMA(self.model, cfg.ema, cfg.ema_every)
        # The one training step (cnnlab.engine.step); the task builds the loss dict,
        # including a model's auxiliary heads (GoogLeNet) where it has them.
        self.step = TrainStep(
            self.model, self.task, self.optimizer, forward=self._forward,
            bf16=self.cpu.settings.bf16, grad_clip=cfg.grad_clip,
            after_update=self._after_update, check_loss=self._check_loss,
            accumulate=cfg.accumulate, log=self.log,
        )  # fmt: skip
        # 4. Pick up where a previous run stopped.
        if state is not None:
            self._restore(state)
        self._emit("before_fit")
        if self.plan is not None:  # earlier epochs of a resumed run count against the budget
            spent = sum(row["seconds"] for row in self.history)
            spent += self.epoch * self.plan.val_images * self.plan.eval_seconds_per_image
            self.watch = budget.BudgetWatch(
                self.plan, self.log, already=spent, steps=self.global_step
            )
        # 5. The loop: train an epoch, validate, record, checkpoint.
        while self.epoch < self.epochs and not self.stop_training:
            if self.watch is not None and not self._follow_budget():
                break
            self._emit("before_epoch")
            if self.unfreezer is not None:
                finetune.thaw(self.unfreezer, self.model, self.epoch, self.log)
            row = self._run_epoch(train_loader, x_val, y_val)
            self.history.append(row)
            self.epoch += 1
            self.log(epoch_line(row, self.epochs))
            self._emit("after_epoch")
            distributed.barrier()  # every rank has finished the epoch's steps
            if self.save:
                self._checkpoint()
        if self.watch is not None:
            self.watch.finish(self.global_step)
            if self.save:
                write_json(self.files.budget, self.watch.plan.to_dict())
        if self.ema is not None:  # from here on the model is the average
            self.ema.copy_to(self.model)
        if x_val is not None and y_val is not None:
            self._calibrate(x_val, y_val)
        self._emit("after_fit")
        return self.history

    def _run_epoch(
        self, loader: BatchLoader, x_val: torch.Tensor | None, y_val: Targets | None
    ) -> dict[str, float]:
        """Train one epoch, validate, step the per-epoch schedule; returns the history row."""
        started, steps_before = time.perf_counter(), self.global_step
        loader.epoch = self.epoch
        train_loss, train_metrics, seen = self._train_epoch(loader)
        seconds = time.perf_counter() - started
        row: dict[str, float] = {"epoch": self.epoch + 1, "train_loss": train_loss}
        row |= {f"train_{k}": v for k, v in train_metrics.items() if is_scalar(v)}
        row |= {
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "images_per_second": seen / seconds,
        }
        if x_val is not None and y_val is not None:
            val = self.evaluate(x_val, y_val)
            row |= {f"val_{k}": v for k, v in val.items() if k != "n" and is_scalar(v)}
        self.monitored_loss = row.get("val_loss", train_loss)
        self.schedule.after_epoch(self.monitored_loss)
        if self.watch is not None:
            self.watch.after_epoch(self.global_step, seconds, self.global_step - steps_before)
        return row

    def _follow_budget(self) -> bool:
        """Before an epoch of a budgeted run: False when the budget says stop. After the
        first epoch the plan may be made again; the schedule is then laid out anew."""
        assert self.watch is not None
        if self.watch.should_stop(self.global_step):
            self.stop_training = self.watch.stopped_early
            return False
        total = self.watch.replan(self.global_step)
        if total is not None:
            self._lay_schedule(total)
            if self.save:
                write_json(self.files.budget, self.watch.plan.to_dict())
        return True

    def _lay_schedule(self, total_steps: int) -> None:
        """A per-batch schedule laid over ``total_steps``, stepped to where the run is."""
        self.schedule = Schedule(self.optimizer, self.config, self.steps_per_epoch, total_steps)
        self.schedule.fast_forward(self.global_step)

    def _train_epoch(self, loader: BatchLoader) -> tuple[float, dict[str, float], int]:
        self.model.train()
        if self.config.freeze_bn:
            keep_frozen_norms_eval(self.model)
        metrics = self.task.train_metrics()
        loss_sum = torch.zeros((), dtype=torch.float64)
        seen = 0
        started = time.perf_counter()
        bar = tqdm(
            total=len(loader), desc=f"epoch {self.epoch + 1}", unit="batch", leave=False,
            disable=None if self.config.progress else True, dynamic_ncols=True,
        )  # fmt: skip
        with bar:
            for self.batch, (x, targets) in enumerate(loader):
                if self.watch is not None and self.watch.should_stop(self.global_step):
                    self.stop_training = self.watch.stopped_early
                    break
                self._emit("before_batch")
                losses, outputs = self.step(x, targets)
                self.global_step += 1
                if self.world > 1:
                    distributed.check_agree(self.model, self.global_step)
                    self.agreed_steps += 1
                self.schedule.after_batch()
                loss_sum += losses["loss"] * len(x)
                metrics.update(outputs, targets)
                seen += len(x)
                self._emit("after_batch")
                if self.batch % 20 == 0 or self.batch == len(loader) - 1:
                    rate = seen / max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix(
                        loss=f"{loss_sum.item() / seen:.4f}", img_s=f"{rate:.0f}", refresh=False
                    )
                bar.update(1)
        return loss_sum.item() / max(seen, 1), metrics.compute(), seen

    def _calibrate(self, x_val: torch.Tensor, y_val: Targets) -> None:
        """Let the task tune its decision rule on the validation split (multi-label
        thresholds); what it chooses is saved with the model."""
        calibrate = getattr(self.task, "calibrate", None)
        if calibrate is None:
            return
        outputs = evaluator.outputs(self.model, self.task, x_val, self._eval_settings())
        chosen = calibrate(outputs, y_val)
        record = record_of(self.model)
        if record is not None:
            record.task_args = {**record.task_args, **chosen}
        self.log(f"{self.task.name}: chose {', '.join(sorted(chosen))} on the validation split")

    def _after_update(self) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def _check_loss(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            self._diverged(float(loss.detach()))

    def _diverged(self, value: float) -> None:
        where = f"epoch {self.epoch + 1}, batch {self.batch + 1}"
        kept = (
            f"the last good checkpoint is {self.checkpoint_path} (epoch {self.epoch})"
            if self.save and self.checkpoint_path.exists()
            else "no checkpoint was written yet"
        )
        raise TrainingDivergedError(
            f"loss became {value} at {where}; training stopped and {kept}. "
            f"Try a lower lr (was {self.config.lr}), grad_clip, or a warm-up."
        )

    def lr_find(self, data: ImageDataset, **kwargs: Any) -> lr_find.LRFindResult:
        """The learning-rate range test on ``data`` with this trainer's model and config
        (cnnlab.engine.lr_find); the model is left as it was."""
        return lr_find.lr_find(self, data, **kwargs)

    # -- evaluate / predict -------------------------------------------------------------------

    def _eval_settings(self) -> evaluator.EvalSettings:
        cfg = self.config
        return evaluator.EvalSettings(
            self.normalize, cfg.eval_batch_size, cfg.tta, self.cpu.settings.bf16,
            self.cpu.settings.channels_last, 1 if cfg.fast_dev_run else cfg.limit_eval_batches,
        )  # fmt: skip

    def _weights(self) -> contextlib.AbstractContextManager[Any]:
        """The weight average swapped in while evaluating, when ``ema`` is on."""
        return self.ema.swapped_in(self.model) if self.ema else contextlib.nullcontext()

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The task's scores for inputs (classification: probabilities (N, num_classes))."""
        outputs = evaluator.outputs(
            self.model, self.task, images, self._eval_settings(), self._weights()
        )
        return self.task.scores(outputs)

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor | Targets) -> dict[str, float]:
        """Mean loss (no label smoothing), the task's metrics and ``n`` on held-out data.

        ``labels`` is a tensor of class ids or a dict of targets (as the dataset holds).
        """
        return evaluator.evaluate(
            self.model, self.task, images, as_targets(labels), self._eval_settings(),
            self._weights(),
        )  # fmt: skip

    # -- helpers ---------------------------------------------------------------------------

    def _resolve_cpu_settings(
        self, data: ImageDataset, n_train: int, state: dict[str, Any] | None
    ) -> None:
        """Pick channels_last / bf16 / compile (see cnnlab.engine.autotune), say which, apply."""
        self.cpu = self.choose_cpu_settings(data, n_train, state)
        self.log(self.cpu.message())
        if self.cpu.settings.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # Only the training forward is compiled; self.model keeps plain state_dict keys.
        self._forward = torch.compile(self.model) if self.cpu.settings.compile else self.model
        if self.world > 1:  # gradients averaged across the ranks in backward
            from torch.nn.parallel import DistributedDataParallel

            self._forward = DistributedDataParallel(self.model)
        if self.save:
            write_json(self.files.cpu_settings, self.cpu.to_dict())

    def choose_cpu_settings(
        self, data: ImageDataset, n_train: int | None = None, state: dict[str, Any] | None = None
    ) -> autotune.Choice:
        """The CPU settings this run would use (tuned and cached if need be), not applied.

        An ensemble calls it once before its members start, so that they all find the
        same cached choice instead of each timing its own under the others' load.
        """
        cfg = self.config
        if self.world > 1:  # ranks must compute alike: no timing side by side
            settings = autotune.CpuSettings.of(cfg)
            plain = dataclasses.replace(settings, compile=False)
            return autotune.Choice(plain, f"distributed ({self.world} ranks): no tuning")
        if n_train is None:
            n_train = train_images(data, cfg.val_split)
        task = self._resolve_task(data)
        batches = n_train // cfg.batch_size
        if cfg.limit_batches:
            batches = min(batches, cfg.limit_batches)
        run_steps = batches * cfg.epochs
        why_not = None  # quick checks never pay for tuning; they use a cached choice if any
        if cfg.fast_dev_run or cfg.limit_batches:
            why_not = "fast_dev_run" if cfg.fast_dev_run else "limit_batches is set"
        elif run_steps < MIN_TUNE_STEPS:
            why_not = f"{run_steps} steps are too few to repay tuning (<{MIN_TUNE_STEPS})"
        saved = state.get("cpu_settings") if state is not None else None
        return autotune.resolve(
            cfg, self.model, data.input_shape, data.num_classes,
            run_steps=run_steps, no_tuning=why_not, saved=saved, task=task,
            run_seconds=budget.parse_duration(cfg.time_budget),
            targets={k: v[: cfg.batch_size] for k, v in data.targets_train.items()},
            inputs=_timing_inputs(data.x_train[: cfg.batch_size]),
        )  # fmt: skip

    def _loader(
        self, x: torch.Tensor, y: Targets, data: ImageDataset, generator: torch.Generator
    ) -> BatchLoader:
        """The training loader: shuffled, augmented, whole batches, in the chosen layout."""
        cfg = self.config
        loader = BatchLoader(
            x, y, cfg.batch_size, self.normalize, shuffle=True,
            augment=build_augment(cfg.augment, input_kind(x)), generator=generator, drop_last=True,
            limit_batches=1 if cfg.fast_dev_run else cfg.limit_batches,
            channels_last=self.cpu.settings.channels_last, flip_index=data.flip_index,
        )  # fmt: skip
        loader.shard = (self.rank, self.world)
        return loader

    def _time_step(self, data: ImageDataset, x: torch.Tensor, y: Targets) -> float:
        """Seconds per training step here: a copy of the model, the run's optimizer, batches
        from a loader of its own (the run's loader and RNG are not advanced)."""
        cfg = self.config
        probe = self._loader(x, y, data, torch.Generator().manual_seed(cfg.seed + 2))
        return budget.time_training_steps(
            self.model, self.task, lambda params: build_optimizer(params, cfg), probe,
            channels_last=self.cpu.settings.channels_last, bf16=self.cpu.settings.bf16,
            compile=self.cpu.settings.compile,
        )  # fmt: skip

    def measure_step(self, data: ImageDataset) -> float:
        """Seconds per training step of this config on this machine, before any training
        (with the CPU settings the run would use): what an ensemble asks before deciding
        whether its members get enough of a time budget."""
        self.task = self._resolve_task(data)
        self.normalize = Normalize(*data.channel_stats())
        self.cpu = self.choose_cpu_settings(data)
        return self._time_step(data, data.x_train, data.targets_train)

    def _plan_budget(
        self,
        data: ImageDataset,
        x_train: torch.Tensor,
        y_train: Targets,
        x_val: torch.Tensor | None,
        state: dict[str, Any] | None,
    ) -> budget.BudgetPlan | None:
        """With a time budget: the resumed run's plan, or a new one measured here."""
        cfg = self.config
        if state is not None:  # the plan the run made, exactly: never measured again
            saved = state.get("config", {}).get("time_budget")
            return budget.resumed_plan(
                saved, cfg.time_budget, self.files.budget, self.checkpoint_path
            )
        seconds = budget.parse_duration(cfg.time_budget)
        if seconds is None or cfg.fast_dev_run:
            return None
        step_seconds = self._time_step(data, x_train, y_train)
        per_image = budget.time_evaluation(
            self.model, self.task, data.x_test, self._eval_settings()
        )
        test_images = len(data.x_test)
        if cfg.limit_eval_batches:
            test_images = min(test_images, cfg.limit_eval_batches * cfg.eval_batch_size)
        plan = budget.plan_steps(
            seconds, step_seconds=step_seconds, eval_seconds_per_image=per_image,
            steps_per_epoch=self.steps_per_epoch, val_images=0 if x_val is None else len(x_val),
            test_images=test_images,
        )  # fmt: skip
        self.log(plan.describe())
        if self.save:
            write_json(self.files.budget, plan.to_dict())
        return plan

    def _emit(self, event: str) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self)

    def _split(
        self, data: ImageDataset
    ) -> tuple[torch.Tensor, Targets, torch.Tensor | None, Targets | None]:
        targets = data.targets_train
        n_val = int(len(data.x_train) * self.config.val_split)
        if n_val == 0:
            return data.x_train, targets, None, None
        # A fixed permutation (seeded separately from training) so resume sees the same split.
        order = torch.randperm(
            len(data.x_train), generator=torch.Generator().manual_seed(self.config.seed + 1)
        )
        val, train = order[:n_val], order[n_val:]
        train_targets = {k: v[train] for k, v in targets.items()}
        val_targets = {k: v[val] for k, v in targets.items()}
        return data.x_train[train], train_targets, data.x_train[val], val_targets

    def _check_fits(self, data: ImageDataset) -> None:
        shape = (2, *data.input_shape)
        dtype = torch.int64 if data.x_train.dtype == torch.int64 else torch.float32
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(torch.zeros(shape, dtype=dtype))
        except ShapeMismatchError as e:
            raise ShapeMismatchError(f"dataset {data.name!r} gives images {shape}: {e}") from None
        except RuntimeError as e:
            raise ShapeMismatchError(
                f"the model cannot take dataset {data.name!r}'s images of shape {shape} "
                f"(C, H, W = {data.input_shape}): {str(e).splitlines()[0]}"
            ) from None
        self.task.check_outputs(out, data)

    def _record(self, data: ImageDataset, mean: list[float], std: list[float]) -> None:
        """Write what training decided into the model's record, so save() needs nothing."""
        record = record_of(self.model)
        if record is None:
            return
        set_record(
            self.model,
            record.copy(
                task=self.task.name, input_shape=list(data.input_shape),
                classes=self.task.class_names(data), mean=mean, std=std, tta=self.config.tta,
                dataset=data.name,
                dataset_args=self.config.dataset_args if data.name == self.config.dataset else {},
                task_args={**self.task.record_args(data), **self.config.task_args},
                preprocess=data.preprocess or {},
            ),
        )  # fmt: skip

    def _checkpoint(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "loader": self.generator.get_state()},
            "epoch": self.epoch,
            "global_step": self.global_step,
            "accumulate": self.step.accumulate,  # after an out-of-memory recovery: the halved micro-batch
            "history": self.history,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "config": self.config.to_dict(),
            "cpu_settings": self.cpu.to_dict(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        try:
            save_checkpoint(self.checkpoint_path, state)
        except OSError as e:  # a full disk, a lost mount: the previous file is untouched
            kept = (
                f"the previous checkpoint {self.checkpoint_path} (epoch {self.saved_epoch}) is intact"
                if self.saved_epoch is not None
                else "no earlier checkpoint exists"
            )
            raise CheckpointError(
                f"could not write the checkpoint after epoch {self.epoch} ({e}); {kept}; free "
                "space and continue with --resume"
            ) from None
        self.saved_epoch = self.epoch
        atomic_write_text(self.files.history, history_csv(self.history))

    def _load_state(self) -> dict[str, Any]:
        path = self.checkpoint_path
        if not path.exists():
            raise CheckpointError(f"{path}: no checkpoint to resume from")
        return load_checkpoint(path)

    def _restore(self, state: dict[str, Any]) -> None:
        path = self.checkpoint_path
        saved_epochs = state.get("config", {}).get("epochs", self.config.epochs)
        if saved_epochs != self.config.epochs and self.config.schedule in ("onecycle", "cosine"):
            # These schedules are laid out over the whole run; a new length would not fit.
            raise ConfigError(
                f"{path} was written for epochs={saved_epochs} with the {self.config.schedule} "
                f"schedule, received epochs={self.config.epochs}; resume with "
                f"--epochs {saved_epochs}"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"]["torch"])
            self.generator.set_state(state["rng"]["loader"])
            for callback, cb_state in zip(self.callbacks, state["callbacks"], strict=False):
                callback.load_state_dict(cb_state)
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
        except (KeyError, RuntimeError, ValueError, ConfigError) as e:
            raise CheckpointError(
                f"{path}: does not match this model/config ({str(e).splitlines()[0]})"
            ) from None
        self.epoch = int(state["epoch"])
        self.global_step = int(state.get("global_step", self.epoch * self.steps_per_epoch))
        if self.plan is not None and self.schedule.per_batch:
            # The plan may have been made again after this checkpoint was written: lay the
            # schedule over the plan's steps, as the uninterrupted run did.
            self._lay_schedule(self.plan.total_steps)
        self.history = list(state["history"])
        accumulate = int(state.get("accumulate", self.step.accumulate))
        if accumulate > self.step.accumulate:  # memory ran out before: start where it fits
            self.log(f"accumulate {self.step.accumulate} -> {accumulate}, as the run had "
                     "reached after running out of memory")  # fmt: skip
            self.step.accumulate = accumulate
        self.log(f"resumed from {path} after epoch {self.epoch}")


def train_images(data: ImageDataset, val_split: float) -> int:
    """Training images left once ``val_split`` of them are held out for validation."""
    return len(data.x_train) - int(len(data.x_train) * val_split)


def _timing_inputs(x: torch.Tensor) -> torch.Tensor | None:
    """What the tuner times a step on: the real rows for token ids (random ids could be
    out of the vocabulary) and signals; None (random images of the shape) for images."""
    if x.dtype == torch.uint8:
        return None
    return x.clone()


def input_kind(x: torch.Tensor) -> str:
    """ "images" (N, C, H, W), "signals" (N, C, L) or "tokens" (int64 ids (N, L))."""
    if x.dtype == torch.int64:
        return "tokens"
    return "images" if x.dim() == 4 else "signals"
