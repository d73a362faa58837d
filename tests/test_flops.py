"""spec/flops.py: MACs of convs and denses, from the spec alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netparity.spec import Activation, AvgPool2d, BatchNorm, Conv2d, Dense, Flatten, Spec, zoo
from netparity.spec.flops import flops


def test_tiny_spec_by_hand():
    # 3x8x8 -> conv 4@3x3 pad 1 -> 4x8x8: 4*8*8 * 3*3*3 = 6912
    #       -> conv 6@1x1 /2 -> 6x4x4: 6*4*4 * 4 = 384
    #       -> flatten 96 -> dense 5: 480
    spec = Spec("tiny", (3, 8, 8), (Conv2d(4, 3, padding=1), BatchNorm(), Activation("relu"),
                                    Conv2d(6, 1, stride=2, bias=False), Flatten(), Dense(5)))
    count = flops(spec)
    assert [(l.kind, l.macs) for l in count.layers] == [("conv2d", 6912), ("conv2d", 384), ("dense", 480)]
    assert count.macs_per_image == 6912 + 384 + 480
    assert count.forward_flops_per_image == 2 * count.macs_per_image
    assert count.train_flops_per_image == 6 * count.macs_per_image
    assert count.flops_per_image("infer") == count.forward_flops_per_image
    assert count.flops_per_image("train") == count.train_flops_per_image
    with pytest.raises(ValueError):
        count.flops_per_image("both")
    # an Inference works as well as a Spec
    assert flops(spec.infer()).macs_per_image == count.macs_per_image


def test_grouped_conv_divides_by_groups():
    spec = Spec("g", (8, 4, 4), (Conv2d(8, 3, padding=1, groups=4),))
    assert flops(spec).macs_per_image == 8 * 4 * 4 * (8 // 4) * 9


def test_lenet_by_hand():
    # conv 6@5x5 pad 2: 6*28*28*25; conv 16@5x5 on 6x14x14 -> 16x10x10: 16*100*6*25;
    # dense 400->120->84->10
    expected = 6 * 28 * 28 * 25 + 16 * 100 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10
    assert expected == 416_520
    assert flops(zoo.get("lenet")).macs_per_image == expected


def test_lenet_bn_by_hand():
    # no padding: conv 6@5x5 -> 6x24x24; pool -> 12; conv 16@5x5 -> 16x8x8; pool -> 16x4x4 = 256
    expected = 6 * 24 * 24 * 25 + 16 * 64 * 6 * 25 + 256 * 120 + 120 * 84 + 84 * 10
    assert expected == 281_640
    assert flops(zoo.get("lenet_bn")).macs_per_image == expected


def _resnet18_macs_by_hand(size: int = 224, classes: int = 1000) -> int:
    """torchvision ResNet-18 at 3 x size x size, convs and the fc."""
    total = 0
    s = (size + 2 * 3 - 7) // 2 + 1  # stem conv 7x7 /2 pad 3
    total += 64 * s * s * 3 * 49
    s = (s + 2 - 3) // 2 + 1  # max pool 3 /2 pad 1
    channels = 64
    for stage, out_c in enumerate((64, 128, 256, 512)):
        for unit in range(2):
            stride = 2 if stage > 0 and unit == 0 else 1
            o = (s + 2 - 3) // stride + 1
            total += out_c * o * o * channels * 9  # conv1 3x3
            total += out_c * o * o * out_c * 9  # conv2 3x3
            if stride == 2:
                total += out_c * o * o * channels  # 1x1 projection
            channels, s = out_c, o
    return total + 512 * classes


def test_torchvision_resnet18_known_value():
    count = flops(zoo.get("tv_resnet18"))
    assert count.input_shape == (3, 224, 224)
    assert _resnet18_macs_by_hand() == 1_814_073_344
    assert count.macs_per_image == 1_814_073_344
    assert 1.80e9 < count.macs_per_image < 1.83e9  # torchvision's published 1.81 GFLOPS (MACs)


def test_against_torch_flop_counter():
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from netparity.backends import get_backend

    spec = zoo.get("lenet_bn")
    model = get_backend("torch").build(spec)
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros((2, *spec.input_shape)))
    # torch counts 2 FLOPs per MAC of conv and linear, bias adds not counted
    assert counter.get_total_flops() == 2 * flops(spec).forward_flops_per_image


@settings(max_examples=40, deadline=None)
@given(in_c=st.integers(1, 8), out_c=st.integers(1, 16), factor=st.integers(2, 5), size=st.integers(3, 12),
       kernel=st.integers(1, 3), stride=st.integers(1, 2))
def test_conv_macs_scale_with_out_channels(in_c, out_c, factor, size, kernel, stride):
    def macs(channels):
        spec = Spec("c", (in_c, size, size), (Conv2d(channels, kernel, stride=stride), AvgPool2d(1, 1)))
        return flops(spec).macs_per_image

    assert macs(out_c * factor) == factor * macs(out_c)
    assert macs(out_c) > 0
