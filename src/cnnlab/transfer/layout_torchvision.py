"""torchvision's state dicts of the ImageNet classifiers, re-keyed for cnnlab's zoo models.

cnnlab's twins of ``torchvision.models`` hold the same tensors in the same order, but under
the timm-style ``features`` (body) + ``head`` (pool, flatten, classifier) split, and with
some blocks nested differently (MobileNetV2's ``Conv2dNormActivation`` is three flat layers
in cnnlab, a DenseNet layer is one ``nn.Sequential``). So the mapping is by rule, not by a
table of keys: each family names a few *segments* (a torchvision key prefix and the cnnlab
prefix it lands under), whose parameterised modules (conv, BN, linear) are paired either
by a renaming rule or, where both sides are numbered alike, by position; every pair must
hold the same tensor names and shapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch

from cnnlab.core.errors import WeightsError

State = Mapping[str, torch.Tensor]
Module = tuple[str, dict[str, torch.Tensor]]  # (module path, tensor name -> tensor)

# BatchNorm's step counter: torchvision's older ImageNet checkpoints predate it.
_BN_COUNTER = "num_batches_tracked"
_SHOWN = 5  # unmatched keys an error lists on each side


def _same(path: str) -> str:
    """The rename of a segment whose module paths match on both sides."""
    return path


@dataclass(frozen=True)
class Segment:
    """torchvision's modules under ``source``, mapped onto cnnlab's under ``target``.

    Attributes:
        source: torchvision key prefix, e.g. ``"classifier."``.
        target: cnnlab key prefix, e.g. ``"head."``.
        rename: a module path under ``source`` -> its path under ``target``. None pairs the
            modules by position in natural order (``2`` before ``10``), for layouts numbered
            alike but nested differently; natural order, not the state dict's, because
            safetensors files (and any re-sorted dict) list keys alphabetically.
        classifier: its last module's out-features follow ``num_classes``, so that module's
            dim 0 may differ from cnnlab's (the caller adapts or reports it).
        optional: dropped, when cnnlab's model has no keys under ``target``.
    """

    source: str
    target: str
    rename: Callable[[str], str] | None = _same
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


def _head(source: str) -> Segment:
    """torchvision's classifier is cnnlab's head after its pools and flatten, numbered alike."""
    return Segment(source, "head.", rename=None, classifier=True)


def _top_level_body(target: State, rename: Callable[[str], str] = _same) -> list[Segment]:
    """torchvision keeps these bodies' stages at the top level: ``layer1.`` is ``features.layer1.``."""
    names = dict.fromkeys(key.split(".")[1] for key in target if key.startswith("features."))
    return [Segment(f"{name}.", f"features.{name}.", rename) for name in names]


def _resnet(target: State) -> list[Segment]:
    """ResNet: ``conv1``, ``bn1``, ``layer1-4`` under ``features``; ``fc`` is ``head.2``."""
    return [*_top_level_body(target), _head("fc.")]


def _vgg_alexnet(target: State) -> list[Segment]:
    """VGG(-BN), AlexNet: ``features`` alike (cnnlab's VGG head starts with the last max-pool,
    which has no parameters); ``classifier.i`` is ``head.(i + 3)``."""
    return [Segment("features.", "features."), _head("classifier.")]


def _dense_layer(path: str) -> str:
    """``denselayerL.norm1/conv1/norm2/conv2`` -> ``layers.(L-1).layers.0/2/3/5``: cnnlab's
    dense layer is one Sequential of (BN, ReLU, conv) twice."""

    def index(m: re.Match[str]) -> str:
        unit = 3 * (int(m[3]) - 1) + (2 if m[2] == "conv" else 0)
        return f"layers.{int(m[1]) - 1}.layers.{unit}."

    return re.sub(r"denselayer(\d+)\.(norm|conv)(\d)\.", index, path)


