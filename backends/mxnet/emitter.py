"""MXNet Gluon source for a spec: ``HybridBlock`` classes with ``hybrid_forward``.

The code builds what netparity's mxnet backend (backends/mxnet/core.py) builds, block for block:
Gluon's own layers where they compute the spec's (PyTorch's) function, given the arguments
that make them do so (BatchNorm momentum in Gluon's convention, Dense without flattening),
and the backend's small blocks re-written inline where they do not (ceil-mode pooling,
per-side padding, PReLU, hard sigmoid, ...). Every block is hybridizable. Weights keep
PyTorch's layouts; only some names differ (gamma, beta, alpha).
"""

from __future__ import annotations

from . import layout
from ..emit.modules import Dialect, LeafCode, write_classes
from ..emit.naming import camel, pair_value
from ..emit.plan import Plan, build_plan, native_paths
from ..emit.source import REQUIRED, EmitError, Writer, arguments, expr, format_source, load_module

NAME = "mxnet"
FRAMEWORK = "MXNet Gluon"
LOAD_HINT = "net.load_parameters(PATH)"
WEIGHTS_SUFFIX = ".params"
INPUT_LAYOUT = "NCHW"  # how the emitted model takes an image batch

NOTES = {
    "batchnorm": "Gluon's BatchNorm momentum weighs the running value: momentum=0.9 here is PyTorch's "
                 "momentum=0.1 (running = 0.9 * running + 0.1 * batch)",
    "dense": "flatten=False: Gluon's Dense flattens its input by default; PyTorch's Linear does not",
    "ceil_max": "PyTorch's ceil mode drops a last window that would start in the right padding, MXNet's "
                "keeps it: explicit -inf padding and a 'valid' pool give PyTorch's windows",
    "ceil_avg": "ceil-mode average pool: explicit zero padding, a 'valid' pool, then each window "
                "rescaled to PyTorch's divisor (border windows count fewer cells)",
    "drop_path": "stochastic depth: Dropout with axes (1, 2, 3) keeps or drops each example whole",
    "layernorm": "LayerNorm over axis 1: the channels of each pixel (ConvNeXt), or the features",
    "avgpool": "count_include_pad as in PyTorch (padding cells count in the average)",
    "branches": "broadcast_add / broadcast_mul, not + / *: inside a hybridized graph those refuse "
                "a (N, C, 1, 1) gate against (N, C, H, W)",
    "concat": "F.identity after F.concat: without it MXNet 1.9.1 dies (SIGFPE) computing the input "
              "gradient of a concatenation that a grouped or depthwise conv reads",
    "residual": "broadcast_add, not +: + is elemwise_add, whose backward reuses its output's gradient "
                "node; where a tensor collects 8 or more gradients, MXNet 1.9.1 then builds a cycle and "
                "hybridizing fails ('control dep not found in graph')",
}


# ---------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------

def _pad_width(row, layer) -> tuple:
    """F.pad's (N, C, H, W) before/after widths giving PyTorch's ceil-mode windows (backend's)."""
    from ...spec.pooling import pool_padding

    _, height, width = row.input_shape
    top, bottom = pool_padding(height, layer.kernel[0], layer.stride[0], layer.padding[0], True)
    left, right = pool_padding(width, layer.kernel[1], layer.stride[1], layer.padding[1], True)
    return (0, 0, 0, 0, top, bottom, left, right)


