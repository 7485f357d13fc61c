"""The model zoo: importing this package registers every model."""

from cnnlab.models import keras_cifar, lenet, resnet_mini
from cnnlab.models.base import Classifier
from cnnlab.models.registry import create_model, list_models, model_info, register_model

__all__ = [
    "Classifier",
    "create_model",
    "keras_cifar",
    "lenet",
    "list_models",
    "model_info",
    "register_model",
    "resnet_mini",
]
