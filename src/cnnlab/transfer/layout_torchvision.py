"""torchvision's state dicts of the ImageNet classifiers, re-keyed for cnnlab's zoo models.

cnnlab's twins of ``torchvision.models`` hold the same tensors in the same order, but under
the timm-style ``features`` (body) + ``head`` (pool, flatten, classifier) split, and with
some blocks nested differently (MobileNetV2's ``Conv2dNormActivation`` is three flat layers
in cnnlab, a DenseNet layer is one ``nn.Sequential``). So the mapping is by rule, not by a
table of keys: each family names a few *segments* (a torchvision key prefix and the cnnlab
prefix it lands under), and within a segment the parameterised modules (conv, BN, linear)
are paired in order, each pair checked for the same tensor names and shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch

from cnnlab.core.errors import WeightsError

State = Mapping[str, torch.Tensor]
Module = tuple[str, dict[str, torch.Tensor]]  # (module path, tensor name -> tensor)

# BatchNorm's step counter: torchvision's older ImageNet checkpoints predate it.
_BN_COUNTER = "num_batches_tracked"
_SHOWN = 5  # unmatched keys an error lists on each side


@dataclass(frozen=True)
class Segment:
    """A run of torchvision keys mapped, module by module in order, onto a run of cnnlab keys.

    Attributes:
        source: torchvision key prefix, e.g. ``"classifier."``.
        target: cnnlab key prefix, e.g. ``"head."``.
        classifier: its last module's out-features follow ``num_classes``, so that module's
            dim 0 may differ from cnnlab's (the caller adapts or reports it).
        optional: dropped, when cnnlab's model has no keys under ``target``.
    """

    source: str
    target: str
    classifier: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Family:
    """How one family's torchvision keys are laid out.

    Attributes:
        segments: cnnlab's state dict -> the segments covering every key of both layouts.
        prefixes: every key of torchvision's state dict starts with one of these.
    """

    segments: Callable[[State], list[Segment]]
    prefixes: tuple[str, ...]


def _top_level_body(target: State) -> list[Segment]:
    """torchvision keeps these bodies' stages at the top level: ``layer1.`` is ``features.layer1.``."""
    names = dict.fromkeys(key.split(".")[1] for key in target if key.startswith("features."))
    return [Segment(f"{name}.", f"features.{name}.") for name in names]


def _resnet(target: State) -> list[Segment]:
    """ResNet: ``conv1``, ``bn1``, ``layer1-4`` under ``features``; ``fc`` is ``head.2``."""
    return [*_top_level_body(target), Segment("fc.", "head.", classifier=True)]


def _features_classifier(target: State) -> list[Segment]:
    """VGG(-BN), AlexNet, DenseNet, MobileNetV2, EfficientNet: ``features`` + ``classifier``.

    torchvision's ``features`` is cnnlab's up to nesting (and VGG's last max-pool, which has
    no parameters, sits in cnnlab's head); ``classifier`` is cnnlab's head after its pools.
    """
    return [Segment("features.", "features."), Segment("classifier.", "head.", classifier=True)]


def _googlenet(target: State) -> list[Segment]:
    """GoogLeNet: stages at the top level, the side classifiers ``aux1``/``aux2`` by name.

    The side classifiers run in training only, so a cnnlab model built with
    ``aux_logits=False`` drops them and its logits stay torchvision's.
    """
    aux = [Segment(f"{n}.", f"{n}.", classifier=True, optional=True) for n in ("aux1", "aux2")]
    return [*_top_level_body(target), *aux, Segment("fc.", "head.", classifier=True)]


def _inception_v3(target: State) -> list[Segment]:
    """Inception v3: stages at the top level; ``AuxLogits`` as in GoogLeNet (training only)."""
    aux = Segment("AuxLogits.", "AuxLogits.", classifier=True, optional=True)
    return [*_top_level_body(target), aux, Segment("fc.", "head.", classifier=True)]


_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_VGGS = tuple(f"vgg{depth}{bn}" for depth in (11, 13, 16, 19) for bn in ("", "_bn"))
_DENSENETS = ("densenet121", "densenet169", "densenet201")
_FEATURES_CLASSIFIER = Family(_features_classifier, ("features.", "classifier."))
# seresnet50 has no torchvision twin, and wrn28_10/wrn40_4 are CIFAR nets unlike
# torchvision's wide_resnet50_2, so they are not mapped.
_FAMILIES: dict[str, Family] = {
    **dict.fromkeys(_RESNETS, Family(_resnet, ("conv1.", "bn1.", "layer", "fc."))),
    **dict.fromkeys((*_VGGS, "alexnet", *_DENSENETS), _FEATURES_CLASSIFIER),
    "googlenet": Family(_googlenet, ("conv", "inception", "aux", "fc.")),
    "inception_v3": Family(_inception_v3, ("Conv2d_", "Mixed_", "AuxLogits.", "fc.")),
    "mobilenet_v2": _FEATURES_CLASSIFIER,
    "efficientnet_b0": _FEATURES_CLASSIFIER,
}
TORCHVISION_ARCHITECTURES: tuple[str, ...] = tuple(_FAMILIES)


