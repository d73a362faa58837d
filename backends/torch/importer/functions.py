"""Function and method calls (``call_function``, ``call_method``) to spec layers.

Each supported call has a stub with PyTorch's signature (so positional and keyword arguments bind
the way PyTorch binds them) and a handler. Calls on sizes and tuples only (``x.size(1) // 2``)
are computed; anything computed from the batch size is kept as ``Opaque`` and refused where a
layer would need it.
"""

from __future__ import annotations

import inspect
import math
import operator

from ....spec.layers import ChannelShuffle, ChannelSlice, Crop2d, Flatten
from . import layers
from .diagnostics import target_name
from .values import (BATCH, CHANNELS_LAST, EXPANDED, GROUPED, SHUFFLED, STANDARD, Opaque, Param, Pieces, Tensor)


# -- stubs: PyTorch's signatures ----------------------------------------------------------------------

def _s_unary(input, inplace=False): ...
def _s_plain(input): ...
def _s_leaky_relu(input, negative_slope=0.01, inplace=False): ...
def _s_elu(input, alpha=1.0, inplace=False): ...
def _s_gelu(input, approximate="none"): ...
def _s_hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False): ...
def _s_clamp(input, min=None, max=None): ...
def _s_softmax(input, dim=None, _stacklevel=3, dtype=None): ...
def _s_softmax_method(input, dim, dtype=None): ...
def _s_prelu(input, weight): ...
def _s_max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False): ...
def _s_avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                  divisor_override=None): ...
def _s_adaptive(input, output_size, return_indices=False): ...
def _s_reduce(input, dim=None, keepdim=False, dtype=None): ...
def _s_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1): ...
def _s_linear(input, weight, bias=None): ...
def _s_layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5): ...
def _s_batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                  eps=1e-5): ...
def _s_dropout(input, p=0.5, training=True, inplace=False): ...
def _s_stochastic_depth(input, p, mode, training=True): ...
def _s_pad(input, pad, mode="constant", value=None): ...
def _s_flatten(input, start_dim=0, end_dim=-1): ...
def _s_shape_args(input, *shape): ...
def _s_reshape(input, shape): ...
def _s_permute(input, dims): ...
def _s_transpose(input, dim0, dim1): ...
def _s_alias(input, memory_format=None): ...
def _s_size(input, dim=None): ...
def _s_chunk(input, chunks, dim=0): ...
def _s_split(input, split_size_or_sections, dim=0): ...
def _s_binary(input, other, alpha=1): ...
def _s_cat(tensors, dim=0): ...
def _s_concatenate(tensors, axis=0): ...


# -- handlers ---------------------------------------------------------------------------------------------

