"""MXNet Gluon backend: a spec becomes a hybridizable ``HybridSequential`` tree.

Gluon's conv and dense weights share PyTorch's layouts (OIHW, (out, in)), so
weights move without transposes; only some names differ (NATIVE_NAMES).
Where Gluon's defaults differ from PyTorch's (BN momentum, Dense flattening,
ceil-mode pooling, eval-mode gradients, hard_sigmoid's slope, GELU's variants)
the builders below close the gap; see docs/framework-differences.md for the
measurements behind each choice. "Measured" in a comment means: against a
float64 PyTorch or NumPy computation with mxnet 1.9.1 on this CPU (oneDNN);
"read" means: in the installed mxnet 1.9.1 sources.
"""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager, nullcontext

import numpy as np

from .. import training
from ...spec.layers import LAYER_KINDS
from ...spec.pooling import avg_pool_divisor, pool_padding
from ..common import (BackendError, BuildRecord, as_input, build_tree, check_device, check_run_options,
                     check_weights, parameter_rows, record_of, RECORD_ATTRIBUTE)
from ..frameworks import import_mxnet
from . import layout

mx = import_mxnet()
autograd = mx.autograd
nn = mx.gluon.nn
HybridBlock = mx.gluon.HybridBlock

NAME = "mxnet"
FRAMEWORK = "MXNet Gluon"

# Canonical (PyTorch) parameter names that Gluon spells differently: the attribute of the
# recorded block that holds each canonical weight.
NATIVE_NAMES = layout.NATIVE_NAMES


def version() -> str:
    return mx.__version__


def runtime_details() -> dict:
    """What a benchmark row records besides version() (Keras: which backend runs it)."""
    return {}


class Residual(HybridBlock):
    """``body(x) + shortcut(x)``, the shortcut being identity when absent.

    broadcast_add, not ``+``: on Symbols ``+`` is elemwise_add, whose gradient (CloneGradient)
    hands its output's gradient node on unchanged instead of making a node of its own. When
    a tensor collects 8 or more gradients (MXNET_EXEC_INPLACE_GRAD_SUM_CAP), MXNet 1.9.1's
    AggregateGradient sums them in a chain and gives each summand's node a control
    dependency on the sum before it; a summand that is that handed-on node (say the
    backward of a concat) is then an ancestor of the sum it waits for, a cycle, and building
    the hybridized graph fails with "control dep not found in graph" (measured: five
    concatenated branches after one flatten, where MXNet's common-subexpression elimination
    merges the five flattens into one tensor with >= 8 consumers, one branch a residual).
    broadcast_add's backward is a node of its own: same values, bitwise, and no cycle."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def hybrid_forward(self, F, x):
        return F.broadcast_add(self.body(x), x if self.shortcut is None else self.shortcut(x))


def concat_channels(F, *parts):
    """``F.concat`` on dim 1, followed by ``F.identity``. Without the identity, the gradient of
    a concatenation read by a grouped or depthwise convolution kills the process: oneDNN hands
    the concat's backward a gradient in a blocked layout and MXNet 1.9.1 dies with SIGFPE
    (measured: concat of two 4-channel convs, then an 8-group 1x1 conv, input gradient, eval
    or train mode; found by tests/test_fuzz.py). The identity's backward passes the gradient
    on in the default layout; a reshape or a copy does too."""
    return F.identity(F.concat(*parts, dim=1))


class ConcatBranches(HybridBlock):
    def __init__(self, branches):
        super().__init__()
        self.branches = branches
        for i, branch in enumerate(branches):
            self.register_child(branch, f"branch{i}")

    def hybrid_forward(self, F, x):
        return concat_channels(F, *[branch(x) for branch in self.branches])


class Branches(ConcatBranches):
    """Every branch on the same input, merged by concat (dim 1: channels or features), add or
    mul. add and mul are broadcast_add / broadcast_mul, so that a (N, C, 1, 1) gate scales a
    (N, C, H, W) map, in either order (squeeze-and-excitation; measured against NumPy, also
    hybridized). Not ``+`` / ``*``: on NDArrays they broadcast, but on Symbols they are
    elemwise_add / elemwise_mul, which refuse unequal shapes, so a hybridized SE block would
    fail (measured: "Check failed: assign" in _mul)."""

    def __init__(self, branches, merge: str):
        super().__init__(branches)
        self.merge = merge

    def hybrid_forward(self, F, x):
        if self.merge == "concat":
            return super().hybrid_forward(F, x)
        join = F.broadcast_add if self.merge == "add" else F.broadcast_mul
        return functools.reduce(join, [branch(x) for branch in self.branches])


class DenseConcat(HybridBlock):
    def __init__(self, layers):
        super().__init__()
        self.layers = layers
        for i, layer in enumerate(layers):
            self.register_child(layer, f"layer{i}")

    def hybrid_forward(self, F, x):
        for layer in self.layers:
            x = concat_channels(F, x, layer(x))
        return x


class TrainModeUnderRecord:
    """A mixin for max pools, which need correct eval-mode gradients.

    oneDNN's inference-mode max pool keeps no argmax workspace, yet its backward
    reads one: gradients recorded under ``record(train_mode=False)`` come out as
    garbage (apache/mxnet#10994; measured for GlobalMaxPool2D too: input gradient off by
    100% of its scale). Max pooling computes the same in both modes, so a recorded eval
    pass runs this op in train mode. Imperative only: a hybridized graph runs every op in
    the caller's mode (input_gradient runs imperatively).
    """

    def forward(self, x):
        if autograd.is_recording() and not autograd.is_training():
            with autograd.train_mode():
                return super().forward(x)
        return super().forward(x)


class MaxPool2D(TrainModeUnderRecord, nn.MaxPool2D):
    """nn.MaxPool2D with correct eval-mode gradients (TrainModeUnderRecord)."""


class GlobalMaxPool2D(TrainModeUnderRecord, nn.GlobalMaxPool2D):
    """nn.GlobalMaxPool2D (keeps (N, C, 1, 1)) with correct eval-mode gradients. The Pooling
    op, not F.max: its gradient goes to one maximum, as PyTorch's AdaptiveMaxPool2d's does,
    where a reduction's would go to every tied one (ties are common after a ReLU)."""