def _densenet(target: State) -> list[Segment]:
    """DenseNet: ``features`` alike but for the dense layers' insides; ``classifier`` is ``head.2``."""
    return [Segment("features.", "features.", _dense_layer), _head("classifier.")]


def _googlenet(target: State) -> list[Segment]:
    """GoogLeNet: stages at the top level, the side classifiers ``aux1``/``aux2`` by name.

    The side classifiers run in training only, so a cnnlab model built with
    ``aux_logits=False`` drops them and its logits stay torchvision's.
    """
    aux = [Segment(f"{n}.", f"{n}.", classifier=True, optional=True) for n in ("aux1", "aux2")]
    return [*_top_level_body(target), *aux, _head("fc.")]


_SPLIT_CONV = {"": "", "a": ".conv_1x3", "b": ".conv_3x1"}  # torchvision's 2a is (1, 3)


def _inception_branch(path: str) -> str:
    """``branch5x5_2`` -> ``branch5x5.1``, ``branch3x3_2a/2b`` -> ``branch3x3.1.conv_1x3/_3x1``,
    ``branch_pool`` -> ``branch_pool.1``: cnnlab's branches are Sequentials (the pool first)."""
    path = re.sub(r"^branch_pool\.", "branch_pool.1.", path)
    return re.sub(
        r"^(branch\w+?)_(\d)([ab]?)\.",
        lambda m: f"{m[1]}.{int(m[2]) - 1}{_SPLIT_CONV[m[3]]}.",
        path,
    )


def _inception_v3(target: State) -> list[Segment]:
    """Inception v3: stages at the top level with branches renamed; ``AuxLogits`` as in
    GoogLeNet (training only)."""
    aux = Segment("AuxLogits.", "AuxLogits.", classifier=True, optional=True)
    return [*_top_level_body(target, _inception_branch), aux, _head("fc.")]


def _mobilenet_efficientnet(target: State) -> list[Segment]:
    """MobileNetV2, EfficientNet-B0: torchvision nests conv-BN-activation units and stages
    that cnnlab lays flat, in the same order; ``classifier.1`` is ``head.3``."""
    return [Segment("features.", "features.", rename=None), _head("classifier.")]