class Lowering:
    def leaf(self, path, layer, row):
        kind = layer.kind
        channels = row.input_shape[0]
        dims = len(row.input_shape) + 1  # with the batch axis
        if kind == "conv2d":
            top, bottom, left, right = layer.pads
            symmetric = top == bottom and left == right
            facts = {"channels": ("channels", layer.out_channels), "kernel_size": ("kernel", pair_value(layer.kernel)),
                     "strides": ("stride", pair_value(layer.stride)),
                     "padding": ("padding", pair_value((top, left)) if symmetric else 0),
                     "dilation": ("dilation", pair_value(layer.dilation)), "groups": ("channels", layer.groups),
                     "use_bias": ("flag", layer.bias), "in_channels": ("channels", channels)}
            if not symmetric:
                facts["pads"] = ("padding", (top, bottom, left, right))
            return symmetric, facts
        if kind == "pad2d":
            return (), {"padding": ("padding", layer.pads)}
        if kind == "crop2d":
            return (), {"crop": ("padding", layer.crops)}
        if kind == "batchnorm":
            return (layer.scale, layer.center), {
                "momentum": ("float", layout.momentum_to_native(layer.momentum)), "epsilon": ("float", layer.eps),
                "in_channels": ("channels", channels)}
        if kind == "layernorm":
            return (), {"epsilon": ("float", layer.eps), "in_channels": ("channels", channels)}
        if kind == "activation":
            if layer.function not in KNOWN_ACTIVATIONS:
                raise EmitError(f"{path}: no Gluon code for activation {layer.function!r}")
            facts = {"leaky_relu": {"slope": ("float", layer.negative_slope)},
                     "elu": {"alpha": ("float", layer.alpha)}}.get(layer.function, {})
            key = (layer.function, layer.approximate) if layer.function == "gelu" else layer.function
            return key, facts
        if kind in ("prelu", "channel_scale"):
            return (), {"channels": ("channels", channels), "dims": ("other", dims)}
        if kind == "normalize":
            return (), {"mean": ("other", layer.mean), "std": ("other", layer.std),
                        "channels": ("channels", channels), "dims": ("other", dims)}
        if kind in ("maxpool2d", "avgpool2d"):
            facts = {"pool_size": ("kernel", pair_value(layer.kernel)), "strides": ("stride", pair_value(layer.stride))}
            if layer.ceil_mode:
                facts["pad_width"] = ("padding", _pad_width(row, layer))
            else:
                facts["padding"] = ("padding", pair_value(layer.padding))
            if kind == "avgpool2d":
                facts["count_include_pad"] = ("flag", layer.count_include_pad)
                if layer.ceil_mode:
                    facts.update(kernel=("kernel", layer.kernel), stride=("stride", layer.stride),
                                 pool_padding=("padding", layer.padding), height=("size", row.input_shape[1]),
                                 width=("size", row.input_shape[2]))
            return layer.ceil_mode, facts
        if kind == "adaptive_avgpool2d":
            return (), {"output_size": ("size", tuple(layer.output_size))}
        if kind in ("global_avgpool", "global_maxpool"):
            return layer.keepdims, {}
        if kind == "dense":
            return (), {"units": ("channels", layer.out_features), "use_bias": ("flag", layer.bias),
                        "in_units": ("channels", channels)}
        if kind == "dropout":
            return (), {"rate": ("float", float(layer.p))}
        if kind == "drop_path":
            return (), {"rate": ("float", float(layer.p)), "axes": ("other", tuple(range(1, dims)))}
        if kind == "channel_shuffle":
            return (), {"groups": ("other", layer.groups)}
        if kind == "channel_slice":
            return (), {"begin": ("channels", layer.start), "end": ("channels", layer.stop)}
        if kind in ("flatten", "identity"):
            return (), {}
        raise EmitError(f"{path}: no Gluon code for layer kind {kind!r}")

    def block(self, path, layer, row):
        return (), {}


# ---------------------------------------------------------------------------------------
# Leaf code
# ---------------------------------------------------------------------------------------

# Activations whose Gluon block computes PyTorch's function as it is; the others are the
# backend's functions, applied by nn.HybridLambda.
ACTIVATION_BLOCKS = {"relu": 'nn.Activation("relu")', "sigmoid": 'nn.Activation("sigmoid")',
                     "tanh": 'nn.Activation("tanh")', "softplus": 'nn.Activation("softrelu")'}
ACTIVATION_FUNCTIONS = {"relu6": "relu6", "silu": "silu", "hardswish": "hardswish", "hardsigmoid": "hardsigmoid",
                        "softmax": "channel_softmax"}
KNOWN_ACTIVATIONS = {*ACTIVATION_BLOCKS, *ACTIVATION_FUNCTIONS, "leaky_relu", "elu", "gelu"}