def _pad_width(row, layer) -> tuple[int, ...]:
    """F.pad's (N, C, H, W) before/after widths that give PyTorch's ceil-mode windows."""
    _, height, width = row.input_shape
    top, bottom = pool_padding(height, layer.kernel[0], layer.stride[0], layer.padding[0], True)
    left, right = pool_padding(width, layer.kernel[1], layer.stride[1], layer.padding[1], True)
    return (0, 0, 0, 0, top, bottom, left, right)


class CeilMaxPool(HybridBlock):
    """PyTorch's ceil-mode max pool.

    MXNet's ceil mode ('full' convention) keeps a last window that starts in the
    right padding, which PyTorch drops; explicit -inf padding and a 'valid' pool
    give exactly PyTorch's windows and values.
    """

    def __init__(self, kernel, stride, pad_width):
        super().__init__()
        self.pad_width = pad_width
        self.pool = MaxPool2D(kernel, stride)

    def hybrid_forward(self, F, x):
        return self.pool(F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=-np.inf))


class CeilAvgPool(HybridBlock):
    """PyTorch's ceil-mode average pool: a 'valid' pool over zero padding, rescaled
    from the k*k divisor to PyTorch's per-window divisor (spec.pooling)."""

    def __init__(self, kernel, stride, pad_width, rescale: np.ndarray):
        super().__init__()
        self.pad_width = pad_width
        self.pool = nn.AvgPool2D(kernel, stride)
        # A Constant (grad_req 'null') so the map travels with hybridize and the device.
        self.rescale = self.params.get_constant("rescale", rescale[None, None].astype(np.float32))

    def hybrid_forward(self, F, x, rescale):
        return F.broadcast_mul(self.pool(F.pad(x, mode="constant", pad_width=self.pad_width,
                                                constant_value=0.0)), rescale)


class MaskedDropout(HybridBlock):
    """Dropout or drop_path whose mask comes from outside (``lockstep_dropout=True``).

    In training mode (under ``record(train_mode=True)``) the input is multiplied
    by ``self.mask`` (0 or 1/(1-p) per element for dropout, per example for drop_path;
    set by ``train_step``); otherwise it is the identity, like nn.Dropout. Imperative
    only: a hybridized graph cannot read a mask that changes every step, so train_step
    runs such models block by block.
    """

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate
        self.mask = None

    def forward(self, x):
        if not isinstance(x, mx.nd.NDArray):
            raise BackendError("mxnet: a lockstep_dropout model cannot be hybridized (its dropout masks "
                               "change every step); train it unhybridized")
        if not autograd.is_training():
            return x
        if self.mask is None:
            raise BackendError("mxnet: a lockstep_dropout model ran in training mode without a dropout mask; "
                               "train it with train_step(..., dropout_masks=...)")
        return x * self.mask

    def hybrid_forward(self, F, x):  # never reached: forward above handles every call
        raise BackendError("mxnet: MaskedDropout runs imperatively only")


def _maxpool(layer, row, children):
    if layer.ceil_mode:
        return CeilMaxPool(layer.kernel, layer.stride, _pad_width(row, layer))
    return MaxPool2D(layer.kernel, layer.stride, layer.padding)


def _avgpool(layer, row, children):
    if layer.ceil_mode:
        _, height, width = row.input_shape
        divisor = avg_pool_divisor(height, width, layer.kernel, layer.stride, layer.padding,
                                   True, layer.count_include_pad)
        rescale = layer.kernel[0] * layer.kernel[1] / divisor
        return CeilAvgPool(layer.kernel, layer.stride, _pad_width(row, layer), rescale)
    return nn.AvgPool2D(layer.kernel, layer.stride, layer.padding,
                        count_include_pad=layer.count_include_pad)


