"""Conformance cases: small specs that pin down each layer kind's edges.

As ONNX's node tests do for its operators, each case is a tiny network around one kind at
one awkward geometry (a stride larger than the kernel, ceil mode with padding, dilation with
padding, groups equal to the channels, odd and non-square sizes, asymmetric padding,
broadcasting merges, per-feature layers after a flatten). tests/test_conformance.py runs
every case in the NumPy reference and in every installed framework and compares them layer
by layer; adding a kind means adding its cases here. A case names the kinds it covers, so
a test can check that every kind is covered.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layers import (Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Branches, ChannelScale, ChannelShuffle,
                     ChannelSlice, ConcatBranches, Conv2d, Crop2d, Dense, DenseConcat, DropPath, Dropout, Flatten,
                     GlobalAvgPool, GlobalMaxPool, Identity, Layer, LayerNorm, MaxPool2d, Normalize, Pad2d,
                     PReLU, Residual, Sequence)
from .model import Spec


@dataclass(frozen=True)
class Case:
    name: str
    spec: Spec
    covers: tuple[str, ...]  # the layer kinds this case is about


def _case(name: str, input_shape, blocks: list[Layer], covers) -> Case:
    return Case(name, Spec(f"conformance_{name}", tuple(input_shape), tuple(blocks)), tuple(covers))


def _gate(channels: int, squeeze: int, gate: str) -> Sequence:
    """A squeeze-and-excitation gate: (C, H, W) -> (C, 1, 1)."""
    return Sequence(layers=(GlobalAvgPool(keepdims=True), Conv2d(squeeze, 1), Activation("relu"),
                            Conv2d(channels, 1), Activation(gate)))


def _activation_cases() -> list[Case]:
    functions = [Activation("relu"), Activation("sigmoid"), Activation("tanh"), Activation("leaky_relu"),
                 Activation("leaky_relu", negative_slope=0.2), Activation("relu6"), Activation("elu"),
                 Activation("elu", alpha=0.5), Activation("silu"), Activation("hardswish"),
                 Activation("hardsigmoid"), Activation("gelu"), Activation("gelu", approximate="tanh"),
                 Activation("softplus"), Activation("softmax")]
    cases = []
    for act in functions:
        label = act.describe().replace(" ", "_").replace("(", "").replace(")", "")
        # a conv first, so values span the interesting ranges (|x| up to ~5, both signs)
        cases.append(_case(f"activation_{label}_image", (3, 7, 6), [Conv2d(4, 3, padding=1), act], ["activation"]))
        cases.append(_case(f"activation_{label}_flat", (2, 4, 4), [Flatten(), Dense(9), act], ["activation"]))
    return cases


def cases() -> list[Case]:
    """Every conformance case, in a stable order."""
    c = [
        # conv2d
        _case("conv_stride_larger_than_kernel", (3, 9, 9), [Conv2d(4, 2, stride=3)], ["conv2d"]),
        _case("conv_kernel1_stride2_odd", (3, 7, 5), [Conv2d(5, 1, stride=2)], ["conv2d"]),
        _case("conv_dilation_with_padding", (3, 10, 11), [Conv2d(4, 3, padding=2, dilation=2)], ["conv2d"]),
        _case("conv_dilation_stride2", (2, 13, 13), [Conv2d(3, 3, stride=2, padding=2, dilation=2)], ["conv2d"]),
        _case("conv_depthwise", (6, 8, 8), [Conv2d(6, 3, padding=1, groups=6)], ["conv2d"]),
        _case("conv_depthwise_multiplier2_stride2", (4, 9, 9), [Conv2d(8, 3, stride=2, padding=1, groups=4)],
              ["conv2d"]),
        _case("conv_grouped", (6, 7, 7), [Conv2d(4, 3, groups=2, bias=False)], ["conv2d"]),
        _case("conv_asymmetric_padding_same_stride2", (3, 8, 8), [Conv2d(4, 3, stride=2, padding=(0, 1, 0, 1))],
              ["conv2d"]),
        _case("conv_rectangular_kernel_and_padding", (3, 9, 7), [Conv2d(4, (1, 3), padding=(0, 1)),
                                                                 Conv2d(4, (3, 1), padding=(2, 0, 1, 1))],
              ["conv2d"]),
        _case("pad2d_asymmetric", (2, 5, 6), [Pad2d((1, 2, 0, 3)), Conv2d(3, 3)], ["pad2d"]),
        _case("pad2d_symmetric", (2, 5, 5), [Pad2d(1), MaxPool2d(2)], ["pad2d"]),
        _case("crop2d_asymmetric", (2, 7, 6), [Conv2d(3, 1), Crop2d((1, 2, 0, 3)), Conv2d(2, 2)], ["crop2d"]),
        _case("crop2d_to_1x1", (3, 4, 5), [Crop2d((2, 1, 3, 1)), Conv2d(2, 1)], ["crop2d"]),
        _case("crop2d_symmetric", (2, 7, 6), [Crop2d((2, 1)), Conv2d(3, 3, padding=1)], ["crop2d"]),
        # NASNet's shift: pad after, crop before, then a strided pool sees the odd pixels
        _case("crop2d_after_pad2d", (3, 5, 6), [Conv2d(4, 1), Pad2d((0, 1, 0, 1)), Crop2d((1, 0, 1, 0)),
                                                AvgPool2d(1, 2)], ["crop2d", "pad2d"]),
        # pooling
        _case("maxpool_ceil_with_padding", (3, 8, 8), [MaxPool2d(3, 2, 1, ceil_mode=True)], ["maxpool2d"]),
        _case("maxpool_ceil_odd", (3, 7, 7), [MaxPool2d(2, 2, ceil_mode=True)], ["maxpool2d"]),
        _case("maxpool_stride_larger_than_kernel", (3, 10, 10), [MaxPool2d(2, 3)], ["maxpool2d"]),
        _case("avgpool_exclude_pad", (3, 7, 7), [AvgPool2d(3, 2, 1, count_include_pad=False)], ["avgpool2d"]),
        _case("avgpool_ceil_with_padding", (3, 8, 8), [AvgPool2d(3, 2, 1, ceil_mode=True)], ["avgpool2d"]),
        _case("adaptive_avgpool_uneven", (3, 7, 9), [AdaptiveAvgPool2d((3, 4))], ["adaptive_avgpool2d"]),
        _case("adaptive_avgpool_to_one", (3, 5, 5), [AdaptiveAvgPool2d(1), Flatten()], ["adaptive_avgpool2d"]),
        _case("global_avgpool_flat", (4, 5, 3), [GlobalAvgPool(), Dense(3)], ["global_avgpool"]),
        _case("global_avgpool_keepdims", (4, 5, 3), [GlobalAvgPool(keepdims=True), Conv2d(2, 1)], ["global_avgpool"]),
        _case("global_maxpool_flat", (4, 5, 6), [GlobalMaxPool(), Dense(3)], ["global_maxpool"]),
        _case("global_maxpool_keepdims", (4, 6, 5), [GlobalMaxPool(keepdims=True), Conv2d(2, 1)],
              ["global_maxpool"]),
        # normalisation and per-channel layers, on images and after a flatten
        _case("batchnorm_image", (3, 5, 5), [Conv2d(4, 3), BatchNorm()], ["batchnorm"]),
        _case("batchnorm_no_scale_no_center", (3, 5, 5), [Conv2d(4, 3), BatchNorm(scale=False, center=False)],
              ["batchnorm"]),
        _case("batchnorm_no_scale_flat", (2, 3, 3), [Flatten(), BatchNorm(scale=False), Dense(4)], ["batchnorm"]),
        _case("batchnorm_no_center_eps", (3, 4, 4), [BatchNorm(eps=1e-3, center=False)], ["batchnorm"]),
        _case("layernorm_channels", (5, 4, 3), [Conv2d(6, 1), LayerNorm(eps=1e-6)], ["layernorm"]),
        _case("layernorm_after_flatten", (3, 3, 2), [Flatten(), LayerNorm(), Dense(4)], ["layernorm"]),
        _case("prelu_image", (3, 5, 5), [Conv2d(4, 3), PReLU()], ["prelu"]),
        _case("prelu_after_flatten", (3, 2, 3), [Flatten(), PReLU(), Dense(5)], ["prelu"]),
        _case("channel_scale_image", (3, 4, 4), [Conv2d(5, 1), ChannelScale()], ["channel_scale"]),
        _case("channel_scale_after_flatten", (2, 3, 3), [Flatten(), ChannelScale(), Dense(3)], ["channel_scale"]),
        _case("normalize_per_channel", (3, 5, 4), [Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                                                   Conv2d(2, 3)], ["normalize"]),
        _case("normalize_one_value", (2, 4, 4), [Normalize((127.5,), (127.5,)), Conv2d(2, 1)], ["normalize"]),
        _case("normalize_after_flatten", (2, 2, 2), [Flatten(), Normalize((0.5,), (2.0,)), Dense(3)],
              ["normalize"]),
        # shape plumbing
        _case("channel_shuffle", (6, 3, 4), [Conv2d(6, 1), ChannelShuffle(3)], ["channel_shuffle"]),
        _case("channel_slice_image", (6, 4, 4), [Conv2d(6, 1), ChannelSlice(1, 4)], ["channel_slice"]),
        _case("channel_slice_after_flatten", (2, 3, 3), [Flatten(), ChannelSlice(4, 13), Dense(3)],
              ["channel_slice"]),
        _case("identity_dropout_drop_path_eval", (3, 4, 4), [Conv2d(3, 3, padding=1), Identity(), Dropout(0.3),
                                                             DropPath(0.2), Flatten(), Dense(2)],
              ["identity", "dropout", "drop_path"]),
        _case("flatten_dense", (3, 3, 5), [Flatten(), Dense(7, bias=False), Dense(2)], ["flatten", "dense"]),
        # blocks
        _case("branches_concat_image", (3, 6, 6), [Branches(branches=(Conv2d(2, 1), Sequence(layers=(
            Conv2d(3, 3, padding=1), Activation("relu"))), Identity()), merge="concat")], ["branches", "sequence"]),
        _case("branches_concat_flat", (2, 3, 3), [Flatten(), Branches(branches=(Dense(3), Identity()),
                                                                     merge="concat"), Dense(2)], ["branches"]),
        _case("branches_add_identity", (4, 5, 5), [Branches(branches=(Identity(), Sequence(layers=(
            Conv2d(4, 3, padding=1), BatchNorm()))), merge="add")], ["branches"]),
        _case("branches_mul_squeeze_excitation", (6, 5, 5), [Conv2d(6, 1), Branches(branches=(
            Identity(), _gate(6, 2, "sigmoid")), merge="mul")], ["branches", "global_avgpool"]),
        _case("branches_mul_hardsigmoid_gate_adaptive", (4, 6, 6), [Branches(branches=(Identity(), Sequence(layers=(
            AdaptiveAvgPool2d(1), Conv2d(2, 1), Activation("relu"), Conv2d(4, 1), Activation("hardsigmoid")))),
            merge="mul")], ["branches"]),
        _case("branches_add_broadcast_first", (3, 4, 4), [Branches(branches=(GlobalMaxPool(keepdims=True),
                                                                            Conv2d(3, 1)), merge="add")],
              ["branches"]),
        _case("branches_mul_flat_after_flatten", (2, 2, 3), [Flatten(), Branches(branches=(
            Identity(), Sequence(layers=(Dense(12), Activation("sigmoid")))), merge="mul"), Dense(2)], ["branches"]),
        _case("shufflenet_unit", (8, 6, 6), [Branches(branches=(ChannelSlice(0, 4), Sequence(layers=(
            ChannelSlice(4, 8), Conv2d(4, 1, bias=False), BatchNorm(), Activation("relu"),
            Conv2d(4, 3, padding=1, groups=4, bias=False), BatchNorm()))), merge="concat"), ChannelShuffle(2)],
              ["branches", "channel_slice", "channel_shuffle"]),
        _case("residual_and_concat_branches", (4, 5, 5), [Residual(body=Sequence(layers=(Conv2d(4, 3, padding=1),))),
                                                          ConcatBranches(branches=(Conv2d(2, 1), Conv2d(3, 1)))],
              ["residual", "concat_branches"]),
        # MXNet 1.9.1 died with SIGFPE on the input gradient of exactly this (found by the fuzz test)
        _case("concat_then_depthwise", (4, 5, 5), [ConcatBranches(branches=(Conv2d(4, 1), Conv2d(4, 1))),
                                                   Conv2d(8, 3, padding=1, groups=8),
                                                   Branches(branches=(Conv2d(2, 1), Identity()), merge="concat"),
                                                   Conv2d(10, 1, groups=10)],
              ["concat_branches", "branches", "conv2d"]),
        _case("dense_concat", (3, 5, 5), [DenseConcat(layers=(Conv2d(2, 3, padding=1), Conv2d(2, 1)))],
              ["dense_concat"]),
        _case("convnext_block_parameter_order", (4, 6, 6), [Residual(body=Sequence(layers=(
            Conv2d(4, 3, padding=1, groups=4), LayerNorm(eps=1e-6), Conv2d(8, 1), Activation("gelu"),
            Conv2d(4, 1), ChannelScale(), DropPath(0.1)), parameter_order=(5, 0, 1, 2, 3, 4, 6)))],
              ["sequence", "channel_scale", "layernorm"]),
    ]
    return c + _activation_cases()


__all__ = ["Case", "cases"]
