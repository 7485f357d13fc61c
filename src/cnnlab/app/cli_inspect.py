"""`cnnlab inspect ...`: each visualisation as a command that writes a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # torch loads only when a command runs: `cnnlab --help` stays instant
    import torch
    from torch import nn

ATTRIBUTIONS = ("gradcam", "saliency", "smoothgrad", "occlusion", "guided", "deconvnet")


def _model(spec: str) -> tuple[nn.Module, dict[str, Any], tuple[int, ...]]:
    """A saved model folder (trained weights) or a registry name (random weights)."""
    from cnnlab.models import create_model, model_info
    from cnnlab.models.saved import config_of, load

    if Path(spec).is_dir():
        model = load(spec)
        config = config_of(model)
        return model, config, tuple(int(s) for s in config["input_shape"])
    shape = model_info(spec).input_shape
    channels = {"in_channels": shape[0]} if len(shape) > 1 else {}
    return create_model(spec, **channels).eval(), {}, shape


def _one_network(model: nn.Module, spec: str, layer: str | None = None) -> nn.Module:
    """Views of one layer need one network: an ensemble gives its member 0, with a note,
    unless ``layer`` names a member's layer itself (``members.1.features.4``)."""
    from cnnlab.models.ensemble import Ensemble

    if not isinstance(model, Ensemble) or (layer or "").startswith("members."):
        return model
    print(
        f"{spec} is an ensemble of {len(model.members)} models: showing member 0, whose "
        f"layers are named as in {Path(spec) / 'member-0'} (members.1.<layer> for another)"
    )
    return model.members[0]


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``shape`` as (C, H, W); these views draw images, so a signal or text model is an
    error that says where its views are."""
    from cnnlab.core.errors import ConfigError

    if len(shape) != 3:
        raise ConfigError(
            f"this view needs an image model (input C, H, W); the model takes {shape}: "
            "`cnnlab report RUN_DIR` draws Grad-CAM, filters and n-grams for signals and text"
        )
    c, h, w = shape
    return c, h, w


def _image(path: str, config: dict[str, Any], shape: tuple[int, ...]) -> torch.Tensor:
    """One image file -> the normalised (1, C, H, W) input the model expects."""
    from cnnlab.engine.predictor import read_image
    from cnnlab.models.saved import preprocess

    return preprocess(read_image(path, _image_shape(shape))[None], config)


def _to_display(x: torch.Tensor) -> Any:
    """A (1, C, H, W) tensor as a uint8 picture, stretched to its own range."""
    from cnnlab.inspect.visualize import image_grid

    return image_grid(x.detach(), ncols=1, pad=0, normalize="each")


def cmd_filters(args: argparse.Namespace) -> Path:
    from cnnlab.inspect.visualize import filter_grid, save_png

    model, _, _ = _model(args.model)
    model = _one_network(model, args.model, args.layer)
    return save_png(filter_grid(model, layer=args.layer, mode=args.mode), args.output, scale=8)


def cmd_features(args: argparse.Namespace) -> Path:
    from cnnlab.inspect.visualize import feature_map_grid, feature_maps, save_png

    model, config, shape = _model(args.model)
    model = _one_network(model, args.model, args.layer)
    maps = feature_maps(model, _image(args.image, config, shape), args.layer)
    return save_png(feature_map_grid(maps[args.layer]), args.output, scale=4)


def cmd_attribution(args: argparse.Namespace) -> Path:
    import torch

    from cnnlab.inspect import attribution
    from cnnlab.inspect.visualize import save_png

    model, config, shape = _model(args.model)
    x = _image(args.image, config, shape)
    target = None if args.target is None else torch.tensor([args.target])
    if args.method == "gradcam":
        heat = attribution.grad_cam(model, x, target, layer=args.layer)
    elif args.method == "occlusion":
        heat = attribution.occlusion(model, x, target, patch=max(2, shape[1] // 7))
    else:
        method = {"guided": "guided_backprop"}.get(args.method, args.method)
        heat = getattr(attribution, method)(model, x, target)
    picture = attribution.overlay(_to_display(x), heat[0].detach(), alpha=0.5)
    return save_png(picture, args.output, scale=4)


def cmd_maximise(args: argparse.Namespace) -> Path:
    from cnnlab.inspect.dream import activation_maximisation
    from cnnlab.inspect.visualize import save_png

    model, _, shape = _model(args.model)
    if args.cls is None or args.layer:  # a class of the whole ensemble needs no layer
        model = _one_network(model, args.model, args.layer)
    kind: Literal["channel", "class"] = "class" if args.cls is not None else "channel"
    target = args.cls if args.cls is not None else args.channel
    image, history = activation_maximisation(
        model,
        target,
        kind=kind,
        layer=args.layer,
        steps=args.steps,
        input_shape=_image_shape(shape),
    )
    print(f"{kind} {target}: activation {history[0]:.4g} -> {history[-1]:.4g}")
    return save_png(_to_display(image), args.output, scale=4)


def cmd_dream(args: argparse.Namespace) -> Path:
    from cnnlab.inspect.dream import deep_dream
    from cnnlab.inspect.visualize import save_png

    model, config, shape = _model(args.model)
    model = _one_network(model, args.model, args.layer)
    dreamed = deep_dream(model, _image(args.image, config, shape), args.layer, steps=args.steps)
    return save_png(_to_display(dreamed), args.output, scale=4)


def _test_split(args: argparse.Namespace) -> tuple[nn.Module, list[str], Any]:
    """A saved model, its class names and the test split of its (or --dataset's) data."""
    from cnnlab.core.errors import ConfigError
    from cnnlab.models.saved import config_of, dataset_of, load

    if not Path(args.model).is_dir():
        raise ConfigError(
            f"{args.kind} needs a saved model folder (e.g. runs/demo), received {args.model!r}"
        )
    model = load(args.model)
    config = config_of(model)
    _, data = dataset_of(model, args.dataset)
    if args.images:
        data.x_test = data.x_test[: args.images]
        data.targets_test = {k: v[: args.images] for k, v in data.targets_test.items()}
        data.y_test = data.targets_test.get("label")
    return model, list(config.get("classes") or data.classes), data


def cmd_confusion(args: argparse.Namespace) -> Path:
    from cnnlab.engine.predictor import probabilities
    from cnnlab.inspect import evaluation

    model, classes, data = _test_split(args)
    probs = probabilities(model, data.x_test)
    cm = evaluation.confusion_matrix(data.y_test, probs.argmax(1), len(classes))
    print(evaluation.format_report(cm, classes))
    print("most confused (true -> predicted: count):")
    for true, pred, count in evaluation.most_confused(cm, classes, k=5):
        print(f"  {true} -> {pred}: {count}")
    return evaluation.confusion_png(cm, classes, args.output, normalised=not args.counts)


def cmd_embedding(args: argparse.Namespace) -> Path:
    from cnnlab.inspect import embedding
    from cnnlab.models.saved import config_of, preprocess

    model, classes, data = _test_split(args)
    inputs = preprocess(data.x_test, config_of(model))
    features = embedding.penultimate_features(_one_network(model, args.model), inputs)
    points = embedding.project(features, args.method)
    return embedding.scatter_png(points, data.y_test, classes, args.output)


def cmd_style(args: argparse.Namespace) -> Path:
    from torch import nn

    from cnnlab.core.errors import ConfigError
    from cnnlab.engine.predictor import read_image
    from cnnlab.inspect.style import style_transfer
    from cnnlab.inspect.visualize import image_grid, save_png

    model, _, shape = _model(args.model)
    model = _one_network(model, args.model, args.content_layer)
    features = getattr(model, "features", model)  # zoo CNNs keep their conv stack there
    convs = [n for n, m in features.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"{args.model} has no Conv2d layers to take style from")
    style_layers = args.style_layers.split(",") if args.style_layers else convs[:3]
    content_layers = [args.content_layer or convs[min(1, len(convs) - 1)]]
    size = (shape[0], args.size, args.size)
    content = read_image(args.image, size)[None].float() / 255
    style = read_image(args.style, size)[None].float() / 255
    image, history = style_transfer(
        content,
        style,
        features,
        content_layers,
        style_layers,
        steps=args.steps,
        style_weight=args.style_weight,
    )
    drop = history["style"][0] / max(history["style"][-1], 1e-30)
    print(
        f"style loss {history['style'][0]:.3g} -> {history['style'][-1]:.3g} ({drop:.1f}x), "
        f"content loss {history['content'][0]:.3g} -> {history['content'][-1]:.3g}"
    )
    return save_png(image_grid(image, ncols=1, pad=0, normalize=None), args.output, scale=2)


def add_inspect_parser(sub: Any) -> None:
    """Register `cnnlab inspect filters|features|attribution|maximise|dream|confusion|
    embedding|style`."""
    parser = sub.add_parser("inspect", help="visualise what a model learned (PNG files)")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    model_help = "saved model folder (e.g. runs/demo) or a registry name (random weights)"

    def add(name: str, func: Any, help: str, image: bool = False) -> argparse.ArgumentParser:
        p = kinds.add_parser(name, help=help)
        p.add_argument("model", help=model_help)
        if image:
            p.add_argument("image", help="an image file")
        p.add_argument("-o", "--output", default=f"{name}.png", help="PNG to write")
        p.set_defaults(func=lambda args: _report(func(args)))
        return p

    p = add("filters", cmd_filters, "learned filters of a conv layer as a grid")
    p.add_argument("--layer", help="conv layer name (default: the first conv)")
    p.add_argument("--mode", default="auto", choices=["auto", "rgb", "per_channel", "sum"])
    p = add("features", cmd_features, "feature maps of an image at a layer", image=True)
    p.add_argument("--layer", required=True, help="module name, e.g. features.0")
    p = add("attribution", cmd_attribution, "where the model looked", image=True)
    p.add_argument("--method", default="gradcam", choices=ATTRIBUTIONS)
    p.add_argument("--layer", help="Grad-CAM layer (default: the last feature maps)")
    p.add_argument("--target", type=int, help="class index (default: the predicted class)")
    p = add("maximise", cmd_maximise, "an input that excites a channel or a class")
    p.add_argument("--channel", type=int, default=0)
    p.add_argument("--class", dest="cls", type=int, help="maximise this class's logit instead")
    p.add_argument("--layer", help="layer for --channel (default: the last conv)")
    p.add_argument("--steps", type=int, default=200)
    p = add("dream", cmd_dream, "Deep Dream on an image", image=True)
    p.add_argument("--layer", required=True, help="module whose activation norm to raise")
    p.add_argument("--steps", type=int, default=20, help="steps per octave")
    # t-SNE of all 10,000 test images takes minutes; 2,000 show the same clusters.
    for name, func, help, images in (
        ("confusion", cmd_confusion, "confusion matrix and per-class P/R/F1 on the test set", None),
        ("embedding", cmd_embedding, "penultimate features of the test set in 2-D", 2000),
    ):
        p = add(name, func, help)
        p.add_argument("--dataset", help="dataset name (default: the one the model trained on)")
        p.add_argument(
            "--images",
            type=int,
            default=images,
            help=f"first N test images (default: {images or 'all'})",
        )
    p.add_argument("--method", default="tsne", choices=["pca", "tsne"])
    kinds.choices["confusion"].add_argument(
        "--counts", action="store_true", help="colour by counts, not row-normalised"
    )
    p = add("style", cmd_style, "Gatys style transfer onto an image", image=True)
    p.add_argument("style", help="the image whose style to copy")
    p.add_argument("--content-layer", help="feature layer for the content loss")
    p.add_argument("--style-layers", help="comma-separated layers (default: first 3 convs)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=64, help="side of the square output image")
    p.add_argument(
        "--style-weight",
        type=float,
        default=1e7,
        help="style loss multiplier (1e7 suits random VGG weights; see the docs)",
    )


def _report(path: Path) -> int:
    print(f"wrote {path}")
    return 0