class AdaptiveAvgPool(HybridBlock):
    """PyTorch's adaptive average pool; MXNet's contrib op uses the same windows
    (floor start, ceil end), also when upsampling (1 -> 7) or on uneven sizes."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = tuple(output_size)

    def hybrid_forward(self, F, x):
        return F.contrib.AdaptiveAvgPooling2D(x, output_size=self.output_size)


def _global_pool(pool):
    """Gluon's global pools keep (N, C, 1, 1); the spec's output is flat (N, C) unless keepdims."""
    def build(layer, row, children):
        if layer.keepdims:
            return pool()
        flat = nn.HybridSequential()
        flat.add(pool(), nn.Flatten())
        return flat
    return build


def _sequence(layer, row, children):
    sequence = nn.HybridSequential()
    sequence.add(*children.values())
    return sequence


def _batchnorm(layer, row, children):
    """Gluon's momentum weighs the old running value; PyTorch's weighs the batch.

    scale=False is Gluon's BatchNorm(scale=False), i.e. the op's fix_gamma=True (read):
    gamma gets grad_req 'null', and the op uses 1 whatever gamma holds (measured: a stored
    gamma of 3 gives the gamma-1 output, eval and train, hybridized too; imperative
    forwards even overwrite it with 1). center=False only sets beta's grad_req to 'null':
    the op has no fix_beta and still adds the stored beta (measured: a stored beta of 5
    shifts the output by 5). Neither is a canonical weight, so nothing ever sets them:
    they keep their initializers' 1 and 0 (Gluon's own gamma/beta initializers win over
    build's Xavier), and the Trainer never sees them (not trainable)."""
    return nn.BatchNorm(axis=1, momentum=layout.momentum_to_native(layer.momentum), epsilon=layer.eps, center=layer.center,
                        scale=layer.scale, in_channels=row.input_shape[0])


def _layernorm(layer, row, children):
    """The LayerNorm op over axis 1 alone: the channels of each pixel of an NCHW map
    (ConvNeXt's LayerNorm2d) or the features of a flat input, biased variance (measured:
    7e-8 / 1.2e-7 against float64 NumPy on (2, 4, 5, 6)); gamma and beta are (C,)."""
    return nn.LayerNorm(axis=1, epsilon=layer.eps, in_channels=row.input_shape[0])


class PaddedConv2D(HybridBlock):
    """Conv2D after zero padding that may differ per side (TensorFlow's 'same' at stride 2
    pads one more after): Gluon's Conv2D padding is symmetric only, so F.pad (constant 0;
    the Pad op takes 4-D and 5-D inputs only, which a conv input always is) and a Conv2D
    with padding 0. ``weight`` and ``bias`` are the inner conv's, so that weights move by
    the spec path as for a plain Conv2D."""

    def __init__(self, pads, conv):
        super().__init__()
        top, bottom, left, right = pads
        self.pad_width = (0, 0, 0, 0, top, bottom, left, right)
        self.conv = conv

    @property
    def weight(self):
        return self.conv.weight

    @property
    def bias(self):
        return self.conv.bias

    def hybrid_forward(self, F, x):
        return self.conv(F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0.0))


def _conv2d(layer, row, children):
    """nn.Conv2D with dilation and groups as PyTorch's (measured against float64
    torch.conv2d: groups 3 and dilation (2, 3), depthwise with dilation (2, 1), stride 2 with
    padding: rel <= 1.9e-7)."""
    top, bottom, left, right = layer.pads
    symmetric = top == bottom and left == right
    conv = nn.Conv2D(layer.out_channels, layer.kernel, layer.stride, (top, left) if symmetric else 0,
                     dilation=layer.dilation, groups=layer.groups, use_bias=layer.bias,
                     in_channels=row.input_shape[0])
    return conv if symmetric else PaddedConv2D(layer.pads, conv)


class Pad2D(HybridBlock):
    """Zero padding (top, bottom, left, right) of an NCHW map with F.pad (4-D only)."""

    def __init__(self, pads):
        super().__init__()
        top, bottom, left, right = pads
        self.pad_width = (0, 0, 0, 0, top, bottom, left, right)

    def hybrid_forward(self, F, x):
        return F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0.0)


class Crop2D(HybridBlock):
    """Rows ``top:bottom_stop`` and columns ``left:right_stop`` of an NCHW map with F.slice:
    static bounds from the input size known at build, so it runs the same hybridized."""

    def __init__(self, top: int, bottom_stop: int, left: int, right_stop: int):
        super().__init__()
        self.begin = (None, None, top, left)
        self.end = (None, None, bottom_stop, right_stop)

    def hybrid_forward(self, F, x):
        return F.slice(x, begin=self.begin, end=self.end)


def _crop2d(layer, row, children):
    top, bottom, left, right = layer.crops
    _, height, width = row.input_shape
    return Crop2D(top, height - bottom, left, width - right)


def _per_channel_shape(dims: int) -> tuple[int, ...]:
    """reshape's shape that makes a (C,) vector broadcast over axis 1 of a ``dims``-D batch."""
    return (1, -1) + (1,) * (dims - 2)