def leaf_code(child) -> LeafCode:
    kind, key, f = child.kind, child.key, child.facts
    if kind == "conv2d":
        options = [("strides", "strides", 1), ("padding", "padding", 0), ("dilation", "dilation", 1),
                   ("groups", "groups", 1), ("use_bias", "use_bias", True), ("in_channels", "in_channels", REQUIRED)]
        conv = f"nn.Conv2D({arguments(f, ('channels', 'kernel_size'), options)})"
        if key:
            return LeafCode(conv)
        return LeafCode(f"PaddedConv2D({expr(f['pads'])}, {conv})", helpers=("PaddedConv2D",))
    if kind == "pad2d":
        return LeafCode(f"Pad2D({expr(f['padding'])})", helpers=("Pad2D",))
    if kind == "crop2d":
        return LeafCode(f"Crop2D({expr(f['crop'])})", helpers=("Crop2D",))
    if kind == "batchnorm":
        scale, center = key
        extra = ([] if center else ["center=False"]) + ([] if scale else ["scale=False"])
        options = [("momentum", "momentum", REQUIRED), ("epsilon", "epsilon", REQUIRED)]
        extra.append("in_channels=" + expr(f["in_channels"]))
        return LeafCode(f"nn.BatchNorm({arguments(f, (), options, extra)})", note=NOTES["batchnorm"])
    if kind == "layernorm":
        return LeafCode(f"nn.LayerNorm(axis=1, epsilon={expr(f['epsilon'])}, in_channels={expr(f['in_channels'])})",
                        note=NOTES["layernorm"])
    if kind == "activation":
        function = key[0] if isinstance(key, tuple) else key
        if function in ACTIVATION_BLOCKS:
            note = "softrelu is MXNet's name for softplus, log(1 + exp(x))" if function == "softplus" else ""
            return LeafCode(ACTIVATION_BLOCKS[function], note=note)
        if function in ACTIVATION_FUNCTIONS:
            name = ACTIVATION_FUNCTIONS[function]
            return LeafCode(f"nn.HybridLambda({name})", helpers=(name,))
        if function == "leaky_relu":
            return LeafCode(f"LeakyReLU({expr(f['slope'])})", helpers=("LeakyReLU",))
        if function == "elu":
            return LeafCode(f"nn.ELU({expr(f['alpha'])})")
        if function == "gelu":
            if key[1] == "none":
                return LeafCode("nn.GELU()")  # LeakyReLU act_type 'gelu': the exact (erf) GELU
            return LeafCode("nn.HybridLambda(gelu_tanh)", helpers=("gelu_tanh",))
    if kind == "prelu":
        return LeafCode(f"PReLU({expr(f['channels'])}, {expr(f['dims'])})", helpers=("PReLU",))
    if kind == "channel_scale":
        return LeafCode(f"ChannelScale({expr(f['channels'])}, {expr(f['dims'])})", helpers=("ChannelScale",))
    if kind == "normalize":
        return LeafCode(f"Normalize({', '.join(expr(f[k]) for k in ('mean', 'std', 'channels', 'dims'))})",
                        helpers=("Normalize",))
    if kind in ("maxpool2d", "avgpool2d"):
        ceil = key
        if kind == "maxpool2d":
            if ceil:
                return LeafCode(f"CeilMaxPool({expr(f['pool_size'])}, {expr(f['strides'])}, {expr(f['pad_width'])})",
                                helpers=("TrainModeUnderRecord", "MaxPool2D", "CeilMaxPool"), note=NOTES["ceil_max"])
            return LeafCode(f"MaxPool2D({expr(f['pool_size'])}, {expr(f['strides'])}, {expr(f['padding'])})",
                            helpers=("TrainModeUnderRecord", "MaxPool2D"))
        if ceil:
            names = ("kernel", "stride", "pool_padding", "count_include_pad", "height", "width", "pad_width")
            return LeafCode(f"CeilAvgPool({', '.join(expr(f[n]) for n in names)})",
                            helpers=("pool_divisor", "CeilAvgPool"), note=NOTES["ceil_avg"])
        return LeafCode(f"nn.AvgPool2D({expr(f['pool_size'])}, {expr(f['strides'])}, {expr(f['padding'])}, "
                        f"count_include_pad={expr(f['count_include_pad'])})", note=NOTES["avgpool"])
    if kind == "adaptive_avgpool2d":
        return LeafCode(f"AdaptiveAvgPool({expr(f['output_size'])})", helpers=("AdaptiveAvgPool",))
    if kind in ("global_avgpool", "global_maxpool"):
        pool = "nn.GlobalAvgPool2D()" if kind == "global_avgpool" else "GlobalMaxPool2D()"
        helpers = () if kind == "global_avgpool" else ("TrainModeUnderRecord", "GlobalMaxPool2D")
        if key:  # keepdims: (N, C, 1, 1), as Gluon's global pools give it
            return LeafCode(pool, helpers=helpers)
        return LeafCode(pool, call="F.flatten({m}({x}))", seq=[pool, "nn.Flatten()"], helpers=helpers)
    if kind == "flatten":
        return LeafCode("nn.Flatten()")
    if kind == "dense":
        options = [("use_bias", "use_bias", True)]
        extra = ["flatten=False", "in_units=" + expr(f["in_units"])]
        return LeafCode(f"nn.Dense({arguments(f, ('units',), options, extra)})", note=NOTES["dense"])
    if kind == "dropout":
        return LeafCode(f"nn.Dropout({expr(f['rate'])})")
    if kind == "drop_path":
        return LeafCode(f"nn.Dropout({expr(f['rate'])}, axes={expr(f['axes'])})", note=NOTES["drop_path"])
    if kind == "identity":
        # a block, not ``x`` itself, inside a container: a hybridized graph whose output is its
        # own input cannot be differentiated
        return LeafCode(None, call="{x}", seq=['nn.HybridLambda("identity")'])
    if kind == "channel_shuffle":
        return LeafCode(f"ChannelShuffle({expr(f['groups'])})", helpers=("ChannelShuffle",))
    if kind == "channel_slice":
        begin, end = expr(f["begin"]), expr(f["end"])
        module = f"ChannelSlice({begin}, {end})"
        if f["begin"].param or f["end"].param:  # hybrid_forward cannot see __init__'s arguments
            return LeafCode(module, helpers=("ChannelSlice",))
        return LeafCode(None, call=f"F.slice_axis({{x}}, axis=1, begin={begin}, end={end})", seq=[module],
                        helpers=("ChannelSlice",))
    raise ValueError(f"no Gluon code for layer kind {kind!r}")


