"""The parts of the segmentation models against published counts and hand-derived oracles:
U-Net, SegNet's remembered max-pool winners, FCN's pyramid and upsampling, DeepLab's
ASPP and PSPNet's pyramid pooling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import create_model
from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.layers.conv import SubPixelUpsample
from cnnlab.models.deeplab import ASPP, ImagePooling
from cnnlab.models.fcn import FCN, upsample
from cnnlab.models.pspnet import PyramidPooling
from cnnlab.models.pyramid import FeaturePyramid, feature_pyramid
from cnnlab.models.segnet import PAPER_CONVS, PAPER_WIDTHS, SegNet
from cnnlab.models.unet import UNet


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(build: type[nn.Module], *args: object, **kwargs: object) -> nn.Module:
    # On the meta device no memory is allocated: a 31M-parameter U-Net builds in ms.
    with torch.device("meta"):
        return build(*args, **kwargs)


# --- U-Net ---------------------------------------------------------------------------


def double_conv_params(c_in: int, c_out: int, batch_norm: bool) -> int:
    # Two 3x3 convs; with BN: no conv bias, BN scale + shift; without: conv biases.
    return 9 * c_in * c_out + 9 * c_out * c_out + (4 if batch_norm else 2) * c_out


def unet_params_by_hand(in_channels: int, num_classes: int, batch_norm: bool) -> int:
    """Ronneberger et al. 2015, Figure 1, at 64 base channels."""
    widths = [64, 128, 256, 512, 1024]
    down = double_conv_params(in_channels, 64, batch_norm) + sum(
        double_conv_params(a, b, batch_norm) for a, b in itertools.pairwise(widths)
    )
    # Each up level: a 2x2 up-conv C -> C/2 with bias, then a double conv (C/2 + C/2) -> C/2.
    up = sum(
        4 * c * (c // 2) + c // 2 + double_conv_params(c, c // 2, batch_norm) for c in widths[1:]
    )
    return down + up + 64 * num_classes + num_classes


def test_unet_count_matches_milesial_pytorch_unet() -> None:
    # milesial/Pytorch-UNet (unet/unet_parts.py at 21d7850; bias-free convs before BN since
    # 514f18e, Dec 2021) with bilinear=False, n_channels=3, n_classes=3: 31,037,763, the
    # "~31.0M" quoted for it.
    model = on_meta(UNet, 3, 3, base_channels=64)
    assert n_params(model) == 31_037_763 == unet_params_by_hand(3, 3, batch_norm=True)


def test_unet_count_matches_the_paper_by_hand() -> None:
    # The paper's net: 1 channel in, 2 classes, biased convs, no BN. Padding the convs
    # changes no weight, so this is its count.
    model = on_meta(UNet, 1, 2, base_channels=64, batch_norm=False)
    assert n_params(model) == 31_030_658 == unet_params_by_hand(1, 2, batch_norm=False)


def test_unet_subpixel_upsampling() -> None:
    transposed, subpixel = UNet(), UNet(upsample="subpixel")
    assert all(isinstance(up.up, SubPixelUpsample) for up in subpixel.decoder)
    # Per level, C -> C/2: a 3x3 conv to 4 * C/2 channels (+ biases) replaces the 2x2
    # up-conv (4 * C * C/2 + C/2).
    extra = sum(9 * c * 2 * c + 2 * c - (2 * c * c + c // 2) for c in (32, 64, 128, 256))
    assert n_params(subpixel) - n_params(transposed) == extra
    assert subpixel(torch.randn(2, 1, 48, 16)).shape == (2, 2, 48, 16)
    with pytest.raises(ConfigError, match="upsample='bilinear'"):
        UNet(upsample="bilinear")


def test_unet_depth_sets_the_stride_28_pixels_need_depth_2() -> None:
    with pytest.raises(ShapeMismatchError, match="multiples of 16"):
        UNet()(torch.zeros(1, 1, 28, 28))
    model = UNet(depth=2)
    assert model.stride == 4 and model(torch.zeros(2, 1, 28, 28)).shape == (2, 2, 28, 28)


# --- SegNet --------------------------------------------------------------------------

# Caffe's SegNet (alexgkendall/SegNet-Tutorial, Models/segnet_train.prototxt), 3 channels
# in, CamVid's 11 classes: every conv 3x3 with a bias, every conv but the last with a
# BN (scale + shift). (in, out) of each conv, encoder then decoder:
CAFFE_SEGNET = [
    *[(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)],
    *[(256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)],
    *[(512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 256)],
    *[(256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64), (64, 11)],
]


def test_segnet_count_matches_the_caffe_model() -> None:
    caffe = sum(9 * a * b + b for a, b in CAFFE_SEGNET) + sum(2 * b for _, b in CAFFE_SEGNET[:-1])
    assert caffe == 29_449_355
    # Ours drops the conv biases that a BN follows (one per BN channel): BN cancels them.
    cancelled = sum(b for _, b in CAFFE_SEGNET[:-1])
    with torch.device("meta"):
        model = SegNet(3, 11, PAPER_WIDTHS, PAPER_CONVS)
    assert n_params(model) == caffe - cancelled == 29_441_419
    # Section 3: dropping VGG-16's fully connected layers takes the encoder "from 134M to 14.7M".
    assert round(n_params(model.features) / 1e6, 1) == 14.7


def test_segnet_decoder_puts_values_back_at_the_encoder_winners() -> None:
    torch.manual_seed(0)
    model = SegNet(widths=(4, 8, 8), convs=(1, 2, 1)).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.bias, 5.0)  # ReLU keeps every value: no ties at 0 in a window
    x = torch.randn(2, 1, 16, 24)
    features = model.forward_features(x)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = model.unpool.register_forward_hook(lambda m, args, out: calls.append((args[0], out)))
    with torch.no_grad():
        model.forward_head(features, (16, 24))
    hook.remove()
    assert len(calls) == len(features) == 3
    # The decoder runs deepest first: call k unpools with the winners of features[-1 - k].
    for (small, out), encoder_map in zip(calls, reversed(features), strict=True):
        e = encoder_map.detach().numpy()
        B, C, H, W = e.shape
        windows = e.reshape(B, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5)
        winner = windows.reshape(B, C, H // 2, W // 2, 4).argmax(-1)  # 0..3 in each window
        expected = np.zeros_like(e)
        b, c, i, j = np.indices(winner.shape)
        expected[b, c, 2 * i + winner // 2, 2 * j + winner % 2] = small.numpy()
        assert np.array_equal(out.numpy(), expected)


def test_segnet_refuses_mismatched_tables() -> None:
    with pytest.raises(ConfigError, match=r"widths=\[8, 16\] and convs=\[2\]"):
        SegNet(widths=(8, 16), convs=(2,))


# --- FCN and the feature pyramid -----------------------------------------------------


def test_pyramid_finds_the_strides_of_zoo_backbones() -> None:
    assert feature_pyramid("resnet_mini", 1).strides == [1, 2, 4, 8]
    assert feature_pyramid("resnet_mini", 1).channels == [32, 32, 64, 128]
    with torch.device("meta"):
        assert feature_pyramid("resnet18", 3, num_levels=3).strides == [8, 16, 32]
        assert feature_pyramid("vgg11", 3).strides == [1, 2, 4, 8, 16]
        with pytest.raises(ConfigError, match="exact factors"):
            feature_pyramid("alexnet", 3)  # an unpadded 11x11/4 conv: 64 -> 15
        with pytest.raises(ConfigError, match=r"num_levels in 1\.\.4"):
            feature_pyramid("resnet_mini", 1, num_levels=5)


def test_pyramid_levels_are_the_backbone_own_maps() -> None:
    torch.manual_seed(0)
    backbone = create_model("resnet_mini").eval()
    pyramid = FeaturePyramid(backbone.features, 1).eval()
    x = torch.randn(2, 1, 32, 32)
    levels = pyramid(x)
    assert torch.equal(levels[-1], backbone.forward_features(x))
    assert torch.equal(levels[0], backbone.features[0](x))  # the stem conv, before its pool
    assert [lv.shape[-1] for lv in levels] == [32, 16, 8, 4]


def test_fcn8s_fuses_three_levels_by_upsample_and_add() -> None:
    torch.manual_seed(0)
    model = FCN(3, num_classes=4).eval()
    x = torch.randn(2, 1, 32, 32)
    levels = model.forward_features(x)
    s1, s2, s3 = (score(f) for score, f in zip(model.head.score, levels, strict=True))

    def up(t: torch.Tensor, r: int) -> torch.Tensor:
        return F.interpolate(t, scale_factor=r, mode="bilinear", align_corners=False)

    expected = up(up(up(s3, 2) + s2, 2) + s1, 2)  # strides 8 -> 4 -> 2 -> 1
    assert torch.allclose(model(x), expected, atol=1e-6)
    assert n_params(model) - n_params(FCN(1, num_classes=4)) == (32 + 1) * 4 + (64 + 1) * 4


@pytest.mark.parametrize("scale", [2, 3, 8])
def test_transposed_upsampling_starts_as_bilinear(scale: int) -> None:
    # The FCN paper initialises its learned upsampling to bilinear interpolation; away
    # from the border (where the transposed conv sees zero padding) they agree.
    layer = upsample("transposed", 3, scale)
    x = torch.randn(2, 3, 6, 5)
    ours = layer(x)
    oracle = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    assert ours.shape == oracle.shape == (2, 3, 6 * scale, 5 * scale)
    inner = (..., slice(scale, -scale), slice(scale, -scale))
    assert torch.allclose(ours[inner], oracle[inner], atol=1e-6)


@pytest.mark.parametrize("kind", ["transposed", "subpixel"])
def test_fcn_learned_upsampling_trains_with_the_head(kind: str) -> None:
    model = FCN(3, num_classes=3, upsample=kind)
    assert model(torch.randn(2, 1, 16, 24)).shape == (2, 3, 16, 24)
    model.reset_classifier(5)
    assert model(torch.randn(2, 1, 16, 24)).shape == (2, 5, 16, 24)


def test_fcn_on_resnet18_has_the_paper_strides_and_small_images_need_a_shallow_body() -> None:
    model = create_model("fcn8s", in_channels=3, num_classes=3, backbone="resnet18").eval()
    assert model.features.strides == [8, 16, 32]
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    # 28x28 images: the default backbone's stride is 8; a two-stage resnet_mini has 4.
    with pytest.raises(ShapeMismatchError, match=r"multiples of 8 .*\(1, 1, 28, 28\)"):
        create_model("fcn8s")(torch.zeros(1, 1, 28, 28))
    shallow = create_model("fcn8s", backbone_args={"widths": [32, 64], "blocks": [1, 1]})
    assert shallow.stride == 4 and shallow(torch.zeros(2, 1, 28, 28)).shape == (2, 2, 28, 28)


# --- DeepLab v3's ASPP ---------------------------------------------------------------


def aspp_params_by_hand(c_in: int, c: int, n_rates: int = 3) -> int:
    # 1x1 branch, n 3x3 branches, the image-level 1x1, the 1x1 fusing (n + 2) * c
    # channels; no conv biases; BN scale + shift after each of the n + 3 convs.
    convs = c_in * c + n_rates * 9 * c_in * c + c_in * c + (n_rates + 2) * c * c
    return convs + (n_rates + 3) * 2 * c


def test_aspp_parameter_count_by_hand() -> None:
    assert n_params(ASPP(128, 64, (2, 4, 6))) == aspp_params_by_hand(128, 64) == 258_816
    # The paper's: ResNet's 2048 channels, 256 per branch.
    assert n_params(on_meta(ASPP, 2048, 256, (6, 12, 18))) == aspp_params_by_hand(2048, 256)
    model = create_model("deeplab")
    assert model.aspp.branches[1][0].dilation == (2, 2)  # the default rates reach the ASPP
    assert n_params(model) == n_params(model.features) + 258_816 + 64 * 2 + 2


@pytest.mark.parametrize("rate", [1, 2, 6])
def test_aspp_branch_sees_a_3x3_grid_spaced_by_its_rate(rate: int) -> None:
    aspp = ASPP(1, 1, (rate,))
    conv = aspp.branches[1][0]
    assert conv.kernel_size == (3, 3) and conv.dilation == (rate, rate)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        impulse = torch.zeros(1, 1, 21, 21)
        impulse[0, 0, 10, 10] = 1.0
        seen = conv(impulse)[0, 0].nonzero().tolist()
    # The output pixels that see the impulse: receptive field 2 * rate + 1 wide, 9 taps.
    assert seen == [[10 + a * rate, 10 + b * rate] for a in (-1, 0, 1) for b in (-1, 0, 1)]


def test_aspp_image_pooling_branch_sees_the_whole_image() -> None:
    branch = ImagePooling(2, 3).eval()
    x = torch.randn(1, 2, 8, 8)
    y = branch(x)
    assert y.shape == (1, 3, 8, 8) and torch.equal(y, y[..., :1, :1].expand_as(y))
    x[0, :, 7, 7] += 10.0  # a far corner changes every output pixel
    assert not torch.isclose(branch(x)[0, :, 0, 0], y[0, :, 0, 0]).all()


def test_deeplab_rates_are_an_argument() -> None:
    model = create_model("deeplab", rates=[1, 3, 5, 7])
    assert [b[0].dilation[0] for b in model.aspp.branches[1:-1]] == [1, 3, 5, 7]
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 2, 32, 32)
    with pytest.raises(ConfigError, match=r"rates=\[0, 2\]"):
        create_model("deeplab", rates=[0, 2])


# --- PSPNet's pyramid pooling --------------------------------------------------------


def test_pyramid_pooling_shapes_and_count_by_hand() -> None:
    ppm = PyramidPooling(128, (1, 2, 3, 6)).eval()
    x = torch.randn(2, 128, 8, 8)
    # Each bin: a 1x1 conv 128 -> 32 (no bias) and a BN (scale + shift).
    assert n_params(ppm) == 4 * (128 * 32 + 2 * 32) == 16_640
    assert [stage[0](x).shape[-1] for stage in ppm.stages] == [1, 2, 3, 6]  # pooled grids
    y = ppm(x)
    assert y.shape == (2, 256, 8, 8) and ppm.out_channels == 256
    assert torch.equal(y[:, :128], x)  # the maps themselves come first
    whole_image = y[:, 128:160]  # the 1x1 bin: one value per image and channel
    assert torch.allclose(whole_image, whole_image[..., :1, :1].expand_as(whole_image))


def test_pspnet_count_by_hand() -> None:
    model = create_model("pspnet", num_classes=3)
    # PPM 16,640; 3x3 conv 256 -> 64 with BN; 1x1 classifier 64 -> 3 with bias.
    head = 16_640 + 9 * 256 * 64 + 2 * 64 + 64 * 3 + 3
    assert n_params(model) == n_params(model.features) + head
    with pytest.raises(ConfigError, match=r"bins=\[\]"):
        create_model("pspnet", bins=[])
