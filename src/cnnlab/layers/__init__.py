"""Convolution, pooling and activation layers and the classic CNN blocks."""

from cnnlab.layers.activations import ACTIVATIONS, Maxout, get_activation
from cnnlab.layers.arithmetic import conv_macs, conv_output_size, conv_params, same_padding
from cnnlab.layers.audio import (
    MFCC,
    LogMel,
    MelSpectrogram,
    SpecAugment,
    Spectrogram,
    mel_filterbank,
)
from cnnlab.layers.blocks import HighwayConv2d, InvertedResidual, ResidualBlock, SqueezeExcitation
from cnnlab.layers.causal import CausalConv1d
from cnnlab.layers.conv import (
    Conv,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose2d,
    SeparableConv2d,
    SubPixelUpsample,
)
from cnnlab.layers.dense import DenseBlock, DenseLayer, Transition
from cnnlab.layers.dropout import Dropout, dropout
from cnnlab.layers.inception import InceptionModule
from cnnlab.layers.local import LocallyConnected2d
from cnnlab.layers.pool import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    ChannelPool,
    GlobalPool2d,
    MaxPool2d,
)

__all__ = [
    "ACTIVATIONS",
    "MFCC",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "CausalConv1d",
    "ChannelPool",
    "Conv",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose2d",
    "DenseBlock",
    "DenseLayer",
    "Dropout",
    "GlobalPool2d",
    "HighwayConv2d",
    "InceptionModule",
    "InvertedResidual",
    "LocallyConnected2d",
    "LogMel",
    "MaxPool2d",
    "Maxout",
    "MelSpectrogram",
    "ResidualBlock",
    "SeparableConv2d",
    "SpecAugment",
    "Spectrogram",
    "SqueezeExcitation",
    "SubPixelUpsample",
    "Transition",
    "conv_macs",
    "conv_output_size",
    "conv_params",
    "dropout",
    "get_activation",
    "mel_filterbank",
    "same_padding",
]
