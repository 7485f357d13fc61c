"""The model zoo: importing this package registers every model."""

from cnnlab.models import (
    alexnet,
    cifar_resnet,
    keras_cifar,
    lenet,
    resnet,
    resnet_mini,
    vgg,
    wide_resnet,
)
from cnnlab.models.base import Classifier
from cnnlab.models.registry import create_model, list_models, model_info, register_model

__all__ = [
    "Classifier",
    "alexnet",
    "cifar_resnet",
    "create_model",
    "keras_cifar",
    "lenet",
    "list_models",
    "model_info",
    "register_model",
    "resnet",
    "resnet_mini",
    "vgg",
    "wide_resnet",
]