class ChannelScale(HybridBlock):
    """x * weight[c] (ConvNeXt's layer scale), ``weight`` (C,) broadcast over axis 1."""

    def __init__(self, channels: int, dims: int):
        super().__init__()
        self.shape = _per_channel_shape(dims)
        # Its own initializer: build's Xavier refuses vectors (measured: "Xavier initializer cannot be
        # applied to vector").
        self.weight = self.params.get("weight", shape=(channels,), init=mx.init.One())

    def hybrid_forward(self, F, x, weight):
        return F.broadcast_mul(x, F.reshape(weight, shape=self.shape))


class PReLU(nn.PReLU):
    """PyTorch's PReLU(C): nn.PReLU's (C,) ``alpha`` (initialised to 0.25, as PyTorch's), computed
    as where(x > 0, x, alpha[c] * x) instead of Gluon's LeakyReLU act_type='prelu' op.

    That op computes the right values (measured: 1.3e-8 / 1.0e-8 from torch's prelu on NCHW
    and (N, F), its (C,) gamma broadcast over axis 1) and the right gradients imperatively,
    but inside a hybridized graph, after a conv or a BatchNorm that follows a conv, its
    backward is wrong: alpha's gradient off by 74-79% of its size and the input gradient
    too, with or without static_alloc (measured one SGD step against the imperative model;
    as the first layer of a graph it was right). The elementwise form has PyTorch's gradient
    everywhere, alpha at x == 0 included."""

    def __init__(self, channels: int, dims: int):
        super().__init__(in_channels=channels)
        self.shape = _per_channel_shape(dims)

    def hybrid_forward(self, F, x, alpha):
        return F.where(x > 0, x, F.broadcast_mul(x, F.reshape(alpha, shape=self.shape)))


class Normalize(HybridBlock):
    """Fixed (x - mean[c]) / std[c]. The constants are Gluon Constants (grad_req 'null'), so
    they travel with hybridize and the device, yet are neither weights nor trainable; a
    division, as the spec writes it, not a multiplication by 1/std."""

    def __init__(self, mean, std, channels: int, dims: int):
        super().__init__()
        shape = (1, channels) + (1,) * (dims - 2)
        self.mean = self.params.get_constant("mean", np.broadcast_to(np.float32(mean), (channels,)).reshape(shape))
        self.std = self.params.get_constant("std", np.broadcast_to(np.float32(std), (channels,)).reshape(shape))

    def hybrid_forward(self, F, x, mean, std):
        return F.broadcast_div(F.broadcast_sub(x, mean), std)


class ChannelShuffle(HybridBlock):
    """torchvision's channel_shuffle with reshape's special codes, valid in a hybridized graph
    where shapes are unknown: (0, -4, g, -1, -2) splits C into (g, C/g) keeping N and H, W;
    swapaxes(1, 2); (0, -3, -2) merges them back (measured: bit-equal to torch's view /
    transpose / reshape)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def hybrid_forward(self, F, x):
        split = F.reshape(x, shape=(0, -4, self.groups, -1, -2))
        return F.reshape(F.swapaxes(split, dim1=1, dim2=2), shape=(0, -3, -2))


class ChannelSlice(HybridBlock):
    """Channels start:stop (axis 1) with F.slice_axis, on NCHW or flat inputs."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def hybrid_forward(self, F, x):
        return F.slice_axis(x, axis=1, begin=self.start, end=self.stop)


def _drop_path(layer, row, children):
    """torchvision's StochasticDepth "row": the Dropout op with ``axes`` shares one draw along
    the given axes, so axes = every axis but the batch gives one keep-or-drop per example,
    scaled by 1/(1-p) (measured: each example all 0 or all 1/(1-p), hybridized too)."""
    return nn.Dropout(layer.p, axes=tuple(range(1, len(row.output_shape) + 1)))


# ---------------------------------------------------------------------------------------
# Activations: the spec's definitions (PyTorch's), where MXNet's op of the same name differs
# ---------------------------------------------------------------------------------------