# ---------------------------------------------------------------------------------------
# Helpers re-written from backends/mxnet/core.py, emitted only where used
# ---------------------------------------------------------------------------------------

HELPERS = {
    "sequential": '''
def sequential(*blocks):
    """A HybridSequential holding ``blocks`` (Gluon's takes no constructor arguments)."""
    container = nn.HybridSequential()
    container.add(*blocks)
    return container
''',
    "DenseConcat": '''
class DenseConcat(nn.HybridBlock):
    """DenseNet's dense block: each unit sees everything before it, x = concat(x, unit(x))."""

    def __init__(self, *units):
        super().__init__()
        self.units = list(units)
        for i, unit in enumerate(units):
            self.register_child(unit, str(i))

    def hybrid_forward(self, F, x):
        for unit in self.units:
            # F.identity: MXNet 1.9.1 dies (SIGFPE) on the input gradient of a bare concat
            # that a grouped or depthwise conv reads
            x = F.identity(F.concat(x, unit(x), dim=1))
        return x
''',
    "PaddedConv2D": '''
class PaddedConv2D(nn.HybridBlock):
    """A Conv2D after zero padding that may differ per side, (top, bottom, left, right): Gluon's
    padding is symmetric, TensorFlow's 'same' at stride 2 pads one more after."""

    def __init__(self, padding, conv):
        super().__init__()
        top, bottom, left, right = padding
        self.pad_width = (0, 0, 0, 0, top, bottom, left, right)
        self.conv = conv

    def hybrid_forward(self, F, x):
        return self.conv(F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0.0))
''',
    "Pad2D": '''
class Pad2D(nn.HybridBlock):
    """Zero padding (top, bottom, left, right) of an NCHW map."""

    def __init__(self, padding):
        super().__init__()
        top, bottom, left, right = padding
        self.pad_width = (0, 0, 0, 0, top, bottom, left, right)

    def hybrid_forward(self, F, x):
        return F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0.0)
''',
    "TrainModeUnderRecord": '''
class TrainModeUnderRecord:
    """Max pools run in train mode under autograd.record(train_mode=False): oneDNN's inference
    max pool keeps no argmax, yet its backward reads one, so eval-mode gradients come out wrong
    (apache/mxnet#10994). Max pooling computes the same in both modes."""

    def forward(self, x):
        if mx.autograd.is_recording() and not mx.autograd.is_training():
            with mx.autograd.train_mode():
                return super().forward(x)
        return super().forward(x)
''',
    "MaxPool2D": '''
class MaxPool2D(TrainModeUnderRecord, nn.MaxPool2D):
    """nn.MaxPool2D with correct eval-mode gradients."""
''',
    "GlobalMaxPool2D": '''
class GlobalMaxPool2D(TrainModeUnderRecord, nn.GlobalMaxPool2D):
    """nn.GlobalMaxPool2D (keeps (N, C, 1, 1)) with correct eval-mode gradients."""
''',
    "CeilMaxPool": '''
class CeilMaxPool(nn.HybridBlock):
    """PyTorch's ceil-mode max pool: -inf padding (F.pad's widths) and a 'valid' pool."""

    def __init__(self, pool_size, strides, pad_width):
        super().__init__()
        self.pad_width = pad_width
        self.pool = MaxPool2D(pool_size, strides)

    def hybrid_forward(self, F, x):
        padded = F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=-np.inf)
        return self.pool(padded)
''',
    "pool_divisor": '''
def pool_divisor(size, kernel, stride, padding, ceil_mode, count_include_pad):
    """What PyTorch divides each window's sum by, along one axis of an average pool."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # PyTorch drops a last window that would start in the right padding
    start = np.arange(out) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    if count_include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)
''',
    "CeilAvgPool": '''
class CeilAvgPool(nn.HybridBlock):
    """PyTorch's ceil-mode average pool: a 'valid' pool over zero padding, rescaled from the
    k*k divisor to PyTorch's per-window divisor (a constant, not a weight)."""

    def __init__(self, kernel, stride, padding, count_include_pad, height, width, pad_width):
        super().__init__()
        self.pad_width = pad_width
        self.pool = nn.AvgPool2D(kernel, stride)
        rows = pool_divisor(height, kernel[0], stride[0], padding[0], True, count_include_pad)
        cols = pool_divisor(width, kernel[1], stride[1], padding[1], True, count_include_pad)
        rescale = kernel[0] * kernel[1] / np.outer(rows, cols)
        self.rescale = self.params.get_constant("rescale", rescale[None, None].astype(np.float32))

    def hybrid_forward(self, F, x, rescale):
        padded = F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0.0)
        return F.broadcast_mul(self.pool(padded), rescale)
''',
    "AdaptiveAvgPool": '''
class AdaptiveAvgPool(nn.HybridBlock):
    """PyTorch's adaptive average pool (MXNet's contrib op uses the same windows)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def hybrid_forward(self, F, x):
        return F.contrib.AdaptiveAvgPooling2D(x, output_size=self.output_size)
''',
    "PReLU": '''
class PReLU(nn.PReLU):
    """PyTorch's PReLU(C): one slope per channel (``alpha``, 0.25 at start), computed as
    where(x > 0, x, alpha[c] * x). Not the LeakyReLU 'prelu' op: in a hybridized graph after a
    conv its backward is wrong (alpha's gradient off by 74-79%)."""

    def __init__(self, channels, dims):
        super().__init__(in_channels=channels)
        self.shape = (1, -1) + (1,) * (dims - 2)

    def hybrid_forward(self, F, x, alpha):
        return F.where(x > 0, x, F.broadcast_mul(x, F.reshape(alpha, shape=self.shape)))
''',
    "ChannelScale": '''
class ChannelScale(nn.HybridBlock):
    """x * weight[c], a learned multiplier per channel (ConvNeXt's layer scale)."""

    def __init__(self, channels, dims):
        super().__init__()
        self.shape = (1, -1) + (1,) * (dims - 2)
        self.weight = self.params.get("weight", shape=(channels,), init=mx.init.One())

    def hybrid_forward(self, F, x, weight):
        return F.broadcast_mul(x, F.reshape(weight, shape=self.shape))
''',
    "Normalize": '''
class Normalize(nn.HybridBlock):
    """Fixed (x - mean[c]) / std[c]: Gluon constants, not weights."""

    def __init__(self, mean, std, channels, dims):
        super().__init__()
        shape = (1, channels) + (1,) * (dims - 2)
        mean = np.broadcast_to(np.float32(mean), (channels,)).reshape(shape)
        std = np.broadcast_to(np.float32(std), (channels,)).reshape(shape)
        self.mean = self.params.get_constant("mean", mean)
        self.std = self.params.get_constant("std", std)

    def hybrid_forward(self, F, x, mean, std):
        return F.broadcast_div(F.broadcast_sub(x, mean), std)
''',
    "ChannelShuffle": '''
class ChannelShuffle(nn.HybridBlock):
    """torchvision's channel_shuffle with reshape's special codes (valid when hybridized):
    split C into (groups, C / groups), swap the two, merge them back."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def hybrid_forward(self, F, x):
        split = F.reshape(x, shape=(0, -4, self.groups, -1, -2))
        return F.reshape(F.swapaxes(split, dim1=1, dim2=2), shape=(0, -3, -2))
''',
    "Crop2D": '''
class Crop2D(nn.HybridBlock):
    """Drops (top, bottom, left, right) rows and columns at the edges of an NCHW map (Keras'
    Cropping2D) with F.slice; negative ends count from the end, so no input size is needed."""

    def __init__(self, crop):
        super().__init__()
        top, bottom, left, right = crop
        self.begin = (None, None, top, left)
        self.end = (None, None, -bottom or None, -right or None)

    def hybrid_forward(self, F, x):
        return F.slice(x, begin=self.begin, end=self.end)
''',
    "ChannelSlice": '''
class ChannelSlice(nn.HybridBlock):
    """Channels begin:end (axis 1), ShuffleNetV2's split."""

    def __init__(self, begin, end):
        super().__init__()
        self.begin, self.end = begin, end

    def hybrid_forward(self, F, x):
        return F.slice_axis(x, axis=1, begin=self.begin, end=self.end)
''',
    "LeakyReLU": '''
class LeakyReLU(nn.HybridBlock):
    """x > 0 ? x : slope * x for any slope (nn.LeakyReLU asserts slope >= 0)."""

    def __init__(self, slope):
        super().__init__()
        self.slope = slope

    def hybrid_forward(self, F, x):
        return F.LeakyReLU(x, act_type="leaky", slope=self.slope)
''',
    "relu6": '''
def relu6(F, x):
    return F.clip(x, 0.0, 6.0)
''',
    "silu": '''
def silu(F, x):
    return x * F.sigmoid(x)
''',
    "hardsigmoid": '''
def hardsigmoid(F, x):
    """PyTorch's relu6(x + 3) / 6; MXNet's hard_sigmoid defaults to Keras 2's 0.2 x + 0.5."""
    return F.hard_sigmoid(x, alpha=1.0 / 6.0, beta=0.5)
''',
    "hardswish": '''
def hardswish(F, x):
    """PyTorch's x * relu6(x + 3) / 6 (MXNet's hard_sigmoid with PyTorch's slope)."""
    return x * F.hard_sigmoid(x, alpha=1.0 / 6.0, beta=0.5)
''',
    "gelu_tanh": '''
def gelu_tanh(F, x):
    """GELU's tanh approximation (MXNet 1.9's LeakyReLU op has the exact one only)."""
    return 0.5 * x * (1.0 + F.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
''',
    "channel_softmax": '''
def channel_softmax(F, x):
    return F.softmax(x, axis=1)  # the channels of each pixel, or the features
''',
}