_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_VGGS = tuple(f"vgg{depth}{bn}" for depth in (11, 13, 16, 19) for bn in ("", "_bn"))
_DENSENETS = ("densenet121", "densenet169", "densenet201")
_VGG_ALEXNET = Family(_vgg_alexnet, ("features.", "classifier."))
_MOBILE = Family(_mobilenet_efficientnet, ("features.", "classifier."))
# seresnet50 has no torchvision twin, and wrn28_10/wrn40_4 are CIFAR nets unlike
# torchvision's wide_resnet50_2, so they are not mapped.
_FAMILIES: dict[str, Family] = {
    **dict.fromkeys(_RESNETS, Family(_resnet, ("conv1.", "bn1.", "layer", "fc."))),
    **dict.fromkeys((*_VGGS, "alexnet"), _VGG_ALEXNET),
    **dict.fromkeys(_DENSENETS, Family(_densenet, ("features.", "classifier."))),
    "googlenet": Family(_googlenet, ("conv", "inception", "aux", "fc.")),
    "inception_v3": Family(_inception_v3, ("Conv2d_", "Mixed_", "AuxLogits.", "fc.")),
    "mobilenet_v2": _MOBILE,
    "efficientnet_b0": _MOBILE,
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
    free_dims = _free_dims(target, segments)
    mapped: dict[str, torch.Tensor] = {}
    extra: list[str] = []  # torchvision keys with no place in cnnlab's model
    missing: list[str] = []  # cnnlab keys left without a tensor
    for segment in segments:
        got, unpaired = _map_segment(segment, state, target, free_dims)
        mapped.update(got)
        extra += unpaired[0]
        missing += unpaired[1]
    extra += [k for k in state if not k.startswith(tuple(s.source for s in segments))]
    missing += [k for k in target if not k.startswith(tuple(s.target for s in segments))]
    if extra or missing:
        raise WeightsError(
            f"cannot map torchvision's {architecture} weights onto cnnlab's {architecture}: "
            f"torchvision keys with no place in cnnlab's model: {_show(extra, state)}; "
            f"cnnlab keys left without a tensor: {_show(missing, target)}"
        )
    return {key: mapped[key] for key in target}


def _map_segment(
    segment: Segment, state: State, target: State, free_dims: dict[str, int]
) -> tuple[dict[str, torch.Tensor], tuple[list[str], list[str]]]:
    """One segment's cnnlab keys -> torchvision's tensors, and the keys of each side
    that found no fitting partner."""
    sources, targets = _modules(state, segment.source), _modules(target, segment.target)
    if segment.optional and not targets:
        return {}, ([], [])  # side classifiers: see the family's docstring for why they may go
    if segment.rename is None:
        pairs, unpaired_sources, unpaired_targets = _pair_by_position(sources, targets)
    else:
        pairs, unpaired_sources, unpaired_targets = _pair_by_name(
            sources, targets, segment, segment.rename
        )
    mapped: dict[str, torch.Tensor] = {}
    for source, (target_path, like) in pairs:
        if not _fits(source[1], like, free_dims.get(target_path)):
            unpaired_sources.append(source)
            unpaired_targets.append((target_path, like))
            continue
        for name, tensor in like.items():
            # A checkpoint without BN's step counter: start it at 0, as torch's own
            # loading does (it only matters to BN with momentum=None).
            mapped[f"{target_path}.{name}"] = source[1].get(name, torch.zeros_like(tensor))
    return mapped, (_keys(unpaired_sources), _keys(unpaired_targets))


def _modules(state: State, prefix: str) -> list[Module]:
    """The modules under ``prefix``, in state-dict order, each with its tensors by name."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if key.startswith(prefix):
            path, _, name = key.rpartition(".")
            grouped.setdefault(path, {})[name] = tensor
    return list(grouped.items())


def _free_dims(target: State, segments: list[Segment]) -> dict[str, int]:
    """cnnlab module path -> the dim its torchvision tensors may differ in: dim 1
    (``in_channels``) of the first module, the stem conv, and dim 0 (``num_classes``) of
    each classifier's last module."""
    modules = _modules(target, "")
    free = {modules[0][0]: 1} if modules else {}
    for segment in segments:
        classifier = _modules(target, segment.target)
        if segment.classifier and classifier:
            free[classifier[-1][0]] = 0
    return free


Pairs = tuple[list[tuple[Module, Module]], list[Module], list[Module]]


def _pair_by_name(
    sources: list[Module], targets: list[Module], segment: Segment, rename: Callable[[str], str]
) -> Pairs:
    """Pair each torchvision module with the cnnlab module its renamed path names; also
    return the modules of each side left without a partner."""
    wanted = dict(targets)
    pairs, unpaired = [], []
    for path, tensors in sources:
        relative = f"{path}."[len(segment.source) :]  # "" for a module at the prefix itself
        renamed = (segment.target + rename(relative)).removesuffix(".")
        if renamed in wanted:
            pairs.append(((path, tensors), (renamed, wanted.pop(renamed))))
        else:
            unpaired.append((path, tensors))
    return pairs, unpaired, list(wanted.items())


def _pair_by_position(sources: list[Module], targets: list[Module]) -> Pairs:
    """Pair the modules of both sides in natural order; also return the longer side's tail."""
    sources, targets = sorted(sources, key=_natural), sorted(targets, key=_natural)
    n = min(len(sources), len(targets))
    return list(zip(sources[:n], targets[:n], strict=True)), sources[n:], targets[n:]


def _natural(module: Module) -> list[tuple[int, int | str]]:
    """Sort key of a module path that puts ``features.2`` before ``features.10``."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in module[0].split(".")]


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
