"""The training configuration: one dataclass, loadable from YAML, overridable per field."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cnnlab.core.errors import ConfigError
from cnnlab.engine.budget import parse_duration
from cnnlab.tasks.tta import tta_mode

SAMPLINGS = ("seeds", "bootstrap", "boosting", "snapshot")  # ways to get ensemble members


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults are the `make demo` recipe.

    The defaults were chosen on Fashion-MNIST with 2 CPU cores: a small ResNet
    that reaches >=93% test accuracy in well under 5 minutes (BENCHMARKS.md).
    """

    # What to train.
    name: str = "demo"  # run folder: <runs_dir>/<name>
    runs_dir: str = "runs"
    model: str = "resnet_mini"
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset: str = "fashion-mnist"
    dataset_args: dict[str, Any] = field(default_factory=dict)
    # What the model predicts: classify | multilabel | segment | keypoints (cnnlab.tasks);
    # None = the dataset's own task. task_args go to the task (e.g. pos_weight, dice).
    task: str | None = None
    task_args: dict[str, Any] = field(default_factory=dict)
    val_split: float = 0.0  # fraction of train held out for validation; 0 = none
    # Transfer learning (cnnlab.transfer). weights: start from a saved model or run folder,
    # a .safetensors/.pth state dict (cnnlab's or torchvision's layout) or a Keras
    # .weights.h5/.keras file; the head (num_classes) is left new and the first conv adapts
    # to in_channels ("adapt": summed to one channel, else repeated and rescaled; "new":
    # left initialised). A saved folder's own architecture is used when `model` is left at
    # its default.
    weights: str | None = None
    first_conv: str = "adapt"
    # Freeze parameters by selector ("features.0-2", "features.layer1", "*.bn*", comma
    # lists; cnnlab.transfer.freezing) or everything before a module (freeze_until).
    freeze: str | list[str] | None = None
    freeze_until: str | None = None
    freeze_bn: bool = True  # frozen BatchNorm layers keep their pretrained statistics (eval)
    # Gradual unfreezing: thaw the frozen part one stage per this many epochs, top first.
    unfreeze_every: int | None = None
    # Discriminative learning rates: selector -> multiple of lr, e.g. {"features": 0.1}.
    lr_mult: dict[str, float] = field(default_factory=dict)
    # Fit a shallow classifier (logreg | svm | knn) on the features of `weights` instead
    # of training by gradient descent (cnnlab.transfer.shallow).
    shallow: str | None = None
    # How long. One epoch = one pass over the training images.
    epochs: int = 8  # 8 passes of the default model take ~3.5 min on 2 cores
    # Or a wall-clock budget for training, validation and the test evaluation: "5m",
    # "90s", "1h", 300 (seconds). The steps that fit are measured and chosen on this
    # machine before training (cnnlab.engine.budget); `epochs` is then not used.
    time_budget: float | str | None = None
    batch_size: int = 128  # 128 is the fastest size per image on 2 cores for small nets
    # Optimizer. SGD+Nesterov with one-cycle trains small CNNs fastest (Smith 2018).
    optimizer: str = "sgd"  # sgd | rmsprop | adam | adamw
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD momentum / RMSprop momentum
    nesterov: bool = True
    weight_decay: float = 5e-4  # L2 on all weights (decoupled for adamw)
    schedule: str = "onecycle"  # constant | step | cosine | onecycle | plateau | cyclic
    cycles: int = 1  # cyclic: cosine restarts, each cycle annealing lr to 0 (snapshots)
    warmup_epochs: float = 0.0  # linear warm-up before step/cosine/constant
    step_epochs: int = 10  # step schedule: multiply lr by gamma every step_epochs
    gamma: float = 0.1  # step and plateau decay factor
    plateau_patience: int = 2  # epochs without val improvement before decaying
    # Regularisation.
    label_smoothing: float = 0.1
    grad_clip: float | None = None  # max global grad norm; None = off
    # Split each batch into this many micro-batches whose gradients add up before one
    # optimizer step (memory of batch_size / accumulate, same effective batch). An
    # out-of-memory error doubles it and reruns the step (cnnlab.engine.step).
    accumulate: int = 1
    # Train on this many processes of this machine with PyTorch DDP (gloo on CPU): the
    # batch is split across them (cnnlab.engine.distributed). 1 = one process.
    nproc: int = 1
    # Flips only: in runs this short, crops and erasing cost more accuracy than they
    # add (10 epochs: flip 93.4%, flip+crop 92.8% on Fashion-MNIST).
    # "auto": flip for images, none for signals and token ids (cnnlab.data.augment.build_augment)
    augment: Any = "auto"
    early_stopping: int | None = None  # patience in epochs on the monitored loss
    # Test-time augmentation: True/"flip" = mean of an image and its mirror (+0.3-0.4%),
    # "flip-shift" adds 1-pixel shifts of both (cnnlab.tasks.tta), False/"none" = off.
    tta: bool | str = True
    # Evaluate and save an exponential moving average of the weights (cnnlab.engine.ema):
    # the decay per update, e.g. 0.99; None = off. ema_every: optimizer steps per update.
    ema: float | None = None
    ema_every: int = 1
    # Set the first conv's filters to +/- the directions that whiten the training images'
    # patches, and freeze them (airbench's first layer; cnnlab.engine.whiten).
    whiten: bool = False
    # Train this many copies (member i is seeded seed * ensemble + i) side by side, one
    # process each, and average their class probabilities (cnnlab.runs.ensemble).
    # On small CPUs one process rarely keeps every core busy; N processes do.
    ensemble: int = 1
    # With a time budget: train the ensemble only if each member gets at least this many
    # epochs at the rate measured before training; else one model on all the cores
    # (short budgets on slow CPUs). None = always the ensemble.
    ensemble_min_epochs: float | None = None
    # How the members' outputs combine: softmax (mean probability), weighted, vote,
    # stacked, sigmoid, mean (cnnlab.models.ensemble); None = the task's own. weighted and
    # stacked are fitted on val_split of the training images, held out from every member
    # (or out of fold: ensemble_folds).
    ensemble_combine: str | None = None
    # How the members come to be: "seeds" (all the images, each its own seed),
    # "bootstrap" (bagging: a sample drawn with replacement per member), "boosting" (SAMME:
    # one after another, each on a sample drawn by weights that grow on the images its
    # predecessors got wrong; combined by their alphas) or "snapshot" (one run whose
    # learning rate restarts `ensemble` times; a member saved at the end of each cycle).
    ensemble_sampling: str = "seeds"
    # weighted and stacked rules fitted on out-of-fold predictions instead of val_split:
    # the training images split in this many folds; per fold, the members train on the
    # others and predict it; the final members then train on all of them
    # ((folds + 1) x the training). 0 = fit on val_split.
    ensemble_folds: int = 0
    # Speed.
    # None = automatic: timed on the first run for this model, shape and machine and
    # cached (cnnlab.engine.autotune); True/False always wins over the tuner.
    autotune: bool = True  # False: None below means plain fp32 eager NCHW
    channels_last: bool | None = None  # NHWC: usually faster for convs on x86 oneDNN
    bf16: bool | None = None  # bf16 autocast: faster only on CPUs with native bf16
    compile: bool | None = None  # torch.compile: tens of seconds to compile, long runs only
    threads: int | None = None  # torch intra-op threads; None = torch's default
    eval_batch_size: int = 1000
    # Reproducibility and quick checks.
    seed: int = 0
    limit_batches: int | None = None  # train on at most this many batches per epoch
    limit_eval_batches: int | None = None
    fast_dev_run: bool = False  # one batch of train and eval, 1 epoch, nothing saved
    progress: bool = True
    report: bool = True  # write report.html into the run folder after training

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the field, its value and what was expected."""
        positive = (
            "epochs", "batch_size", "eval_batch_size", "step_epochs", "ema_every", "ensemble",
            "cycles", "accumulate", "nproc",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Expected {name} to be an int >= 1, received {name}={value!r}")
        for name in ("lr", "weight_decay", "label_smoothing", "val_split", "warmup_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"Expected {name} to be a number >= 0, received {name}={value!r}")
        for name in ("autotune", "whiten", "freeze_bn", "channels_last", "bf16", "compile"):
            value = getattr(self, name)
            strict = name in ("autotune", "whiten", "freeze_bn")
            if not isinstance(value, bool) and not (value is None and not strict):
                expected = "true or false" if strict else "true, false or null (auto)"
                raise ConfigError(f"Expected {name} to be {expected}, received {name}={value!r}")
        tta_mode(self.tta)
        self._validate_transfer()
        self._validate_ensemble()
        parse_duration(self.time_budget)
        if self.ema is not None and (
            not isinstance(self.ema, int | float)
            or isinstance(self.ema, bool)
            or not 0 < self.ema < 1
        ):
            raise ConfigError(f"Expected ema in (0, 1) or null (off), received ema={self.ema!r}")
        if not 0 <= self.val_split < 1:
            raise ConfigError(f"Expected val_split in [0, 1), received val_split={self.val_split}")
        if self.ensemble_min_epochs is not None and (
            not isinstance(self.ensemble_min_epochs, int | float)
            or isinstance(self.ensemble_min_epochs, bool)
            or self.ensemble_min_epochs <= 0
        ):
            raise ConfigError(
                "Expected ensemble_min_epochs to be a positive number or null, received "
                f"ensemble_min_epochs={self.ensemble_min_epochs!r}"
            )
        if self.label_smoothing >= 1:
            raise ConfigError(
                f"Expected label_smoothing in [0, 1), received label_smoothing={self.label_smoothing}"
            )

    def _validate_ensemble(self) -> None:
        from cnnlab.models.ensemble import COMBINE_RULES, FITTED_RULES

        if self.ensemble_combine is not None and self.ensemble_combine not in COMBINE_RULES:
            raise ConfigError(
                f"Expected ensemble_combine in {COMBINE_RULES} or null, received "
                f"ensemble_combine={self.ensemble_combine!r}"
            )
        if self.ensemble_sampling not in SAMPLINGS:
            raise ConfigError(
                f"Expected ensemble_sampling in {SAMPLINGS}, received "
                f"ensemble_sampling={self.ensemble_sampling!r}"
            )
        sequential = self.ensemble_sampling in ("snapshot", "boosting") and self.ensemble > 1
        if sequential and parse_duration(self.time_budget) is not None:
            raise ConfigError(
                f"ensemble_sampling={self.ensemble_sampling!r} trains for a number of "
                f"epochs, received time_budget={self.time_budget!r}; set it to none"
            )
        if (
            self.ensemble_sampling == "snapshot"
            and self.ensemble > 1
            and self.epochs < self.ensemble
        ):
            raise ConfigError(
                f"a snapshot ensemble of {self.ensemble} needs at least one epoch per cycle, "
                f"received epochs={self.epochs}"
            )
        folds = self.ensemble_folds
        if not isinstance(folds, int) or isinstance(folds, bool) or folds < 0:
            raise ConfigError(f"Expected ensemble_folds to be an int >= 0, received {folds!r}")
        if folds:
            if folds < 2 or self.ensemble_combine not in FITTED_RULES:
                raise ConfigError(
                    f"Expected ensemble_folds >= 2 with ensemble_combine in {FITTED_RULES}, "
                    f"or 0; received ensemble_folds={self.ensemble_folds}, "
                    f"ensemble_combine={self.ensemble_combine!r}"
                )
            if self.ensemble_sampling not in ("seeds", "bootstrap"):
                raise ConfigError(
                    "out-of-fold fitting trains the members once per fold, side by side; "
                    f"received ensemble_sampling={self.ensemble_sampling!r}, expected seeds "
                    "or bootstrap"
                )
        elif self.ensemble > 1 and self.ensemble_combine in FITTED_RULES and self.val_split <= 0:
            raise ConfigError(
                f"ensemble_combine={self.ensemble_combine!r} is fitted on images no member "
                "trained on, and val_split=0 holds none out; set val_split (e.g. 0.1)"
            )

    def _validate_transfer(self) -> None:
        from cnnlab.transfer.shallow import CLASSIFIERS
        from cnnlab.transfer.weights import FIRST_CONV_RULES

        if self.first_conv not in FIRST_CONV_RULES:
            raise ConfigError(
                f"Expected first_conv in {FIRST_CONV_RULES}, received first_conv={self.first_conv!r}"
            )
        if self.unfreeze_every is not None and (
            not isinstance(self.unfreeze_every, int) or self.unfreeze_every < 1
        ):
            raise ConfigError(
                f"Expected unfreeze_every to be an int >= 1 or null, received {self.unfreeze_every!r}"
            )
        if self.unfreeze_every is not None and not (self.freeze or self.freeze_until):
            raise ConfigError(
                f"received unfreeze_every={self.unfreeze_every} with nothing frozen; set "
                "freeze or freeze_until too"
            )
        if not isinstance(self.lr_mult, dict):
            raise ConfigError(
                f"Expected lr_mult to be a mapping of selector -> multiplier, received {self.lr_mult!r}"
            )
        if self.shallow is not None:
            if self.shallow not in CLASSIFIERS:
                raise ConfigError(
                    f"Expected shallow to be {', '.join(CLASSIFIERS)} or null, received "
                    f"{self.shallow!r}"
                )
            if not self.weights:
                raise ConfigError(
                    f"received shallow={self.shallow!r} without weights: a shallow classifier "
                    "is fitted on a trained network's features; give weights (a run folder)"
                )

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown config keys {unknown}; expected keys from: {', '.join(sorted(known))}"
            )
        return cls(**values)

    @classmethod
    def from_recipe(cls, recipe: str, /, **overrides: Any) -> TrainConfig:
        """A shipped recipe's values (cnnlab.engine.recipes), then ``overrides`` (``name=`` too)."""
        from cnnlab.engine.recipes import recipe_values

        config = cls.from_dict({**recipe_values(recipe), **overrides})
        if "epochs" in overrides:
            config.check_epochs_or_budget()
        return config

    def check_epochs_or_budget(self) -> None:
        """For an ``epochs`` the user gave: refuse it beside a time budget (which chooses
        the steps itself) rather than ignore it."""
        if parse_duration(self.time_budget) is not None:
            raise ConfigError(
                f"received epochs={self.epochs} and time_budget={self.time_budget!r}: a "
                "budget chooses how many steps to train on this machine, so it cannot also "
                "train a fixed number of epochs; drop epochs, or set time_budget to none "
                "(--time-budget none) to train a fixed number of epochs"
            )

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], /, **overrides: Any) -> TrainConfig:
        """Load a YAML file of config keys, then apply ``overrides`` on top."""
        return cls.from_dict({**read_yaml(path), **overrides})


def yaml_value(text: str) -> Any:
    """A YAML scalar as a user means it: YAML 1.1 reads ``1e-4`` (no dot) as a string, and
    nobody writing ``--weight-decay 1e-4`` means one."""
    value = yaml.safe_load(text)
    return _number_if_float(value)


def _number_if_float(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else value
        except ValueError:
            return value
    return value


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping of config keys in a YAML file (not yet checked against the fields)."""
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping of keys, received {type(values).__name__}"
        )
    return {key: _number_if_float(value) for key, value in values.items()}