class GluonDialect(Dialect):
    base = "nn.HybridBlock"
    forward = "def hybrid_forward(self, F, x):"

    def leaf_code(self, child):
        return leaf_code(child)

    def sequential(self, modules, out):
        out.helper("sequential")
        return f"sequential({', '.join(modules)})"

    def dense(self, units, out):
        out.helper("DenseConcat")
        return f"DenseConcat({', '.join(units)})"

    def merge(self, merge, branches, out):
        if merge == "concat":
            out.note(NOTES["concat"])
            return f"F.identity(F.concat({', '.join(branches)}, dim=1))"
        out.note(NOTES["branches"])
        join = "F.broadcast_add" if merge == "add" else "F.broadcast_mul"
        value = branches[0]
        for branch in branches[1:]:
            value = f"{join}({value}, {branch})"
        return value

    def add(self, value, shortcut, out):
        out.note(NOTES["residual"])
        return f"F.broadcast_add({value}, {shortcut})"


def class_name(base: str) -> str:
    return camel(base)


def plan(spec) -> Plan:
    return build_plan(spec, Lowering(), class_name, reserved=HELPERS)


def emit_source(spec) -> str:
    """One Python file that imports only MXNet and NumPy and defines ``build_model()``."""
    the_plan = plan(spec)
    body = Writer()
    write_classes(GluonDialect(), the_plan, body)
    c, h, w = the_plan.spec.input_shape
    out_shape = ", ".join(str(s) for s in the_plan.spec.infer().output_shape)
    body.line("def build_model():")
    with body.indented():
        body.line(f'"""{the_plan.model.name} for (N, {c}, {h}, {w}) float32 input, initialised (Xavier)."""')
        body.line(f"net = {the_plan.model.name}()")
        body.line("net.initialize(mx.init.Xavier())")
        body.line("return net")
    head = [
        f'"""{spec.name} in MXNet Gluon, written by `netparity emit` from its netparity spec.',
        "",
        f"Input (N, {c}, {h}, {w}) float32 (NCHW), output (N, {out_shape}). Every block is a HybridBlock",
        "(net.hybridize() works). Weights that netparity wrote (`netparity emit --weights`) load with:",
        "",
        "    net = build_model()",
        "    net.load_parameters(PATH)",
        '"""',
        "",
        "import numpy as np",
        "",
        'if "bool" not in np.__dict__:',
        "    np.bool = bool  # MXNet 1.9.1 uses np.bool, which NumPy 1.24 removed",
        "",
        "import mxnet as mx  # noqa: E402",
        "from mxnet.gluon import nn  # noqa: E402",
        "",
    ]
    helpers = [HELPERS[name] for name in body.helpers]
    return format_source("\n".join(head) + "\n" + "\n".join(helpers) + "\n" + body.text())


