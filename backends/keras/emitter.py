"""Keras 3 source for a spec: the functional API, one function per block structure, channels_last.

The code builds what netparity's keras backend (backends/keras/core.py) builds, layer for layer:
explicit padding before every 'valid' conv and pool (ZeroPadding2D, or -inf for max pools),
BatchNormalization with PyTorch's epsilon and momentum in Keras' convention, Keras' own
layers wherever they compute the spec's (PyTorch's) function, and the backend's small layers
re-written inline where none does. Inside, tensors are NHWC; a Flatten orders features
(H, W, C), so layers that pick features by PyTorch's index reorder first, as the backend does.
The weight file is Keras' own (``model.save_weights``), in Keras' layouts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...spec.pooling import avg_pool_divisor, pool_padding
from . import layout
from ..emit.naming import identifier, pair_value
from ..emit.plan import Child, ClassPlan, Plan, build_plan, join, native_paths
from ..emit.source import EmitError, Writer, arguments, call_arguments, class_doc, expr, format_source, load_module

NAME = "keras"
FRAMEWORK = "Keras 3"
LOAD_HINT = "model.load_weights(PATH)"
WEIGHTS_SUFFIX = ".weights.h5"
INPUT_LAYOUT = "NHWC"  # how the emitted model takes an image batch

NOTES = {
    "pad": "explicit zero padding, then a 'valid' conv: Keras' padding='same' pads a stride-2 window "
           "(0, 1) on even inputs where PyTorch pads (1, 1)",
    "depthwise": "groups == input channels: DepthwiseConv2D, as Keras' own MobileNets (a grouped Conv2D "
                 "runs through XLA on the CPU, far slower)",
    "subsample": "Conv2D refuses a stride together with dilation: stride 1, then every stride-th output "
                 "(the same numbers)",
    "batchnorm": "Keras' BatchNormalization defaults to epsilon 1e-3 and momentum 0.99, and its momentum "
                 "weighs the running value: momentum=0.9 here is PyTorch's momentum=0.1",
    "layernorm": "LayerNormalization over the last axis, the channels of each pixel; Keras' default "
                 "epsilon is 1e-3, PyTorch's 1e-5",
    "maxpool": "-inf padding, then a 'valid' pool: PyTorch's padding never wins a window, where zero "
               "padding would over negative inputs",
    "ceil_mode": "Keras has no ceil mode: extra padding at the bottom and right gives PyTorch's ceil-mode "
                 "windows",
    "avgpool": "zero padding, then a 'valid' pool: the padding counts in the average, as PyTorch's "
               "count_include_pad=True ('same' would leave it out)",
    "divisor": "each window's average rescaled to PyTorch's divisor (ceil mode or count_include_pad=False "
               "count fewer cells in border windows)",
    "flatten": "Flatten of NHWC orders the features (H, W, C), PyTorch's (C, H, W): the weight file holds "
               "the next dense kernel's rows in (H, W, C) order",
    "prelu": "one slope per channel, shared over H and W (Keras' PReLU learns one per element by "
             "default), 0.25 at start as PyTorch's",
    "drop_path": "stochastic depth: Dropout with noise_shape (None, 1, 1, 1) keeps or drops each example "
                 "whole",
    "softmax": "softmax over the last axis: the channels of each pixel (PyTorch's dim 1), or the features",
    "hard_sigmoid": "Keras 3's hard_sigmoid is PyTorch's relu6(x + 3) / 6 (Keras 2's was 0.2 x + 0.5)",
    "hard_silu": "Keras' hard_silu is PyTorch's hardswish, x * relu6(x + 3) / 6",
    "leaky_relu": "Keras' LeakyReLU defaults to slope 0.3, PyTorch's to 0.01",
    "shuffle": "channel shuffle on the last axis: (H, W, groups, C / groups), the two swapped, merged "
               "back",
    "reorder": "flat features in Flatten's (H, W, C) order are reordered to PyTorch's (C, H, W) first",
    "normalize": "mean and std in the (H, W, C) order of the flattened features",
}

# Activations with a Keras layer computing PyTorch's function (backends/keras/core.py NATIVE_ACTIVATIONS),
# and those built otherwise.
SIMPLE_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu",
                      "hardsigmoid": "hard_sigmoid", "hardswish": "hard_silu", "softplus": "softplus"}
KNOWN_ACTIVATIONS = {*SIMPLE_ACTIVATIONS, "relu6", "leaky_relu", "elu", "gelu", "softmax"}

# Kinds whose flat output keeps its input's feature order (backends/keras/core.py ORDER_KEEPING_KINDS).
ORDER_KEEPING_KINDS = frozenset({"activation", "dropout", "drop_path", "identity", "flatten", "batchnorm",
                                 "layernorm", "prelu", "channel_scale", "normalize"})


# ---------------------------------------------------------------------------------------
# Flat feature orders: which flat tensors hold an (H, W, C) flattening (as the backend tracks)
# ---------------------------------------------------------------------------------------

def flat_layouts(spec) -> tuple[dict, dict]:
    """({path: (C, H, W) of an (H, W, C)-ordered flat input, or None}, the same for outputs)."""
    rows = {r.path: r for r in spec.infer().rows}
    inputs: dict = {}
    outputs: dict = {}

    def same_order(layouts):
        return layouts[0] if all(layout == layouts[0] for layout in layouts) else None

    def build(path, layer, x):
        row = rows[path]
        inputs[path] = x
        kind = layer.kind
        out = None
        if kind == "flatten" and len(row.input_shape) == 3:
            out = tuple(row.input_shape)
        elif kind == "sequence":
            out = x
            for rel, child in layer.children():
                out = build(join(path, rel), child, out)
            out = out if layer.layers else None
        elif kind == "branches":
            outs = [build(join(path, rel), child, x) for rel, child in layer.children()]
            out = None if layer.merge == "concat" else same_order(outs)
        elif kind == "residual":
            body = build(join(path, "body"), layer.body, x)
            skip = x if layer.shortcut is None else build(join(path, "shortcut"), layer.shortcut, x)
            out = same_order([body, skip])
        elif kind in ("concat_branches", "dense_concat"):
            for rel, child in layer.children():
                build(join(path, rel), child, x)
        if out is None and len(row.input_shape) == 1 and len(row.output_shape) == 1 and kind in ORDER_KEEPING_KINDS:
            out = x
        outputs[path] = out
        return out

    layout = None
    for i, block in enumerate(spec.blocks):
        layout = build(f"blocks[{i}]", block, layout)
    return inputs, outputs


def _merge_reorders(layer, children_layouts) -> list:
    """Which merged operands are reordered to (C, H, W) first (None: not), as the backend does:
    concat reorders every (H, W, C) one; add and mul only when the operands' orders differ."""
    if getattr(layer, "merge", "add") == "concat" or len(set(children_layouts)) > 1:
        return list(children_layouts)
    return [None] * len(children_layouts)