def is_torchvision_layout(architecture: str, keys: Iterable[str]) -> bool:
    """True when ``keys`` look like torchvision's state dict of ``architecture`` (not cnnlab's).

    cnnlab's keys always include ``head.`` ones, which torchvision's never do; torchvision's
    all start with the family's top-level names. An architecture without a torchvision twin
    gives False.
    """
    family = _FAMILIES.get(architecture)
    keys = list(keys)
    if family is None or not keys:
        return False
    return all(key.startswith(family.prefixes) for key in keys)


def from_torchvision(architecture: str, state: State, target: State) -> dict[str, torch.Tensor]:
    """torchvision's state dict -> one keyed as cnnlab's ``target``.

    Args:
        architecture: cnnlab registry name, one of ``TORCHVISION_ARCHITECTURES``.
        state: torchvision's state dict of that architecture.
        target: a cnnlab model's ``state_dict()``, read for its keys and shapes only.

    Returns:
        cnnlab key -> torchvision's tensor (not copied). Tensors whose shapes differ from
        ``target`` (another ``num_classes`` for the classifiers, other ``in_channels`` for
        the first conv) come back unchanged, for the caller to adapt or report.

    Raises:
        WeightsError: ``architecture`` is not mapped, or the keys or shapes of ``state``
            do not fit ``target``; the message names the first unmatched keys of each side.
    """
    family = _FAMILIES.get(architecture)
    if family is None:
        raise WeightsError(
            f"no torchvision layout is known for architecture {architecture!r}; "
            f"expected one of: {', '.join(TORCHVISION_ARCHITECTURES)}"
        )
    segments = family.segments(target)
    mapped: dict[str, torch.Tensor] = {}
    extra: list[str] = []  # torchvision keys with no place in cnnlab's model
    missing: list[str] = []  # cnnlab keys left without a tensor
    for i, segment in enumerate(segments):
        source_modules = _modules(state, segment.source)
        target_modules = _modules(target, segment.target)
        if segment.optional and not target_modules:
            continue  # see the family's docstring for why these may go
        got, unmatched = _align(source_modules, target_modules, segment, first=i == 0)
        mapped.update(got)
        extra += unmatched[0]
        missing += unmatched[1]
    extra += [k for k in state if not k.startswith(tuple(s.source for s in segments))]
    missing += [k for k in target if not k.startswith(tuple(s.target for s in segments))]
    if extra or missing:
        raise WeightsError(
            f"cannot map torchvision's {architecture} weights onto cnnlab's {architecture}: "
            f"torchvision keys with no place in cnnlab's model: {_show(extra, state)}; "
            f"cnnlab keys left without a tensor: {_show(missing, target)}"
        )
    return mapped


def _modules(state: State, prefix: str) -> list[Module]:
    """The modules under ``prefix``, in state-dict order, each with its tensors by name."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if key.startswith(prefix):
            path, _, name = key.rpartition(".")
            grouped.setdefault(path, {})[name] = tensor
    return list(grouped.items())


def _align(
    sources: list[Module], targets: list[Module], segment: Segment, first: bool
) -> tuple[dict[str, torch.Tensor], tuple[list[str], list[str]]]:
    """Pair modules in order until one does not fit; return the mapped keys and the keys of
    both sides from that pair on (unmatched).

    The first module of the model (the stem conv) may differ in dim 1 (``in_channels``),
    a classifier segment's last module in dim 0 (``num_classes``).
    """
    mapped: dict[str, torch.Tensor] = {}
    pairs = list(zip(sources, targets, strict=False))
    for i, ((_, source), (target_path, target)) in enumerate(pairs):
        free_dim = None
        if first and i == 0:
            free_dim = 1
        elif segment.classifier and i == len(targets) - 1:
            free_dim = 0
        if not _fits(source, target, free_dim):
            return mapped, (_keys(sources[i:]), _keys(targets[i:]))
        for name, like in target.items():
            # A checkpoint without BN's step counter: start it at 0, as torch's own
            # loading does (it only matters to BN with momentum=None).
            mapped[f"{target_path}.{name}"] = source.get(name, torch.zeros_like(like))
    return mapped, (_keys(sources[len(pairs) :]), _keys(targets[len(pairs) :]))


def _fits(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], free_dim: int | None
) -> bool:
    """Same tensor names (the BN counter may be absent) and shapes, but for ``free_dim``."""
    if set(source) - {_BN_COUNTER} != set(target) - {_BN_COUNTER}:
        return False
    for name, like in target.items():
        if name not in source:
            continue
        a, b = list(source[name].shape), list(like.shape)
        if free_dim is not None and len(a) == len(b) > free_dim:
            a[free_dim] = b[free_dim]
        if a != b:
            return False
    return True


def _keys(modules: list[Module]) -> list[str]:
    return [f"{path}.{name}" for path, tensors in modules for name in tensors]


def _show(keys: list[str], state: State) -> str:
    """The first few keys with their shapes, e.g. ``fc.weight (10, 512), ... (+3 more)``."""
    if not keys:
        return "none"
    shown = ", ".join(f"{k} {tuple(state[k].shape)}" for k in keys[:_SHOWN])
    return shown + (f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")