# ---------------------------------------------------------------------------------------
# Native weights: the emitted net's own parameters, saved by save_parameters
# ---------------------------------------------------------------------------------------

def native_keys(spec) -> dict[str, str]:
    """{canonical weight key: the emitted net's parameter name (``net.load_parameters`` keys)}."""
    from ..frameworks import import_mxnet

    import_mxnet()
    from .layout import NATIVE_NAMES

    the_plan = plan(spec)
    natives = native_paths(the_plan)
    rows = the_plan.rows
    keys = {}
    for key in spec.infer().weight_layout():
        path, _, name = key.rpartition(".")
        row = rows[path]
        segments = list(natives[path])
        top, bottom, left, right = row.layer.pads if row.kind == "conv2d" else (0, 0, 0, 0)
        if top != bottom or left != right:
            segments.append("conv")  # PaddedConv2D keeps its Conv2D as .conv
        keys[key] = ".".join(segments) + "." + NATIVE_NAMES.get(row.kind, {}).get(name, name)
    return keys


def write_weights(spec, weights: dict, path, source: str | None = None) -> None:
    """Build the emitted net in this process, set the canonical ``weights`` and save them with
    Gluon's ``save_parameters`` (loadable by ``net.load_parameters(path)``)."""
    import numpy as np

    from ..frameworks import import_mxnet

    mx = import_mxnet()
    net = load_module(source or emit_source(spec)).build_model()
    params = net._collect_params_with_prefix()  # the names save_parameters writes
    for key, native in native_keys(spec).items():
        params[native].set_data(mx.nd.array(np.asarray(weights[key], dtype=np.float32), dtype=np.float32))
    net.save_parameters(str(path))


def read_weights(spec, model) -> dict:
    """The canonical weights held by an emitted net (after ``load_parameters``), float32 copies."""
    params = model._collect_params_with_prefix()
    return {key: params[native].data().asnumpy().copy() for key, native in native_keys(spec).items()}


def load_weights(model, path) -> None:
    """The emitted block's weights from its .params file, by Gluon's own loader."""
    model.load_parameters(str(path))


def load_snippet(weights_name: str) -> list[str]:
    """How a user loads the emitted model and its weight file (for a converted folder's README)."""
    return ["import model", "", "net = model.build_model()", f"net.load_parameters({weights_name!r})"]