def _hwc_order(vector, chw) -> tuple:
    """A per-feature vector of a flat input in that input's order: (C, H, W) as given, or (H, W, C)
    after a Flatten of NHWC (layout.py)."""
    import numpy as np

    from .layout import features_to_native

    return tuple(features_to_native(np.asarray(vector), chw).tolist())


def _zero_padding(pads) -> int | tuple:
    """ZeroPadding2D's argument for (top, bottom, left, right): an int, (h, w) or ((t, b), (l, r))."""
    top, bottom, left, right = (int(p) for p in pads)
    if top == bottom and left == right:
        return pair_value((top, left))
    return ((top, bottom), (left, right))


# ---------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------

class Lowering:
    def __init__(self, spec):
        self.inputs, self.outputs = flat_layouts(spec)
        self.rows = {r.path: r for r in spec.infer().rows}

    def leaf(self, path, layer, row):
        kind = layer.kind
        channels = row.input_shape[0]
        if kind == "conv2d":
            depthwise = layer.groups == channels and layer.groups > 1
            subsample = max(layer.stride) > 1 and max(layer.dilation) > 1 and not depthwise
            facts = {"padding": ("padding", _zero_padding(layer.pads)),
                     "kernel_size": ("kernel", pair_value(layer.kernel)), "strides": ("stride", pair_value(layer.stride)),
                     "dilation_rate": ("dilation", pair_value(layer.dilation)), "use_bias": ("flag", layer.bias)}
            if depthwise:
                facts["depth_multiplier"] = ("other", layer.out_channels // layer.groups)
            else:
                facts.update(filters=("channels", layer.out_channels), groups=("channels", layer.groups))
            return (depthwise, subsample), facts
        if kind == "pad2d":
            return (), {"padding": ("padding", _zero_padding(layer.pads))}
        if kind == "crop2d":
            return (), {"cropping": ("padding", _zero_padding(layer.crops))}
        if kind == "batchnorm":
            return (layer.scale, layer.center), {"epsilon": ("float", layer.eps),
                                                 "momentum": ("float", layout.momentum_to_native(layer.momentum))}
        if kind == "layernorm":
            return (), {"epsilon": ("float", layer.eps)}
        if kind == "activation":
            function = layer.function
            if function not in KNOWN_ACTIVATIONS:
                raise EmitError(f"{path}: no Keras code for activation {function!r}")
            if function == "leaky_relu":
                return (function, layer.negative_slope >= 0), {"negative_slope": ("float", float(layer.negative_slope))}
            if function == "elu":
                return function, {"alpha": ("float", float(layer.alpha))}
            if function == "gelu":
                return function, {"approximate": ("flag", layer.approximate == "tanh")}
            return function, {}
        if kind == "prelu":
            return len(row.input_shape), {}
        if kind == "channel_scale":
            return (), {}
        if kind == "normalize":
            chw = self.inputs.get(path)
            values = [vector if len(vector) == 1 else _hwc_order(vector, chw) for vector in (layer.mean, layer.std)]
            return chw is not None, {"mean": ("other", values[0]), "std": ("other", values[1])}
        if kind in ("maxpool2d", "avgpool2d"):
            _, h, w = row.input_shape
            (top, bottom), (left, right) = (pool_padding(size, layer.kernel[i], layer.stride[i], layer.padding[i],
                                                         layer.ceil_mode) for i, size in enumerate((h, w)))
            facts = {"padding": ("padding", _zero_padding((top, bottom, left, right))),
                     "pool_size": ("kernel", pair_value(layer.kernel)), "strides": ("stride", pair_value(layer.stride))}
            if kind == "maxpool2d":
                return layer.ceil_mode, facts
            divisor = avg_pool_divisor(h, w, layer.kernel, layer.stride, layer.padding, layer.ceil_mode,
                                       layer.count_include_pad)
            rescale = bool((divisor != layer.kernel[0] * layer.kernel[1]).any())
            if rescale:
                facts.update(size=("size", (h, w)), kernel=("kernel", layer.kernel), stride=("stride", layer.stride),
                             pool_padding=("padding", layer.padding), ceil_mode=("flag", layer.ceil_mode),
                             count_include_pad=("flag", layer.count_include_pad))
            return (rescale, layer.ceil_mode), facts
        if kind == "adaptive_avgpool2d":
            return (), {"output_size": ("size", tuple(layer.output_size))}
        if kind in ("global_avgpool", "global_maxpool"):
            return layer.keepdims, {}
        if kind == "dense":
            return (), {"units": ("channels", layer.out_features), "use_bias": ("flag", layer.bias)}
        if kind == "dropout":
            return (), {"rate": ("float", float(layer.p))}
        if kind == "drop_path":
            return (), {"rate": ("float", float(layer.p)),
                        "noise_shape": ("other", (None,) + (1,) * len(row.input_shape))}
        if kind == "channel_shuffle":
            c, h, w = row.input_shape
            return (), {"split": ("other", (h, w, layer.groups, c // layer.groups)), "merged": ("other", (h, w, c))}
        if kind == "channel_slice":
            chw = self.inputs.get(path)
            facts = {"start": ("channels", layer.start), "stop": ("channels", layer.stop)}
            if chw is not None:
                facts["chw"] = ("other", tuple(chw))
            return chw is not None, facts
        if kind in ("flatten", "identity"):
            return len(row.input_shape), {}
        raise EmitError(f"{path}: no Keras code for layer kind {kind!r}")

    def block(self, path, layer, row):
        if layer.kind == "residual":
            body = self.outputs.get(join(path, "body"))
            skip = self.inputs.get(path) if layer.shortcut is None else self.outputs.get(join(path, "shortcut"))
            reorders = _merge_reorders(layer, [body, skip])
        elif layer.kind in ("branches", "concat_branches"):
            reorders = _merge_reorders(layer, [self.outputs.get(join(path, rel)) for rel, _ in layer.children()])
        else:
            return (), {}
        key = tuple(r is not None for r in reorders)
        return key, {f"chw{i}": ("other", tuple(r)) for i, r in enumerate(reorders) if r is not None}


# ---------------------------------------------------------------------------------------
# Leaf code: the layers one leaf becomes, applied in turn
# ---------------------------------------------------------------------------------------

@dataclass
class Step:
    """``{var} = {layer}({args}, name=...)({var})``; ``suffix`` is added to the layer's name,
    ``guard`` (a parameter) makes the step conditional, ``function`` calls a helper function
    ``{layer}({var}, {args}, name=...)`` instead."""

    layer: str
    args: str = ""
    suffix: str = ""
    guard: str | None = None
    note: str = ""
    helpers: tuple[str, ...] = ()
    function: bool = False
    also: str = ""  # a second note


def _padding_step(slot, layer: str, args_after: str = "", note: str = "", helpers=()) -> list[Step]:
    """A padding layer, left out where the padding is a literal 0 and guarded where it is a
    parameter (0 in some instances)."""
    if slot.param is None and not slot.value:
        return []
    args = expr(slot) + (f", {args_after}" if args_after else "")
    return [Step(layer, args, "_pad", guard=slot.param, note=note, helpers=helpers)]


def leaf_steps(child: Child) -> list[Step]:
    kind, key, f = child.kind, child.key, child.facts
    if kind == "conv2d":
        depthwise, subsample = key
        steps = _padding_step(f["padding"], "layers.ZeroPadding2D", note=NOTES["pad"])
        options = [("strides", "strides", 1), ("dilation_rate", "dilation_rate", 1), ("use_bias", "use_bias", True)]
        if subsample:
            options = options[1:]
        if depthwise:
            options.insert(1, ("depth_multiplier", "depth_multiplier", 1))
            steps.append(Step("layers.DepthwiseConv2D", arguments(f, ("kernel_size",), options), note=NOTES["depthwise"]))
        else:
            options.insert(2, ("groups", "groups", 1))
            steps.append(Step("layers.Conv2D", arguments(f, ("filters", "kernel_size"), options)))
        if subsample:
            steps.append(Step("Subsample2D", expr(f["strides"]), "_stride", note=NOTES["subsample"],
                              helpers=("Subsample2D",)))
        return steps
    if kind == "pad2d":
        return [Step("layers.ZeroPadding2D", expr(f["padding"]))]
    if kind == "crop2d":
        return [Step("layers.Cropping2D", expr(f["cropping"]))]
    if kind == "batchnorm":
        scale, center = key
        extra = ([] if scale else ["scale=False"]) + ([] if center else ["center=False"])
        return [Step("layers.BatchNormalization", f"epsilon={expr(f['epsilon'])}, momentum={expr(f['momentum'])}"
                     + "".join(", " + e for e in extra), note=NOTES["batchnorm"])]
    if kind == "layernorm":
        return [Step("layers.LayerNormalization", f"epsilon={expr(f['epsilon'])}", note=NOTES["layernorm"])]
    if kind == "activation":
        function = key[0] if isinstance(key, tuple) else key
        simple = SIMPLE_ACTIVATIONS
        if function in simple:
            note = NOTES.get(simple[function], "")
            return [Step("layers.Activation", f'"{simple[function]}"', note=note)]
        if function == "relu6":
            return [Step("layers.ReLU", "max_value=6.0")]
        if function == "leaky_relu":
            if key[1]:
                return [Step("layers.LeakyReLU", f"negative_slope={expr(f['negative_slope'])}",
                             note=NOTES["leaky_relu"])]
            return [Step("SignedLeakyReLU", expr(f["negative_slope"]), helpers=("SignedLeakyReLU",))]
        if function == "elu":
            return [Step("layers.ELU", f"alpha={expr(f['alpha'])}")]
        if function == "gelu":
            return [Step("GELU", f"approximate={expr(f['approximate'])}", helpers=("GELU",))]
        if function == "softmax":
            return [Step("layers.Softmax", "axis=-1", note=NOTES["softmax"])]
    if kind == "prelu":
        shared = ", shared_axes=[1, 2]" if key == 3 else ""
        return [Step("layers.PReLU", f"alpha_initializer=keras.initializers.Constant(0.25){shared}",
                     note=NOTES["prelu"])]
    if kind == "channel_scale":
        return [Step("ChannelScale", helpers=("ChannelScale",))]
    if kind == "normalize":
        return [Step("FixedNormalize", f"{expr(f['mean'])}, {expr(f['std'])}", helpers=("FixedNormalize",),
                     note=NOTES["normalize"] if key else "")]
    if kind == "maxpool2d":
        steps = _padding_step(f["padding"], "ConstantPad2D", '-float("inf")', NOTES["maxpool"], ("ConstantPad2D",))
        return _ceil_note(steps, key) + [Step("layers.MaxPooling2D", _pool_arguments(f))]
    if kind == "avgpool2d":
        rescale, ceil_mode = key
        steps = _ceil_note(_padding_step(f["padding"], "layers.ZeroPadding2D", note=NOTES["avgpool"]), ceil_mode)
        steps.append(Step("layers.AveragePooling2D", _pool_arguments(f)))
        if rescale:
            names = ("size", "kernel", "stride", "pool_padding", "ceil_mode", "count_include_pad")
            steps.append(Step("DivisorScale", ", ".join(expr(f[n]) for n in names), "_divisor",
                              note=NOTES["divisor"], helpers=("pool_divisor", "DivisorScale")))
        return steps
    if kind == "adaptive_avgpool2d":
        return [Step("AdaptiveAvgPool2D", expr(f["output_size"]), helpers=("pool_matrix", "AdaptiveAvgPool2D"))]
    if kind in ("global_avgpool", "global_maxpool"):
        layer = "layers.GlobalAveragePooling2D" if kind == "global_avgpool" else "layers.GlobalMaxPooling2D"
        return [Step(layer, "keepdims=True" if key else "")]
    if kind == "flatten":
        return [Step("layers.Flatten", note=NOTES["flatten"] if key == 3 else "")]
    if kind == "dense":
        return [Step("layers.Dense", arguments(f, ("units",), [("use_bias", "use_bias", True)]))]
    if kind == "dropout":
        return [Step("layers.Dropout", expr(f["rate"]))]
    if kind == "drop_path":
        return [Step("layers.Dropout", f"{expr(f['rate'])}, noise_shape={expr(f['noise_shape'])}",
                     note=NOTES["drop_path"])]
    if kind == "identity":
        return []
    if kind == "channel_shuffle":
        return [Step("layers.Reshape", expr(f["split"]), "_groups", note=NOTES["shuffle"]),
                Step("layers.Permute", "(1, 2, 4, 3)", "_swap"), Step("layers.Reshape", expr(f["merged"]))]
    if kind == "channel_slice":
        steps = [Step("chw_order", expr(f["chw"]), "_input", note=NOTES["reorder"], helpers=("chw_order",),
                      function=True)] if key else []
        return steps + [Step("ChannelSlice", f"{expr(f['start'])}, {expr(f['stop'])}", helpers=("ChannelSlice",))]
    raise ValueError(f"no Keras code for layer kind {kind!r}")


def _ceil_note(steps: list[Step], ceil_mode: bool) -> list[Step]:
    if ceil_mode and steps:
        steps[0].also = NOTES["ceil_mode"]
    return steps


def _pool_arguments(f) -> str:
    stride_default = f["pool_size"].value if f["pool_size"].param is None else object()
    return arguments(f, ("pool_size",), [("strides", "strides", stride_default)])


# ---------------------------------------------------------------------------------------
# Helpers re-written from backends/keras/core.py, emitted only where used
# ---------------------------------------------------------------------------------------

NUMPY_HELPERS = frozenset({"pool_divisor", "pool_matrix", "DivisorScale", "AdaptiveAvgPool2D", "FixedNormalize"})

HELPERS = {
    "chw_order": '''
def chw_order(x, chw, name):
    """Flat features in Flatten's (H, W, C) order, reordered to PyTorch's (C, H, W) order."""
    c, h, w = chw
    x = layers.Reshape((h, w, c), name=f"{name}_hwc")(x)
    x = layers.Permute((3, 1, 2), name=f"{name}_chw")(x)
    return layers.Flatten(name=f"{name}_flat")(x)
''',
    "ConstantPad2D": '''
@keras.saving.register_keras_serializable(package="netparity_emitted")
class ConstantPad2D(layers.Layer):
    """Pads H and W of an NHWC tensor with a constant (ZeroPadding2D's padding argument)."""

    def __init__(self, padding, value, **kwargs):
        super().__init__(**kwargs)
        self.padding = padding
        if isinstance(padding, int):
            padding = (padding, padding)
        if isinstance(padding[0], int):
            padding = ((padding[0], padding[0]), (padding[1], padding[1]))
        self.pads = [[0, 0], list(padding[0]), list(padding[1]), [0, 0]]
        self.value = value

    def call(self, x):
        return ops.pad(x, self.pads, mode="constant", constant_values=self.value)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}
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
    "DivisorScale": '''
@keras.saving.register_keras_serializable(package="netparity_emitted")
class DivisorScale(layers.Layer):
    """A 'valid' average pool's output (divided by the window area) rescaled to PyTorch's
    per-window divisor; a constant, not a weight."""

    def __init__(self, size, kernel, stride, padding, ceil_mode, count_include_pad, **kwargs):
        super().__init__(**kwargs)
        self.geometry = dict(size=size, kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                             count_include_pad=count_include_pad)
        geometry = [(size[i], kernel[i], stride[i], padding[i]) for i in range(2)]
        rows, cols = (pool_divisor(*g, ceil_mode, count_include_pad) for g in geometry)
        scale = kernel[0] * kernel[1] / np.outer(rows, cols)
        self.scale = scale.astype(np.float32)[None, :, :, None]

    def call(self, x):
        return x * ops.convert_to_tensor(self.scale, dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), **self.geometry}
''',
    "pool_matrix": '''
def pool_matrix(size, out):
    """(out, size) averaging matrix of PyTorch's adaptive average pool: window i covers
    [floor(i * size / out), ceil((i + 1) * size / out))."""
    matrix = np.zeros((out, size), dtype=np.float32)
    for i in range(out):
        lo, hi = (i * size) // out, -((-(i + 1) * size) // out)
        matrix[i, lo:hi] = 1.0 / (hi - lo)
    return matrix
''',
    "AdaptiveAvgPool2D": '''
@keras.saving.register_keras_serializable(package="netparity_emitted")
class AdaptiveAvgPool2D(layers.Layer):
    """PyTorch's adaptive average pool on NHWC, as the fixed linear map it is (Keras has none)."""

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = output_size

    def build(self, input_shape):
        self.rows = pool_matrix(input_shape[1], self.output_size[0])
        self.cols = pool_matrix(input_shape[2], self.output_size[1])

    def call(self, x):
        x = ops.einsum("ih,nhwc->niwc", ops.convert_to_tensor(self.rows, dtype=x.dtype), x)
        return ops.einsum("jw,niwc->nijc", ops.convert_to_tensor(self.cols, dtype=x.dtype), x)

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}
''',
    "Subsample2D": '''
@keras.saving.register_keras_serializable(package="netparity_emitted")
class Subsample2D(layers.Layer):
    """Every stride-th row and column of an NHWC tensor, from the first."""

    def __init__(self, strides, **kwargs):
        super().__init__(**kwargs)
        self.strides = (strides, strides) if isinstance(strides, int) else tuple(strides)

    def call(self, x):
        return x[:, :: self.strides[0], :: self.strides[1], :]

    def get_config(self):
        return {**super().get_config(), "strides": self.strides}
''',
    "SignedLeakyReLU": '''
@keras.saving.register_keras_serializable(package="netparity_emitted")
class SignedLeakyReLU(layers.Layer):
    """PyTorch's leaky_relu for a negative slope (Keras' LeakyReLU refuses one)."""

    def __init__(self, negative_slope, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = negative_slope

    def call(self, x):
        return ops.relu(x) - ops.cast(self.negative_slope, x.dtype) * ops.relu(-x)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}
''',
    "GELU": '''
@keras.saving.register_keras_serializable(package="netparity_emitted")
class GELU(layers.Layer):
    """GELU with its approximation explicit: Keras' activations.gelu defaults to the exact
    one, ops.gelu to the tanh one."""

    def __init__(self, approximate, **kwargs):
        super().__init__(**kwargs)
        self.approximate = approximate

    def call(self, x):
        return ops.gelu(x, approximate=self.approximate)

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}
''',
    "ChannelScale": '''
@keras.saving.register_keras_serializable(package="netparity_emitted")
class ChannelScale(layers.Layer):
    """x * gamma, a learned multiplier per channel (the last axis): ConvNeXt's layer scale."""

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype)
''',
    "FixedNormalize": '''
@keras.saving.register_keras_serializable(package="netparity_emitted")
class FixedNormalize(layers.Layer):
    """(x - mean) / std over the last axis: constants, not weights (one value, or one each)."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def call(self, x):
        mean = ops.convert_to_tensor(self.mean, dtype=x.dtype)
        return (x - mean) / ops.convert_to_tensor(self.std, dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean.tolist(), "std": self.std.tolist()}
''',
    "ChannelSlice": '''
@keras.saving.register_keras_serializable(package="netparity_emitted")
class ChannelSlice(layers.Layer):
    """Channels (the last axis) start:stop, ShuffleNetV2's split."""

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = start, stop

    def call(self, x):
        return x[..., self.start : self.stop]

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}
''',
}

# The helpers that are Keras layers: registered with Keras (package "netparity_emitted") and
# configurable (get_config gives the constructor's arguments), so that a model saved whole with
# model.save loads with keras.models.load_model wherever the emitted file has been imported.
LAYER_HELPERS = frozenset(name for name, text in HELPERS.items() if "(layers.Layer):" in text)


# ---------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------

class _Scope:
    """Statements of one function: layer names ``{name}_...`` (or literals at the top level)."""

    def __init__(self, out: Writer, top: bool):
        self.out = out
        self.top = top

    def name(self, local: str) -> str:
        return f'"{local}"' if self.top else f'f"{{name}}_{local}"'

    def own_name(self) -> str:
        return '"output"' if self.top else "name"

    def steps(self, steps: list[Step], var: str, src: str, local: str) -> str:
        """Apply ``steps`` to ``src``, assigning ``var``; returns the expression holding the result."""
        for step in steps:
            for helper in step.helpers:
                self.out.helper(helper)
            self.out.note(step.note)
            self.out.note(step.also)
            if step.guard is not None and src != var:
                self.out.line(f"{var} = {src}")
                src = var
            name = self.name(local + step.suffix)
            if step.function:
                statement = f"{var} = {step.layer}({src}, {step.args}, name={name})"
            else:
                args = f"{step.args}, " if step.args else ""
                statement = f"{var} = {step.layer}({args}name={name})({src})"
            if step.guard is not None:
                self.out.line(f"if {step.guard}:")
                with self.out.indented():
                    self.out.line(statement)
            else:
                self.out.line(statement)
            src = var
        return src

    def child(self, child: Child, var: str, src: str, local: str | None = None) -> str:
        local = child.attr if local is None else local
        if child.role == "leaf":
            return self.steps(leaf_steps(child), var, src, local)
        if child.role == "call":
            self.out.line(f"{var} = {call(child, src, self.name(local))}")
            return var
        if child.role == "inline":
            for item in child.children:
                src = self.child(item, var, src, f"{local}_{item.attr}")
            return src
        if not child.children:
            self.out.line(f"{var} = layers.Identity(name={self.name(local)})({src})")
            return var
        for j, unit in enumerate(child.children):
            self.out.line(f"unit = {call(unit, src, self.name(f'{local}_{unit.attr}'))}")
            self.out.line(f"{var} = layers.Concatenate(name={self.name(f'{local}_concat{j}')})([{src}, unit])")
            src = var
        return src


def call(child: Child, src: str, name: str) -> str:
    args = "".join(f", {part}" for part in call_arguments(child.cls, child.args))
    return f"{child.cls.name}({src}{args}, name={name})"


def _reorder(scope: _Scope, cls: ClassPlan, index: int, value: str, label: str) -> str:
    """``value`` reordered to (C, H, W) when the block's key says so (flat merges)."""
    if not cls.key or not cls.key[index]:
        return value
    scope.out.helper("chw_order")
    scope.out.note(NOTES["reorder"])
    scope.out.line(f"{label} = chw_order({value}, {expr(cls.facts[f'chw{index}'])}, name={scope.name(label)})")
    return label


def write_function(cls: ClassPlan, out: Writer) -> None:
    first = "inputs" if cls.kind in ("residual", "branches") else "x"
    params = "".join(f", {p.name}" for p in cls.params)
    out.line(f"def {cls.name}({first}{params}, name):")
    with out.indented():
        for line in class_doc(cls, "A residual block: body(x) + shortcut(x)"):
            out.line(line)
        write_body(cls, _Scope(out, top=False), first)
    out.line()
    out.line()


def write_body(cls: ClassPlan, scope: _Scope, first: str) -> None:
    out = scope.out
    if cls.kind in ("model", "sequence"):
        src = first
        for child in cls.children:
            src = scope.child(child, "x", src)
        if not scope.top:
            out.line(f"return {src}")
        elif src != "x":
            out.line(f"x = {src}")
        return
    if cls.kind == "residual":
        body = first
        for child in cls.children:
            body = scope.child(child, "x", body)
        skip = first
        if cls.shortcut is not None:
            if cls.shortcut_flag:
                out.line(f"shortcut = {first}")
                out.line(f"if {cls.shortcut_flag}:")
                with out.indented():
                    scope.child(cls.shortcut, "shortcut", "shortcut")
                skip = "shortcut"
            else:
                skip = scope.child(cls.shortcut, "shortcut", first)
        body = _reorder(scope, cls, 0, body, "body")
        skip = _reorder(scope, cls, 1, skip, "shortcut")
        out.line(f"return layers.Add(name={scope.own_name()})([{body}, {skip}])")
        return
    outs = []
    for i, child in enumerate(cls.children):
        var = f"branch{i + 1}"  # by position: an attribute name could be a function's name
        value = scope.child(child, var, first, local=child.attr)
        outs.append(_reorder(scope, cls, i, value, var))
    if len(outs) == 1:  # Keras' merge layers take two inputs or more: one branch is itself
        out.line(f"return layers.Identity(name={scope.own_name()})({outs[0]})")
        return
    merge = {"concat": "layers.Concatenate", "add": "layers.Add", "mul": "layers.Multiply"}[cls.merge]
    out.line(f"return {merge}(name={scope.own_name()})([{', '.join(outs)}])")


def class_name(base: str) -> str:
    """A function name that no variable of the emitted functions shadows."""
    name = identifier(base) or "block"
    return name + "_block" if re.fullmatch(r"(branch\d*|body|unit|shortcut)_?", name) else name


def plan(spec) -> Plan:
    return build_plan(spec, Lowering(spec), class_name, reserved=HELPERS)


# Specs with more rows than this raise Python's recursion limit in build_model (keras.Model recurses
# through the graph; backends/keras/core.py graph_recursion does the same for the backend).
DEEP_GRAPH_ROWS = 300


def emit_source(spec) -> str:
    """One Python file that imports only Keras (and NumPy where a helper needs it) and defines
    ``build_model()``, a functional channels_last model."""
    the_plan = plan(spec)
    body = Writer()
    for cls in the_plan.classes[:-1]:
        write_function(cls, body)
    c, h, w = the_plan.spec.input_shape
    output = the_plan.spec.infer().output_shape
    out_shape = ", ".join(str(s) for s in (output if len(output) == 1 else (*output[1:], output[0])))
    body.line("def build_model():")
    with body.indented():
        body.line(f'"""The network for (N, {h}, {w}, {c}) float32 input: NHWC, channels last."""')
        body.line('if keras.config.image_data_format() != "channels_last":')
        with body.indented():
            body.line('raise ValueError("this model is written channels_last; set image_data_format")')
        body.line(f'x = inputs = keras.Input(shape=({h}, {w}, {c}), name="input")')
        write_body(the_plan.model, _Scope(body, top=True), "x")
        rows = len(the_plan.spec.infer().rows)
        deep = rows > DEEP_GRAPH_ROWS
        if deep:
            body.line("# keras.Model walks the graph recursively, a few frames per layer: deeper than Python's")
            body.line("# default limit of 1000 frames allows (keras/src/ops/function.py _build_map_helper)")
            body.line(f"sys.setrecursionlimit(max(sys.getrecursionlimit(), {8 * rows + 2000}))")
        body.line(f'return keras.Model(inputs, x, name="{identifier(spec.name) or "model"}")')
    numpy = ["import numpy as np"] if any(name in NUMPY_HELPERS for name in body.helpers) else []
    saving = [] if not LAYER_HELPERS & set(body.helpers) else [
        "",
        'Saved whole (model.save("m.keras")), it loads with keras.models.load_model in a process',
        "that has imported this file: its layer classes register themselves with Keras on import.",
    ]
    head = [
        f'"""{spec.name} in Keras 3, written by `netparity emit` from its netparity spec.',
        "",
        "The functional API, channels last: input (N, H, W, C) = "
        f"(N, {h}, {w}, {c}) float32, the spec's NCHW",
        f"input transposed by x.transpose(0, 2, 3, 1); output (N, {out_shape}). The weight file is in",
        "Keras' own layout (conv kernels (kh, kw, in, out), dense kernels (in, out)); weights that",
        "netparity wrote (`netparity emit --weights`) load with:",
        "",
        "    model = build_model()",
        "    model.load_weights(PATH)  # a .weights.h5 file",
        *saving,
        '"""',
        "",
        *(["import sys", ""] if deep else []),
        "import keras",
        *numpy,
        "from keras import layers, ops",
        "",
    ]
    helpers = [HELPERS[name] for name in body.helpers]
    return format_source("\n".join(head) + "\n" + "\n".join(helpers) + "\n" + body.text())


# ---------------------------------------------------------------------------------------
# Native weights: the emitted model's own variables, saved by save_weights
# ---------------------------------------------------------------------------------------

def native_keys(spec) -> dict[str, str]:
    """{canonical weight key: "layer name/variable name" in the emitted model}."""
    from ..frameworks import import_keras

    import_keras()
    from .layout import NATIVE_NAMES as KERAS_NAMES

    the_plan = plan(spec)
    natives = native_paths(the_plan)
    keys = {}
    for key in spec.infer().weight_layout():
        path, _, name = key.rpartition(".")
        keys[key] = "_".join(natives[path]) + "/" + KERAS_NAMES[the_plan.rows[path].kind][name]
    return keys


def write_weights(spec, weights: dict, path, source: str | None = None) -> None:
    """Build the emitted model in this process, set the canonical ``weights`` in Keras' layouts
    (the backend's conversions: HWIO kernels, (in, out) dense kernels with (H, W, C)-ordered
    rows after a Flatten) and save them with ``model.save_weights`` (``model.load_weights``)."""
    import numpy as np

    from ..frameworks import import_keras

    import_keras()  # the Keras backend's environment, or FrameworkMissing
    from .core import _weight_to_keras

    model = load_module(source or emit_source(spec)).build_model()
    layouts, _ = flat_layouts(spec)
    rows = {r.path: r for r in spec.infer().rows}
    for key, native in native_keys(spec).items():
        layer_name, variable_name = native.split("/")
        variables = {v.name: v for v in model.get_layer(layer_name).weights}
        spec_path, _, name = key.rpartition(".")
        value = _weight_to_keras(rows[spec_path], name, np.asarray(weights[key], dtype=np.float32),
                                 layouts.get(spec_path))
        variables[variable_name].assign(np.ascontiguousarray(value))
    model.save_weights(str(path))


def read_weights(spec, model) -> dict:
    """The canonical weights held by an emitted model (after ``load_weights``), converted back
    from Keras' layouts by the backend's inverse conversions."""
    import numpy as np

    from .core import _weight_to_canonical

    layouts, _ = flat_layouts(spec)
    rows = {r.path: r for r in spec.infer().rows}
    weights = {}
    for key, native in native_keys(spec).items():
        layer_name, variable_name = native.split("/")
        variables = {v.name: v for v in model.get_layer(layer_name).weights}
        spec_path, _, name = key.rpartition(".")
        value = np.array(keras_value(variables[variable_name]), dtype=np.float32)
        weights[key] = np.ascontiguousarray(_weight_to_canonical(rows[spec_path], name, value, layouts.get(spec_path)))
    return weights


def keras_value(variable):
    import keras

    return keras.ops.convert_to_numpy(variable.value)


def load_weights(model, path) -> None:
    """The emitted model's weights from its .weights.h5 file, by Keras' own loader."""
    model.load_weights(str(path))


def load_snippet(weights_name: str) -> list[str]:
    """How a user loads the emitted model and its weight file (for a converted folder's README)."""
    return ["import model", "", "net = model.build_model()", f"net.load_weights({weights_name!r})"]