# MXNet's hard_sigmoid is max(0, min(1, alpha*x + beta)) with alpha 0.2 by default (Keras 2's;
# measured 8% off PyTorch's relu6(x+3)/6); alpha 1/6, beta 0.5 is PyTorch's (measured 4e-8,
# gradients equal).
_HARD_SIGMOID = {"alpha": 1.0 / 6.0, "beta": 0.5}
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class LeakyReLU(HybridBlock):
    """The LeakyReLU op's 'leaky' (x > 0 ? x : slope*x: PyTorch's for any slope sign, measured
    down to slope -0.3); not nn.LeakyReLU, which asserts a slope >= 0 (read)."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = float(slope)

    def hybrid_forward(self, F, x):
        return F.LeakyReLU(x, act_type="leaky", slope=self.slope)


def relu6(F, x):
    """One clip op. Its gradient includes both bounds (1 at x == 0 and x == 6, measured) where
    PyTorch's relu6 excludes them (0): a difference on exact ties only, which float32 inputs
    from a conv or BatchNorm practically never hit; 6 - relu(6 - relu(x)) would match there
    but rounds small outputs (6 - (6 - x) != x in float32)."""
    return F.clip(x, 0.0, 6.0)


def silu(F, x):
    return x * F.sigmoid(x)


def hardsigmoid(F, x):
    return F.hard_sigmoid(x, **_HARD_SIGMOID)


def hardswish(F, x):
    return x * F.hard_sigmoid(x, **_HARD_SIGMOID)


def gelu_tanh(F, x):
    """GELU's tanh approximation, built: mxnet 1.9.1's LeakyReLU act_type knows 'elu', 'gelu',
    'leaky', 'prelu', 'rrelu', 'selu' only (read in the op's registry; 'gelu_tanh' is refused)."""
    return 0.5 * x * (1.0 + F.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def channel_softmax(F, x):
    return F.softmax(x, axis=1)  # the channels of each pixel, or the features


ACTIVATIONS = {
    "relu": lambda layer: nn.Activation("relu"),
    "sigmoid": lambda layer: nn.Activation("sigmoid"),
    "tanh": lambda layer: nn.Activation("tanh"),
    "softplus": lambda layer: nn.Activation("softrelu"),  # MXNet's name for log(1 + exp(x))
    "leaky_relu": lambda layer: LeakyReLU(layer.negative_slope),
    "relu6": lambda layer: nn.HybridLambda(relu6),
    # LeakyReLU 'elu' is x > 0 ? x : slope*(exp(x)-1) (measured 7e-9, gradient 7e-8).
    "elu": lambda layer: nn.ELU(layer.alpha),
    "silu": lambda layer: nn.HybridLambda(silu),
    "hardswish": lambda layer: nn.HybridLambda(hardswish),
    "hardsigmoid": lambda layer: nn.HybridLambda(hardsigmoid),
    # nn.GELU is LeakyReLU act_type='gelu', the exact erf form (measured: 5.8e-8 from the erf
    # GELU, 5.1e-5 from the tanh one; gradient 1.5e-7).
    "gelu": lambda layer: nn.GELU() if layer.approximate == "none" else nn.HybridLambda(gelu_tanh),
    "softmax": lambda layer: nn.HybridLambda(channel_softmax),
}


LAYER_BUILDERS = {
    "conv2d": _conv2d,
    "pad2d": lambda layer, row, children: Pad2D(layer.pads),
    "crop2d": _crop2d,
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "activation": lambda layer, row, children: ACTIVATIONS[layer.function](layer),
    "prelu": lambda layer, row, children: PReLU(row.input_shape[0], len(row.input_shape) + 1),
    "channel_scale": lambda layer, row, children: ChannelScale(row.input_shape[0], len(row.input_shape) + 1),
    "normalize": lambda layer, row, children: Normalize(layer.mean, layer.std, row.input_shape[0],
                                                        len(row.input_shape) + 1),
    "maxpool2d": _maxpool,
    "avgpool2d": _avgpool,
    "adaptive_avgpool2d": lambda layer, row, children: AdaptiveAvgPool(layer.output_size),
    "global_avgpool": _global_pool(nn.GlobalAvgPool2D),
    "global_maxpool": _global_pool(GlobalMaxPool2D),
    "flatten": lambda layer, row, children: nn.Flatten(),
    # flatten=False: act on the last axis like torch Linear, not flatten (N, ...) first.
    "dense": lambda layer, row, children: nn.Dense(
        layer.out_features, use_bias=layer.bias, flatten=False, in_units=row.input_shape[0]),
    "dropout": lambda layer, row, children: nn.Dropout(layer.p),
    "drop_path": _drop_path,
    # Gluon 1.9.1 has no nn.Identity (read). The identity op (a copy), not ``return x``: a
    # hybridized graph whose output is its own input cannot be differentiated (measured:
    # "Cannot differentiate node because it is not in a computational graph").
    "identity": lambda layer, row, children: nn.HybridLambda("identity"),
    "channel_shuffle": lambda layer, row, children: ChannelShuffle(layer.groups),
    "channel_slice": lambda layer, row, children: ChannelSlice(layer.start, layer.stop),
    "sequence": _sequence,
    "branches": lambda layer, row, children: Branches(list(children.values()), layer.merge),
    "concat_branches": lambda layer, row, children: ConcatBranches(list(children.values())),
    "residual": lambda layer, row, children: Residual(children["body"], children.get("shortcut")),
    "dense_concat": lambda layer, row, children: DenseConcat(list(children.values())),
}

# With lockstep_dropout=True every kind that is random in training takes its mask from train_step.
MASKED_BUILDERS = {kind: (lambda layer, row, children: MaskedDropout(layer.p))
                   for kind, cls in LAYER_KINDS.items() if cls.random_in_training}


def mx_context(device: str):
    check_device(device, NAME)
    if device == "gpu":
        if mx.context.num_gpus() == 0:
            raise BackendError("mxnet: device 'gpu' was asked for but MXNet sees no GPU "
                               "(mx.context.num_gpus() is 0; is a CUDA build of mxnet installed?)")
        return mx.gpu(0)
    return mx.cpu()


EXECUTIONS = {"plain": "imperative Gluon (not hybridized)",
              "hybrid": "hybridize(static_alloc=True, static_shape=True): one cached graph"}
PRECISIONS = {"float32": "float32 throughout (netparity does not drive MXNet's AMP: mxnet.contrib.amp "
                         "rewrites the global operator table, which would change every other model in "
                         "the process)"}


def build(spec, device: str = "cpu", lockstep_dropout: bool = False, execution: str = "plain",
          precision: str = "float32"):
    """A ``HybridSequential``, initialised; hybridized when ``execution="hybrid"``.
    ``lockstep_dropout=True``: every dropout and drop_path layer multiplies by a mask given
    to ``train_step`` instead of drawing its own (imperative only)."""
    context = mx_context(device)
    check_run_options(execution, precision, EXECUTIONS, PRECISIONS, NAME)
    if execution == "hybrid" and lockstep_dropout:
        raise BackendError("mxnet: lockstep_dropout=True cannot be hybridized (its dropout masks change "
                           "every step and a cached graph cannot read them); use execution='plain'")
    record = BuildRecord(spec, spec.infer(), device)
    builders = {**LAYER_BUILDERS, **MASKED_BUILDERS} if lockstep_dropout else LAYER_BUILDERS
    record.extra.update(lockstep_dropout=bool(lockstep_dropout), execution=execution, precision=precision)
    model = nn.HybridSequential()
    model.add(*build_tree(spec, builders, record))
    # Every layer knows its input size, so nothing is deferred: weights can be set at once.
    # Xavier is the canonical weights' distribution (Gluon's default is Uniform(0.07)).
    model.initialize(mx.init.Xavier(), ctx=context)
    object.__setattr__(model, RECORD_ATTRIBUTE, record)  # a plain attribute, not a child block
    if execution == "hybrid":
        model.hybridize(static_alloc=True, static_shape=True)
    return model


def to_ndarray(value, context):
    """A float32 NDArray of ``value`` on ``context``, for the per-step inputs. Through DLPack
    from a private copy: ``mx.nd.array`` costs about 100 us per call on a small batch (0.1 ms
    of a 0.9 ms lenet_bn inference step), the copy and ``from_numpy`` about 15 us; zero_copy
    needs an array nobody else writes to, hence the copy."""
    private = np.array(value, dtype=np.float32, order="C", copy=True)
    array = mx.nd.from_numpy(private, zero_copy=True)
    return array if context == mx.cpu() else array.as_in_context(context)


def _context_of(model):
    return mx_context(record_of(model, NAME).device)


def _native_parameters(record, row, named):
    """(canonical key, Gluon Parameter) for one layer's weights."""
    block = record.layers[row.path]
    rename = NATIVE_NAMES.get(row.kind, {})
    for name in named:
        yield f"{row.path}.{name}", getattr(block, rename.get(name, name))


def get_weights(model) -> dict[str, np.ndarray]:
    record = record_of(model, NAME)
    return {key: param.data().asnumpy()
            for row, named in parameter_rows(record)
            for key, param in _native_parameters(record, row, named)}


def set_weights(model, weights: dict[str, np.ndarray]) -> None:
    record = record_of(model, NAME)
    check_weights(weights, record, NAME)
    context = _context_of(model)
    for row, named in parameter_rows(record):
        for key, param in _native_parameters(record, row, named):
            param.set_data(mx.nd.array(np.asarray(weights[key]), ctx=context, dtype=np.float32))


@contextmanager
def imperative(model):
    """Run model block by block, keeping any cached hybridized graphs for later.

    A hybridized block runs as one graph: its children's forward hooks do not fire
    and every op runs in the caller's train/eval mode (see MaxPool2D).
    """
    paused, stack = [], [model]
    while stack:
        block = stack.pop()
        if getattr(block, "_active", False):
            paused.append(block)
        # MXNet 1.x holds children directly; later versions hold weak references to them
        stack.extend(child() if callable(child) and not hasattr(child, "_children") else child
                     for child in block._children.values())
    for block in paused:
        block._active = False
    try:
        yield
    finally:
        for block in paused:
            block._active = True


def _mode(training: bool):
    # Gluon runs in inference mode outside record(), whatever the block.
    return autograd.record(train_mode=True) if training else nullcontext()


def _run(model, x, training: bool, capture: bool):
    record = record_of(model, NAME)
    batch = to_ndarray(as_input(x, record, NAME), _context_of(model))
    outputs: dict[str, np.ndarray] = {}
    hooks = []
    if capture:
        hooks = [block.register_forward_hook(
                     lambda _b, _i, out, path=path: outputs.__setitem__(path, out.asnumpy()))
                 for path, block in record.layers.items()]
    try:
        with imperative(model) if capture else nullcontext(), _mode(training):
            result = model(batch).asnumpy()
    finally:
        for hook in hooks:
            hook.detach()
    return result, outputs


def forward(model, x, training: bool = False) -> np.ndarray:
    """training=True: dropout and batch-statistics BatchNorm. Unlike PyTorch, MXNet
    updates running statistics only in backward, so a forward leaves them as they are."""
    return _run(model, x, training, capture=False)[0]


def forward_layers(model, x, training: bool = False) -> dict[str, np.ndarray]:
    """The output of every layer and block, by spec path, in NCHW."""
    return _run(model, x, training, capture=True)[1]


def input_gradient(model, x, upstream, training: bool = False) -> np.ndarray:
    """d(sum(model(x) * upstream)) / dx."""
    record = record_of(model, NAME)
    context = _context_of(model)
    batch = mx.nd.array(as_input(x, record, NAME), ctx=context, dtype=np.float32)
    batch.attach_grad()
    weights = mx.nd.array(np.asarray(upstream, np.float32), ctx=context, dtype=np.float32)
    with imperative(model), autograd.record(train_mode=training):
        loss = (model(batch) * weights).sum()
    # backward's own train_mode defaults to True, which differentiates BatchNorm as if
    # it had used batch statistics: wrong input gradients in eval mode.
    loss.backward(train_mode=training)
    return batch.grad.asnumpy()


# Gluon's BatchNorm names its running statistics (the op's auxiliary states) so.
_RUNNING_STAT_SUFFIXES = ("_running_mean", "_running_var")


def parameter_counts(model) -> dict[str, tuple[int, int]]:
    """Per parameterised layer, as Gluon holds it: (trainable, running statistics).
    Trainable means grad_req != 'null' (what make_optimizer hands the Trainer); running
    statistics are BatchNorm's running_mean / running_var. A BatchNorm gamma under
    scale=False or beta under center=False has grad_req 'null' and is neither: a fixed
    1 or 0, counted nowhere, as the spec counts it."""
    record = record_of(model, NAME)
    counts = {}
    for row, _ in parameter_rows(record):
        params = record.layers[row.path].collect_params().values()
        trainable = sum(int(np.prod(p.shape)) for p in params if p.grad_req != "null")
        stats = sum(int(np.prod(p.shape)) for p in params
                    if p.grad_req == "null" and p.name.endswith(_RUNNING_STAT_SUFFIXES))
        counts[row.path] = (trainable, stats)
    return counts


# ---------------------------------------------------------------------------------------
# Training: Gluon's Trainer made to follow PyTorch's SGD (docs/framework-differences.md 6, 6b, 7)
# ---------------------------------------------------------------------------------------

# MXNet's sgd_mom_update keeps state = momentum*state - lr*(g/B + wd*p) and does p += state,
# so state = -lr * (PyTorch's buf) while lr stays constant.
STATE_FORM = "neg_lr_buf"


class SGDOptimizer(training.SGDOptimizer):
    """A Gluon ``Trainer('sgd')`` (``native``) over the trainable weights in canonical order."""

    backend = NAME

    @property
    def lr(self) -> float:
        return float(self.native.learning_rate)

    def states(self) -> dict:
        """Trainer index -> momentum NDArray (created lazily by the first step)."""
        return self.native._updaters[0].states


def _trainable(record) -> list[tuple[str, "mx.gluon.Parameter"]]:
    """(canonical key, Parameter) of every trainable weight, in canonical order."""
    pairs = []
    for row, _ in parameter_rows(record):
        pairs.extend(_native_parameters(record, row, row.layer.parameter_shapes(row.input_shape)))
    return pairs


def make_optimizer(model, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> SGDOptimizer:
    """PyTorch's SGD: buf = momentum*buf + (g + wd*p) (first buf = g + wd*p); p -= lr*buf.

    A ``gluon.Trainer('sgd', {learning_rate, momentum, wd})`` with no kvstore; train_step
    sums per-sample losses and calls ``step(batch_size)`` so the gradient is the batch mean.
    Weight decay is coupled and reaches every parameter: every wd_mult and lr_mult must be 1.
    """
    record = record_of(model, NAME)
    lr, momentum, weight_decay = training.check_sgd(lr, momentum, weight_decay, NAME, BackendError)
    pairs = _trainable(record)
    trainable = [p for p in model.collect_params().values() if p.grad_req != "null"]
    if {id(p) for _, p in pairs} != {id(p) for p in trainable}:
        raise BackendError("mxnet: the model's trainable parameters are not the spec's trainable weights")
    odd = [key for key, p in pairs if p.wd_mult != 1.0 or p.lr_mult != 1.0]
    if odd:
        raise BackendError(f"mxnet: parameters with wd_mult or lr_mult other than 1 would not follow "
                           f"PyTorch's SGD: {', '.join(odd[:3])}")
    native = mx.gluon.Trainer([p for _, p in pairs], "sgd",
                              {"learning_rate": lr, "momentum": momentum, "wd": weight_decay},
                              kvstore=None)
    return SGDOptimizer(model, native, [k for k, _ in pairs], momentum, weight_decay)


def set_learning_rate(optimizer: SGDOptimizer, lr: float) -> None:
    """Change lr with PyTorch's meaning. MXNet keeps lr inside its momentum state, so the
    state is rescaled by lr_new / lr_old (row 6b); without that the old lr would linger."""
    lr, _, _ = training.check_sgd(lr, optimizer.momentum, optimizer.weight_decay, NAME, BackendError)
    old = optimizer.lr
    if lr != old:
        for state in optimizer.states().values():
            if state is not None:
                state[:] = mx.nd.array(training.rescale_state(state.asnumpy(), lr / old),
                                       ctx=state.context, dtype=state.dtype)
    optimizer.native.set_learning_rate(lr)


# Made once: constructing a Gluon block costs ~12 us per step (0.3% of a lenet_bn step on 2 cores).
_CRITERION = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=True)


def train_step(model, optimizer: SGDOptimizer, x, y, dropout_masks=None) -> float:
    """One SGD step on a minibatch in training mode (batch-statistics BatchNorm, dropout on);
    returns the mean softmax cross-entropy over the batch before the update (NaN/inf as is).

    Per-sample ``SoftmaxCrossEntropyLoss`` (sparse labels), backward, ``step(batch_size)``.
    Running statistics move once, in backward (row 1d). ``dropout_masks``: {dropout path:
    float32 (B, *output shape)}, required exactly when built with ``lockstep_dropout=True``."""
    record, batch, labels, masks = training.prepare_step(model, optimizer, x, y, dropout_masks, NAME)
    size = batch.shape[0]
    context = _context_of(model)
    for path, mask in masks.items():
        record.layers[path].mask = to_ndarray(mask, context)
    data = to_ndarray(batch, context)
    target = to_ndarray(labels, context)
    criterion = _CRITERION  # per-sample, from logits
    try:
        lockstepped = record.extra.get("lockstep_dropout", False)  # mask blocks run imperatively
        with imperative(model) if lockstepped else nullcontext(), autograd.record(train_mode=True):
            loss = criterion(model(data), target)
        loss.backward()
        optimizer.native.step(size)
        value = float(loss.mean().asscalar())
    finally:
        for path in masks:
            record.layers[path].mask = None
    optimizer.steps += 1
    return value


def peak_device_memory_mb(device: str = "gpu") -> float | None:
    """GPU memory in use on the first GPU, in MiB (total minus free, from
    ``mx.context.gpu_memory_info``: MXNet keeps no peak counter, and its pooled allocator
    holds what it once used, so after a run this is close to the peak); None for the CPU."""
    context = mx_context(device)
    if context.device_type != "gpu":
        return None
    free, total = mx.context.gpu_memory_info(context.device_id)
    return (total - free) / 2 ** 20


def seed_everything(seed: int) -> str:
    """Seed MXNet's RNGs (every device). Call it before build. Returns what stays
    non-deterministic ("" if nothing is known)."""
    mx.random.seed(int(seed))
    return ("mxnet: bitwise repeatable only at a fixed OMP_NUM_THREADS; its RNG state cannot be saved, "
            "so native dropout after load_checkpoint draws other masks than an uninterrupted run")


def save_checkpoint(model, optimizer: SGDOptimizer, path) -> None:
    """Weights (canonical), momentum state (MXNet's -lr*buf, canonical layout) and lr in one
    .npz written atomically. MXNet's RNG state cannot be read, so it is not saved."""
    record = record_of(model, NAME)
    training.check_optimizer(model, optimizer, NAME)
    arrays = {f"weights/{k}": v for k, v in get_weights(model).items()}
    states = optimizer.states()
    for index, key in enumerate(optimizer.keys):
        if states.get(index) is not None:
            arrays[f"state/{key}"] = states[index].asnumpy()
    meta = {"framework": NAME, "spec": record.spec.name, "lr": optimizer.lr, "momentum": optimizer.momentum,
            "weight_decay": optimizer.weight_decay, "steps": optimizer.steps, "state_form": STATE_FORM,
            "lockstep_dropout": record.extra.get("lockstep_dropout", False)}
    training.write_checkpoint(path, meta, arrays)


def load_checkpoint(model, optimizer: SGDOptimizer, path) -> None:
    """Restore a checkpoint so training continues exactly as if uninterrupted (bitwise, for
    one written by this backend, except native dropout masks; other frameworks' momentum
    states are converted)."""
    meta, arrays = training.restore_weights(model, optimizer, path, NAME, BackendError, set_weights)
    saved = training.section(arrays, "state")
    context = _context_of(model)
    updater = optimizer.native._updaters[0]
    updater.states.clear()
    updater.states_synced.clear()
    for index, key in enumerate(optimizer.keys):
        if key in saved:
            value = training.convert_state(saved[key], meta["state_form"], STATE_FORM, float(meta["lr"]))
            updater.states[index] = mx.nd.array(value, ctx=context, dtype=np.float32)
            updater.states_synced[index] = True
    optimizer.native.set_learning_rate(float(meta["lr"]))
    optimizer.steps = int(meta["steps"])
