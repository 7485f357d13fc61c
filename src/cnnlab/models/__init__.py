"""The model zoo: importing this package registers every model."""

from cnnlab.models import (
    alexnet,
    cifar_resnet,
    densenet,
    efficientnet,
    googlenet,
    highway,
    inception_v3,
    keras_cifar,
    lenet,
    mobilenet,
    resnet,
    resnet_mini,
    seed_nets,
    senet,
    vgg,
    wide_resnet,
    xception,
)
from cnnlab.models.base import Classifier
from cnnlab.models.ensemble import Ensemble, build_model
from cnnlab.models.registry import create_model, list_models, model_info, register_model

__all__ = [
    "Classifier",
    "Ensemble",
    "alexnet",
    "build_model",
    "cifar_resnet",
    "create_model",
    "densenet",
    "efficientnet",
    "googlenet",
    "highway",
    "inception_v3",
    "keras_cifar",
    "lenet",
    "list_models",
    "mobilenet",
    "model_info",
    "register_model",
    "resnet",
    "resnet_mini",
    "seed_nets",
    "senet",
    "vgg",
    "wide_resnet",
    "xception",
]