def _tensor(m, value, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        m.fail(f"{what} of {_describe(value)}; the importer maps operations on tensors computed from the input")
    return value


def _describe(value) -> str:
    if isinstance(value, Param):
        return f"the model's own tensor {value.qualname} (shape {value.shape})"
    if isinstance(value, Pieces):
        return f"the pieces of a {value.op} (pick one with [i])"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return type(value).__name__


def _no_inplace(a) -> None:
    """In-place flags need nothing here: ``mapping.check_inplace`` refused the unsafe ones."""


def _activation(function, **fields):
    def handler(m, a):
        x = _tensor(m, a["input"], function)
        return layers.activation(m, x, function, **{k: a[v] for k, v in fields.items()})
    return handler


def _hardtanh(m, a):
    return layers.hardtanh(m, _tensor(m, a["input"], "hardtanh"), a["min_val"], a["max_val"])


def _clamp(m, a):
    x = _tensor(m, a["input"], "clamp")
    low, high = a["min"], a["max"]
    if low in (0, 0.0) and high is None:
        return layers.activation(m, x, "relu")
    if low in (0, 0.0) and high in (6, 6.0):
        return layers.activation(m, x, "relu6")
    m.fail(f"clamp(min={low}, max={high}); the spec states clamp(min=0) as relu and clamp(0, 6) as relu6 only")


def _softmax(m, a):
    if a.get("dtype") is not None:
        m.fail(f"softmax with dtype={a['dtype']}; the spec computes in the input's dtype")
    return layers.softmax(m, _tensor(m, a["input"], "softmax"), a["dim"])


def _prelu(m, a):
    x = _tensor(m, a["input"], "prelu")
    return layers.prelu(m, x, layers.weight(m, a["weight"], "", "prelu's weight"))


def _max_pool2d(m, a):
    if a["return_indices"]:
        m.fail("return_indices=True: the spec's pools return the pooled values only")
    return layers.maxpool(m, _tensor(m, a["input"], "max pooling"), a["kernel_size"], a["stride"], a["padding"],
                          a["dilation"], a["ceil_mode"])


def _avg_pool2d(m, a):
    return layers.avgpool(m, _tensor(m, a["input"], "average pooling"), a["kernel_size"], a["stride"], a["padding"],
                          a["ceil_mode"], a["count_include_pad"], a["divisor_override"])


def _adaptive_avg(m, a):
    return layers.adaptive_avgpool(m, _tensor(m, a["input"], "adaptive average pooling"), a["output_size"])


def _adaptive_max(m, a):
    if a["return_indices"]:
        m.fail("return_indices=True: the spec's pools return the pooled values only")
    return layers.adaptive_maxpool(m, _tensor(m, a["input"], "adaptive max pooling"), a["output_size"])


def _reduce(kind):
    def handler(m, a):
        if a.get("dtype") is not None:
            m.fail(f"{kind} with dtype={a['dtype']}; the spec computes in the input's dtype")
        x = _tensor(m, a["input"], kind)
        return layers.global_pool(m, x, kind, a["dim"], a["keepdim"])
    return handler


def _conv2d(m, a):
    x = _tensor(m, a["input"], "conv2d")
    weights = {"weight": layers.weight(m, a["weight"], "", "conv2d's weight")}
    if a["bias"] is not None:
        weights["bias"] = layers.weight(m, a["bias"], "", "conv2d's bias")
    return layers.conv2d(m, x, weights, a["stride"], a["padding"], a["dilation"], a["groups"],
                         tuple(weights["weight"][0].shape[2:]))


def _linear(m, a):
    x = _tensor(m, a["input"], "linear")
    weights = {"weight": layers.weight(m, a["weight"], "", "linear's weight")}
    if a["bias"] is not None:
        weights["bias"] = layers.weight(m, a["bias"], "", "linear's bias")
    return layers.linear(m, x, weights)


def _layer_norm(m, a):
    x = _tensor(m, a["input"], "layer_norm")
    weight = None if a["weight"] is None else layers.weight(m, a["weight"], "", "layer_norm's weight")
    bias = None if a["bias"] is None else layers.weight(m, a["bias"], "", "layer_norm's bias")
    return layers.layernorm(m, x, a["normalized_shape"], weight, bias, a["eps"])


def _batch_norm(m, a):
    x = _tensor(m, a["input"], "batch_norm")
    if a["training"]:
        m.fail("batch_norm with training=True normalises with the batch's statistics even in eval mode; pass "
               "training=self.training")
    if a["momentum"] is None:
        m.fail("batch_norm with momentum=None (a cumulative average); the spec's batchnorm keeps an exponential one")
    weights = {}
    for name in ("weight", "bias", "running_mean", "running_var"):
        if a[name] is not None:
            weights[name] = layers.weight(m, a[name], "", f"batch_norm's {name}")
    if "running_mean" not in weights or "running_var" not in weights:
        m.fail("batch_norm without running statistics normalises with the batch's own; the spec's batchnorm "
               "uses running statistics in eval mode")
    return layers.batchnorm(m, x, weights, a["eps"], a["momentum"])


def _dropout(m, a):
    x = _tensor(m, a["input"], "dropout")
    if a["training"]:
        m.fail("dropout with training=True drops even in eval mode (F.dropout's default); pass training=self.training")
    return layers.dropout(m, x, a["p"])


def _channel_dropout(m, a):
    m.fail(f"{target_name(m.node.target)} drops whole channels in training, which the spec's dropout "
           "(elementwise) does not: use F.dropout")


# handlers that exist only to say why a call is refused
FUNCTION_REFUSALS = (_channel_dropout,)


def _stochastic_depth(m, a):
    x = _tensor(m, a["input"], "stochastic depth")
    if a["training"]:
        m.fail("stochastic_depth with training=True drops even in eval mode; pass training=self.training")
    return layers.drop_path(m, x, a["p"], a["mode"])


def _pad(m, a):
    x = _tensor(m, a["input"], "pad")
    if a["mode"] != "constant":
        m.fail(f"padding mode {a['mode']!r}; the spec pads with zeros (mode 'constant', value 0)")
    return layers.pad(m, x, a["pad"], a["value"])


def _flatten(m, a):
    return layers.flatten(m, _tensor(m, a["input"], "flatten"), a["start_dim"], a["end_dim"])


# -- sizes, views and layouts ---------------------------------------------------------------------------------

def _sizes(x: Tensor) -> tuple:
    return (BATCH, *x.source_shape())


def _size(m, a):
    value = a["input"]
    if isinstance(value, Param):
        return value.shape if a["dim"] is None else value.shape[a["dim"]]
    x = _tensor(m, value, "size")
    sizes = _sizes(x)
    return sizes if a["dim"] is None else sizes[int(a["dim"])]


def _dim(m, a):
    return _tensor(m, a["input"], "dim").rank


def _shape_list(m, shape) -> list:
    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        shape = shape[0]
    return list(shape)


def _view(m, a, shape=None):
    """view / reshape: flattening, the channel shuffle's grouping and ungrouping, or no change."""
    x = _tensor(m, a["input"], "view")
    shape = _shape_list(m, a["shape"] if shape is None else shape)
    for size in shape:
        if isinstance(size, Opaque) or not (size is BATCH or isinstance(size, int)):
            m.fail(f"a view to sizes {shape} that are computed from the batch size or not known; the importer "
                   "follows x.size(0) (or -1) as the batch and integers for the rest")
    if not shape or shape[0] is not BATCH and shape[0] != -1:
        m.fail(f"a view to {shape}, whose first size is not the batch (x.size(0) or -1): it would mix examples")
    rest = shape[1:]
    if BATCH in rest:
        m.fail(f"a view to {shape} that moves the batch size away from the first axis")
    numel = math.prod(x.source_shape())
    if rest.count(-1) > (1 if shape[0] is BATCH else 0):
        m.fail(f"a view to {shape} with more than one size left to infer")
    known = math.prod(s for s in rest if s != -1)
    target = tuple(numel // known if s == -1 else s for s in rest)
    if math.prod(target) != numel:
        m.fail(f"a view of per-example shape {x.source_shape()} to {target}, which changes the batch size")
    return _reshape_to(m, x, target)


def _reshape_to(m, x: Tensor, target: tuple) -> Tensor:
    if target == x.source_shape():
        return x
    if x.layout == STANDARD and len(x.shape) == 3:
        c, h, w = x.shape
        if target == (c * h * w,):
            return m.leaf(Flatten(), x, name=m.default_name("flatten"))
        if len(target) == 4 and target[2:] == (h, w) and target[0] * target[1] == c:
            return Tensor(x.node, x.shape, GROUPED, target[0])  # ShuffleNet's view before the transpose
    if x.layout in (GROUPED, SHUFFLED) and target == x.shape:
        if x.layout == GROUPED:
            return Tensor(x.node, x.shape)  # grouped and viewed back: nothing happened
        return m.leaf(ChannelShuffle(x.groups), Tensor(x.node, x.shape), name=m.default_name("channel_shuffle"))
    if x.layout == STANDARD and len(x.shape) == 1 and target == (x.shape[0], 1, 1):
        return m.unflatten(x)
    if x.layout == CHANNELS_LAST and target == (math.prod(x.shape),) and x.shape[1:] == (1, 1):
        return m.leaf(Flatten(), x, name=m.default_name("flatten"), layout=STANDARD)
    m.fail(f"a view/reshape of per-example shape {x.source_shape()} ({x.layout}) to {target}; the spec states "
           "flattening (C, H, W) to (C*H*W,) and the channel shuffle's view(N, g, C/g, H, W) -> transpose(1, 2) "
           "-> view(N, C, H, W)")


def _permute(m, a, dims=None):
    x = _tensor(m, a["input"], "permute")
    dims = _shape_list(m, a["dims"] if dims is None else dims)
    rank = x.rank
    dims = tuple(int(d) + rank if int(d) < 0 else int(d) for d in dims)
    if dims == tuple(range(rank)):
        return x
    if x.layout == STANDARD and len(x.shape) == 3 and dims == (0, 2, 3, 1):
        return Tensor(x.node, x.shape, CHANNELS_LAST)
    if x.layout == CHANNELS_LAST and dims == (0, 3, 1, 2):
        return Tensor(x.node, x.shape, STANDARD)
    m.fail(f"permute{dims} of a {rank}-D tensor in {x.layout} layout; the importer follows permute(0, 2, 3, 1) to "
           "channels-last and permute(0, 3, 1, 2) back (layer norms and Linear layers over channels in between)")


def _transpose(m, a):
    x = _tensor(m, a["input"], "transpose")
    rank = x.rank
    dims = {int(d) + rank if int(d) < 0 else int(d) for d in (a["dim0"], a["dim1"])}
    if x.layout in (GROUPED, SHUFFLED) and dims == {1, 2}:
        return Tensor(x.node, x.shape, SHUFFLED if x.layout == GROUPED else GROUPED, x.groups)
    m.fail(f"transpose{tuple(sorted(dims))} of a {rank}-D tensor in {x.layout} layout; the importer follows the "
           "channel shuffle's transpose(1, 2) of (N, g, C/g, H, W) only")


def _s_expand_as(input, other): ...


def _expand_as(m, a):
    x, other = _tensor(m, a["input"], "expand_as"), a["other"]
    return _expand(m, x, _sizes(_tensor(m, other, "expand_as")))


def _expand(m, x: Tensor, sizes) -> Tensor:
    """A (C, 1, 1) gate expanded over (C, H, W), for add or mul with it (squeeze-and-excitation)."""
    sizes = _shape_list(m, sizes)
    if len(sizes) == x.rank and (sizes[0] is BATCH or sizes[0] == -1):
        target = tuple(s if s != -1 else d for s, d in zip(sizes[1:], x.shape))
        if x.layout == STANDARD and len(x.shape) == 3 and x.shape[1:] == (1, 1) and target[0] == x.shape[0]:
            if target[1:] == (1, 1):
                return x
            return Tensor(x.node, x.shape, EXPANDED, expanded_to=tuple(int(s) for s in target[1:]))
        if target == x.shape:
            return x
    m.fail(f"expand of per-example shape {x.shape} to {sizes}; the importer follows a (C, 1, 1) gate expanded over "
           "(C, H, W) for an add or mul (the spec broadcasts it)")


def _alias(m, a):
    return _tensor(m, a["input"], m.node.target if isinstance(m.node.target, str) else "contiguous")


def _pieces(m, x: Tensor, sizes: list[int], op: str) -> Pieces:
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return Pieces(x, tuple(bounds), op)


def _channel_split_input(m, a, what):
    x = _tensor(m, a["input"], what)
    layers.require(m, x, what)
    if not layers.channel_dim(x, a["dim"]):
        m.fail(f"{what} on dim {a['dim']} of a {x.rank}-D tensor; the spec splits on the channels (dim=1)")
    return x


def _chunk(m, a):
    x = _channel_split_input(m, a, "chunk")
    channels, chunks = x.shape[0], int(a["chunks"])
    size = -(-channels // chunks)
    sizes = [min(size, channels - start) for start in range(0, channels, size)]
    return _pieces(m, x, sizes, "chunk")


def _split(m, a):
    x = _channel_split_input(m, a, "split")
    channels, sections = x.shape[0], a["split_size_or_sections"]
    if isinstance(sections, int):
        sizes = [min(sections, channels - start) for start in range(0, channels, sections)]
    else:
        sizes = [int(s) for s in sections]
        if sum(sizes) != channels:
            m.fail(f"split into {sizes}, which does not add up to the {channels} channels")
    return _pieces(m, x, sizes, "split")


def _getitem(m, a):
    container, index = a["input"], a["index"]
    if isinstance(container, Pieces):
        i = int(index)
        start, stop = container.bounds[i]
        x = container.source
        if (start, stop) == (0, x.shape[0]):
            return x
        return m.leaf(ChannelSlice(start, stop), x, name=m.default_name(f"{container.op}[{i % len(container.bounds)}]"))
    if isinstance(container, Tensor):
        return _slice_tensor(m, container, index)
    return _compute(m, operator.getitem, (container, index))


def _slice_tensor(m, x: Tensor, index) -> Tensor:
    """``x[:, a:b]``: a channel slice; ``x[:, :, a:b, c:d]``: a crop of H and W (bounds resolved
    against the traced shape, as PyTorch resolves them). One Ellipsis and trailing full slices allowed."""
    index = index if isinstance(index, tuple) else (index,)
    full = slice(None)
    parts = list(index)
    ellipses = [i for i, part in enumerate(parts) if part is Ellipsis]
    if len(ellipses) == 1:  # x[..., a:b, c:d]: as many full slices as the rank leaves
        i = ellipses[0]
        parts[i:i + 1] = [full] * max(len(x.shape) + 1 - (len(parts) - 1), 0)
    while parts and (parts[-1] == full or parts[-1] is Ellipsis):
        parts.pop()
    if x.layout == STANDARD and len(parts) == 2 and parts[0] == full and isinstance(parts[1], slice) \
            and parts[1].step in (None, 1):
        start, stop, _ = parts[1].indices(x.shape[0])
        if (start, stop) == (0, x.shape[0]):
            return x
        if stop > start:
            return m.leaf(ChannelSlice(start, stop), x, name=m.default_name("slice"))
    if x.layout == STANDARD and len(x.shape) == 3 and len(parts) in (3, 4) and parts[:2] == [full, full] \
            and all(_static_unit_slice(part) for part in parts[2:]):
        return _crop(m, x, [part.indices(size) for part, size in zip(parts[2:], x.shape[1:])])
    if not parts:
        return x
    m.fail(f"indexing with {index!r}; the spec states x[:, a:b] (a slice of the channels) and x[:, :, a:b, c:d] "
           "(a crop of H and W) only")


def _static_unit_slice(part) -> bool:
    return isinstance(part, slice) and part.step in (None, 1) and all(
        bound is None or isinstance(bound, int) and not isinstance(bound, bool) for bound in (part.start, part.stop))


def _crop(m, x: Tensor, bounds) -> Tensor:
    """Rows and columns ``bounds`` ((start, stop, 1) of H, then of W if given) as a crop2d."""
    _, height, width = x.shape
    (top, row_stop, _), (left, column_stop, _) = (*bounds, (0, width, 1))[:2]
    if row_stop <= top or column_stop <= left:
        m.fail(f"rows {top}:{row_stop} and columns {left}:{column_stop} of a {height}x{width} map leave nothing")
    crop = (top, height - row_stop, left, width - column_stop)
    if not any(crop):
        return x
    sides = (top, left) if crop == (top, top, left, left) else crop
    return m.leaf(Crop2d(sides), x, name=m.default_name("crop"))


# -- merges ---------------------------------------------------------------------------------------------------

def _binary(kind):
    def handler(m, a):
        left, right = a["input"], a["other"]
        if not isinstance(left, Tensor) and not isinstance(right, Tensor):
            return _compute(m, {"add": operator.add, "mul": operator.mul}[kind], (left, right))
        if a.get("alpha", 1) != 1:
            m.fail(f"add with alpha={a['alpha']}; the spec adds branch outputs as they are")
        if isinstance(left, Tensor) and isinstance(right, Tensor):
            return m.merge(kind, [left, right])
        x, other = (left, right) if isinstance(left, Tensor) else (right, left)
        if kind == "mul" and isinstance(other, Param):
            return _scale_by_parameter(m, x, other)
        m.fail(f"{kind} of a tensor and {_describe(other)}; the spec {'adds' if kind == 'add' else 'multiplies'} "
               "tensors computed from the input (branches), and multiplies by a learned per-channel parameter "
               "(layer scale)")
    return handler


def _scale_by_parameter(m, x: Tensor, param: Param) -> Tensor:
    """ConvNeXt's layer scale: a learned (C, 1, 1) parameter times an (N, C, H, W) tensor, a (C,)
    one times channels-last pixels, or an (F,) one times flat features."""
    c = x.shape[0]
    if x.layout == CHANNELS_LAST:
        shapes = {(c,), (1, 1, c), (1, 1, 1, c)}
        wanted = f"({c},)"
    elif len(x.shape) == 3:
        shapes = {(c, 1, 1), (1, c, 1, 1)}
        wanted = f"({c}, 1, 1)"
    else:
        shapes = {(c,), (1, c)}
        wanted = f"({c},)"
    if param.shape not in shapes:
        m.fail(f"multiplication by the model's tensor {param.qualname} of shape {param.shape}; the spec multiplies by "
               f"a learned per-channel scale, here of shape {wanted}")
    if not param.trainable:
        m.fail(f"multiplication by {param.qualname}, a buffer (a constant); the spec's channel_scale is a learned "
               "weight, so a constant would become trainable")
    return layers.channel_scale(m, x, (param.tensor, param.qualname))


def _cat(m, a, key="tensors", dim_key="dim"):
    tensors = a[key]
    if not isinstance(tensors, (list, tuple)) or not tensors:
        m.fail("cat of no tensors")
    for t in tensors:
        _tensor(m, t, "cat")
    if not all(layers.channel_dim(t, a[dim_key]) for t in tensors):
        m.fail(f"cat on dim {a[dim_key]}; the spec concatenates on the channels (dim 1) or features")
    if len(tensors) == 1:
        return tensors[0]
    return m.merge("concat", list(tensors))


# -- plain Python values ----------------------------------------------------------------------------------------

PURE = {operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv, operator.mod, operator.neg,
        operator.getitem, getattr, operator.pow, operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
        operator.ge, operator.not_, operator.and_, operator.or_}


def _compute(m, function, args):
    flat = []

    def walk(v):
        if isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        else:
            flat.append(v)
    walk(args)
    if any(isinstance(v, (Tensor, Param, Pieces)) for v in flat):
        m.fail(f"{target_name(function)} on {', '.join(_describe(v) for v in flat)}; not an operation the spec "
               "states")
    if any(v is BATCH or isinstance(v, Opaque) for v in flat):
        if function is operator.getitem and args[0] is not BATCH and not isinstance(args[0], Opaque):
            return args[0][args[1]]
        return Opaque(f"{target_name(function)} of the batch size")
    return function(*args)


def _getattr(m, a):
    value, name = a["input"], a["other"]
    if isinstance(value, Tensor):
        if name == "shape":
            return _sizes(value)
        if name == "ndim":
            return value.rank
        m.fail(f"the tensor attribute {name!r}; the importer reads .shape and .ndim only")
    if isinstance(value, Param):
        return getattr(value.tensor, name)
    return _compute(m, getattr, (value, name))


def _s_assert(condition, message): ...


def _assert(m, a):
    """``torch._assert(h == self.image_size, ...)``: a check on sizes the importer knows; one that
    involves the batch size (Opaque) guards nothing the spec computes."""
    condition = a["condition"]
    if isinstance(condition, Opaque) or condition is BATCH:
        return None
    if isinstance(condition, (Tensor, Param, Pieces)):
        m.fail("an assertion on tensor values, which depends on the data; the spec has no assertions")
    if not condition:
        m.fail(f"the model's assertion fails on this input: {a['message']}")
    return None


def _bind(stub, args, kwargs, m) -> dict:
    try:
        bound = inspect.signature(stub).bind(*args, **kwargs)
    except TypeError as error:
        m.fail(f"arguments the importer does not recognise for this call: {error}")
    bound.apply_defaults()
    result = dict(bound.arguments)
    if "shape" in result and isinstance(result["shape"], tuple) and stub is _s_shape_args:
        result["shape"] = list(result["shape"])
    return result


def _function_table():
    import torch
    import torch.nn.functional as F

    table = {
        F.relu: (_s_unary, _activation("relu")), torch.relu: (_s_plain, _activation("relu")),
        torch.relu_: (_s_plain, _activation("relu")), F.relu_: (_s_plain, _activation("relu")),
        F.relu6: (_s_unary, _activation("relu6")),
        F.leaky_relu: (_s_leaky_relu, _activation("leaky_relu", negative_slope="negative_slope")),
        F.elu: (_s_elu, _activation("elu", alpha="alpha")),
        F.silu: (_s_unary, _activation("silu")), F.hardswish: (_s_unary, _activation("hardswish")),
        F.hardsigmoid: (_s_unary, _activation("hardsigmoid")),
        F.gelu: (_s_gelu, _activation("gelu", approximate="approximate")),
        torch.sigmoid: (_s_plain, _activation("sigmoid")), F.sigmoid: (_s_plain, _activation("sigmoid")),
        torch.tanh: (_s_plain, _activation("tanh")), F.tanh: (_s_plain, _activation("tanh")),
        F.hardtanh: (_s_hardtanh, _hardtanh), torch.clamp: (_s_clamp, _clamp), torch.clip: (_s_clamp, _clamp),
        F.softmax: (_s_softmax, _softmax), torch.softmax: (_s_softmax_method, _softmax),
        F.prelu: (_s_prelu, _prelu),
        F.max_pool2d: (_s_max_pool2d, _max_pool2d), torch.max_pool2d: (_s_max_pool2d, _max_pool2d),
        F.avg_pool2d: (_s_avg_pool2d, _avg_pool2d),
        F.adaptive_avg_pool2d: (_s_adaptive, _adaptive_avg), F.adaptive_max_pool2d: (_s_adaptive, _adaptive_max),
        torch.mean: (_s_reduce, _reduce("mean")), torch.amax: (_s_reduce, _reduce("max")),
        F.conv2d: (_s_conv2d, _conv2d), torch.conv2d: (_s_conv2d, _conv2d), F.linear: (_s_linear, _linear),
        F.layer_norm: (_s_layer_norm, _layer_norm), F.batch_norm: (_s_batch_norm, _batch_norm),
        F.dropout: (_s_dropout, _dropout), F.dropout1d: (_s_dropout, _channel_dropout),
        F.dropout2d: (_s_dropout, _channel_dropout), F.alpha_dropout: (_s_dropout, _channel_dropout),
        F.pad: (_s_pad, _pad),
        torch.flatten: (_s_flatten, _flatten), torch.reshape: (_s_reshape, _view),
        torch.permute: (_s_permute, _permute), torch.transpose: (_s_transpose, _transpose),
        torch.swapaxes: (_s_transpose, _transpose),
        torch.chunk: (_s_chunk, _chunk), torch.split: (_s_split, _split),
        operator.add: (_s_binary, _binary("add")), operator.iadd: (_s_binary, _binary("add")),
        torch.add: (_s_binary, _binary("add")),
        operator.mul: (_s_binary, _binary("mul")), operator.imul: (_s_binary, _binary("mul")),
        torch.mul: (_s_binary, _binary("mul")),
        torch.cat: (_s_cat, _cat), torch.concat: (_s_cat, _cat),
        torch.concatenate: (_s_concatenate, lambda m, a: _cat(m, a, "tensors", "axis")),
        operator.getitem: (_s_binary_index, _getitem), getattr: (_s_getattr, _getattr),
        torch._assert: (_s_assert, _assert),
    }
    depth = __import__("sys").modules.get("torchvision.ops.stochastic_depth")
    if depth is not None:
        table[depth.stochastic_depth] = (_s_stochastic_depth, _stochastic_depth)
    return table


def _s_binary_index(input, index): ...
def _s_getattr(input, other): ...


METHODS = {
    "relu": (_s_plain, _activation("relu")), "relu_": (_s_plain, _activation("relu")),
    "sigmoid": (_s_plain, _activation("sigmoid")), "sigmoid_": (_s_plain, _activation("sigmoid")),
    "tanh": (_s_plain, _activation("tanh")), "tanh_": (_s_plain, _activation("tanh")),
    "clamp": (_s_clamp, _clamp), "clip": (_s_clamp, _clamp),
    "softmax": (_s_softmax_method, _softmax),
    "mean": (_s_reduce, _reduce("mean")), "amax": (_s_reduce, _reduce("max")),
    "flatten": (_s_flatten, _flatten),
    "view": (_s_shape_args, _view), "reshape": (_s_shape_args, _view),
    "permute": (_s_shape_args, lambda m, a: _permute(m, a, a["shape"])),
    "transpose": (_s_transpose, _transpose), "swapaxes": (_s_transpose, _transpose),
    "contiguous": (_s_alias, _alias), "clone": (_s_alias, _alias),
    "expand_as": (_s_expand_as, _expand_as), "expand": (_s_shape_args, lambda m, a: _expand(m, a["input"], a["shape"])),
    "size": (_s_size, _size), "dim": (_s_plain, _dim),
    "chunk": (_s_chunk, _chunk), "split": (_s_split, _split),
    "add": (_s_binary, _binary("add")), "add_": (_s_binary, _binary("add")),
    "mul": (_s_binary, _binary("mul")), "mul_": (_s_binary, _binary("mul")),
}

_FUNCTIONS = None


def function_table() -> dict:
    global _FUNCTIONS
    if _FUNCTIONS is None:
        _FUNCTIONS = _function_table()
    return _FUNCTIONS


def supported_calls() -> str:
    functions = sorted({target_name(f) for f in function_table()})
    return "functions " + ", ".join(functions) + "; tensor methods " + ", ".join(sorted(METHODS))


def map_call(m, node):
    args, kwargs = m.value(node.args), m.value(node.kwargs)
    if node.op == "call_method":
        entry = METHODS.get(node.target)
        if entry is None:
            m.fail(f"the tensor method {node.target!r} is not an operation the importer maps; it maps "
                   + supported_calls())
    else:
        try:
            entry = function_table().get(node.target)
        except TypeError:  # an unhashable target
            entry = None
        if entry is None:
            if node.target in PURE:
                return _compute(m, node.target, args)
            if getattr(node.target, "__module__", "") == "math" and not kwargs:
                return _compute(m, node.target, args)  # math.sqrt(channels) and the like
            m.fail(f"{target_name(node.target)} is not an operation the importer maps; it maps " + supported_calls())
    stub, handler = entry
    return handler(m, _bind(stub, args, kwargs, m))


def _flat(args, kwargs):
    out = []
    for v in list(args) + list(kwargs.values()):
        if isinstance(v, (list, tuple)):
            out.extend(v)
        else:
            out.append(v)
    return out
