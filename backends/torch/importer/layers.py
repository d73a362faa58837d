"""The spec layer of each PyTorch operation, shared by its module and functional forms.

Every function takes the mapper ``m`` (``m.leaf`` emits a layer, ``m.fail`` refuses naming the
node), the input ``Tensor`` and PyTorch's own arguments, checks what the spec can state exactly
on that input (its layout, its rank) and returns the output ``Tensor``.
"""

from __future__ import annotations

from ....spec.layers import (Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, ChannelScale, Conv2d, Crop2d,
                            Dense, DropPath, Dropout, Flatten, GlobalAvgPool, GlobalMaxPool, LayerNorm, MaxPool2d,
                            Pad2d, PReLU)
from .values import CHANNELS_LAST, EXPANDED, STANDARD, Param, Tensor


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return int(value[0]), int(value[0])
        return int(value[0]), int(value[1])
    return int(value), int(value)


def require(m, x: Tensor, what: str, image: bool = False, layouts=(STANDARD,)) -> None:
    """Refuse ``x`` unless it is in one of ``layouts`` (and an image, when ``image``)."""
    if not isinstance(x, Tensor):
        m.fail(f"{what} of something that is not a tensor computed from the input")
    if x.layout not in layouts:
        where = {CHANNELS_LAST: "channels-last (after permute(0, 2, 3, 1))",
                 EXPANDED: "expanded (expand_as: the spec broadcasts a gate in add and mul only)"}.get(
            x.layout, f"the {x.layout} layout of a channel shuffle")
        m.fail(f"{what} of a tensor in {where} layout; here the spec states it only for "
               + " or ".join("(N, C, H, W) / (N, F)" if layout == STANDARD else "channels-last (N, H, W, C)"
                             for layout in layouts))
    if image and len(x.shape) != 3:
        m.fail(f"{what} of a {x.rank}-D tensor; the spec states it for (N, C, H, W) images")


def channel_dim(x: Tensor, dim) -> bool:
    """Whether ``dim`` of the source tensor is the spec's channel (or feature) axis."""
    rank = x.rank
    dim = int(dim) + rank if int(dim) < 0 else int(dim)
    return dim == (rank - 1 if x.layout == CHANNELS_LAST else 1)


def weight(m, tensor, qualname: str, what: str):
    """(tensor, qualified name) of a parameter passed to a functional call."""
    if isinstance(tensor, Param):
        return tensor.tensor, tensor.qualname
    m.fail(f"{what} must be a parameter of the model (read with get_attr), got {type(tensor).__name__}")


# -- convolutions and dense layers ---------------------------------------------------------------

def conv_padding(m, padding, kernel, dilation):
    """PyTorch's padding (int, pair, 'valid', 'same') as the spec's pair or (top, bottom, left, right).
    'same' pads d * (k - 1) in all, the odd one after (PyTorch's convention)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding != "same":
            m.fail(f"padding={padding!r}; PyTorch knows 'valid' and 'same'")
        sides = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            sides.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = sides
        return (top, left) if top == bottom and left == right else (top, bottom, left, right)
    if isinstance(padding, (list, tuple)) and len(padding) == 4:
        return tuple(int(p) for p in padding)
    return _pair(padding)


def conv2d(m, x, weights, stride, padding, dilation, groups, kernel) -> Tensor:
    require(m, x, "a 2-D convolution", image=True)
    kernel = _pair(kernel)
    dilation = _pair(dilation)
    out_channels = int(weights["weight"][0].shape[0])
    layer = Conv2d(out_channels, kernel, _pair(stride), conv_padding(m, padding, kernel, dilation),
                   bias="bias" in weights, groups=int(groups), dilation=dilation)
    return m.leaf(layer, x, weights)


def linear(m, x, weights) -> Tensor:
    """A Linear on flat features is a dense layer; on channels-last pixels it is a 1x1 convolution
    (ConvNeXt's permute -> Linear -> permute), the (out, in) weight becoming (out, in, 1, 1)."""
    require(m, x, "a Linear layer", layouts=(STANDARD, CHANNELS_LAST))
    out_features = int(weights["weight"][0].shape[0])
    bias = "bias" in weights
    if x.layout == CHANNELS_LAST:
        return m.leaf(Conv2d(out_features, 1, bias=bias), x, weights)
    if len(x.shape) != 1:
        m.fail(f"a Linear layer on the last axis of a {x.rank}-D tensor, which mixes positions along W; the spec's "
               "dense layer takes flat (N, F) features (flatten first), and a Linear over the channels of each "
               "pixel is stated as permute(0, 2, 3, 1) -> Linear -> permute(0, 3, 1, 2)")
    return m.leaf(Dense(out_features, bias=bias), x, weights)


# -- normalisation ------------------------------------------------------------------------------------

def batchnorm(m, x, weights, eps, momentum) -> Tensor:
    require(m, x, "a batch norm")
    layer = BatchNorm(eps=float(eps), momentum=float(momentum), scale="weight" in weights, center="bias" in weights)
    return m.leaf(layer, x, weights)


def layernorm(m, x, normalized_shape, weight_, bias_, eps) -> Tensor:
    """Over the channels of each pixel (channels-last input) or over flat features."""
    require(m, x, "a layer norm", layouts=(STANDARD, CHANNELS_LAST))
    last = x.source_shape()[-1]
    if tuple(int(s) for s in normalized_shape) != (last,):
        m.fail(f"a layer norm over the last {len(normalized_shape)} axes {tuple(normalized_shape)} of a tensor of "
               f"per-example shape {x.source_shape()}; the spec's layernorm normalises over the channels of each "
               "pixel (permute to channels-last first) or over flat features")
    if x.layout == STANDARD and len(x.shape) != 1:
        m.fail("a layer norm over the W axis of an (N, C, H, W) tensor; the spec's layernorm normalises over the "
               "channels of each pixel: permute(0, 2, 3, 1) first, as ConvNeXt does")
    if weight_ is None or bias_ is None:
        m.fail("a layer norm without a learned weight and bias (elementwise_affine=False or bias=False); the spec's "
               "layernorm has both")
    return m.leaf(LayerNorm(eps=float(eps)), x, {"weight": weight_, "bias": bias_})


# -- activations ------------------------------------------------------------------------------------

def activation(m, x, function: str, **fields) -> Tensor:
    require(m, x, function, layouts=(STANDARD, CHANNELS_LAST))
    fields = {k: (float(v) if k != "approximate" else v) for k, v in fields.items()}
    return m.leaf(Activation(function, **fields), x)


def hardtanh(m, x, low, high) -> Tensor:
    if (float(low), float(high)) != (0.0, 6.0):
        m.fail(f"hardtanh({low}, {high}); the spec has relu6 = hardtanh(0, 6) only")
    return activation(m, x, "relu6")


def softmax(m, x, dim) -> Tensor:
    require(m, x, "softmax", layouts=(STANDARD, CHANNELS_LAST))
    if dim is None and x.layout == STANDARD and x.rank in (2, 4):
        dim = 1  # PyTorch's implicit choice for these ranks
    if dim is None or not channel_dim(x, dim):
        m.fail(f"softmax over dim={dim} of a {x.rank}-D tensor; the spec's softmax runs over the channels of each "
               "pixel (dim=1) or the features (dim=1 / -1 of (N, F))")
    return m.leaf(Activation("softmax"), x)


def prelu(m, x, weight_) -> Tensor:
    require(m, x, "PReLU")
    tensor, qualname = weight_
    channels = x.shape[0]
    if tensor.numel() != channels:
        m.fail(f"PReLU with {tensor.numel()} slope(s) on {channels} channels; the spec's prelu learns one slope per "
               "channel (nn.PReLU(num_parameters=C)). A single shared slope is refused rather than copied C times: "
               "the copies would train apart and count C parameters where the model has one")
    return m.leaf(PReLU(), x, {"weight": weight_})


def channel_scale(m, x, weight_) -> Tensor:
    require(m, x, "a per-channel scale", layouts=(STANDARD, CHANNELS_LAST))
    return m.leaf(ChannelScale(), x, {"weight": weight_})


# -- pooling ----------------------------------------------------------------------------------------

def maxpool(m, x, kernel, stride, padding, dilation, ceil_mode) -> Tensor:
    require(m, x, "max pooling", image=True)
    if _pair(dilation) != (1, 1):
        m.fail(f"max pooling with dilation={dilation}; the spec's pools are not dilated")
    stride = kernel if stride is None or stride == [] or stride == () else stride
    return m.leaf(MaxPool2d(_pair(kernel), _pair(stride), _pair(padding), bool(ceil_mode)), x)


def avgpool(m, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override) -> Tensor:
    require(m, x, "average pooling", image=True)
    if divisor_override is not None:
        m.fail(f"average pooling with divisor_override={divisor_override}; the spec divides by the window")
    stride = kernel if stride is None or stride == [] or stride == () else stride
    return m.leaf(AvgPool2d(_pair(kernel), _pair(stride), _pair(padding), bool(ceil_mode),
                            count_include_pad=bool(count_include_pad)), x)


def _output_size(m, x, output_size) -> tuple[int, int]:
    if not isinstance(output_size, (list, tuple)):
        output_size = (output_size, output_size)
    if len(output_size) == 1:
        output_size = (output_size[0], output_size[0])
    return tuple(int(x.shape[1 + i]) if s is None else int(s) for i, s in enumerate(output_size))


def adaptive_avgpool(m, x, output_size) -> Tensor:
    """To 1x1 it is the spec's global average pool keeping (C, 1, 1); other sizes are the spec's
    adaptive average pool."""
    require(m, x, "adaptive average pooling", image=True)
    size = _output_size(m, x, output_size)
    if size == (1, 1):
        return m.leaf(GlobalAvgPool(keepdims=True), x)
    return m.leaf(AdaptiveAvgPool2d(size), x)


def adaptive_maxpool(m, x, output_size) -> Tensor:
    require(m, x, "adaptive max pooling", image=True)
    size = _output_size(m, x, output_size)
    if size != (1, 1):
        m.fail(f"adaptive max pooling to {size}; the spec has the global one (output size 1) only")
    return m.leaf(GlobalMaxPool(keepdims=True), x)


def global_pool(m, x, kind: str, dims, keepdim: bool) -> Tensor:
    """``x.mean((2, 3))`` and friends: a global pool over H and W (channels-last: dims 1 and 2)."""
    require(m, x, f"{kind} over dims {dims}", layouts=(STANDARD, CHANNELS_LAST))
    if dims is None or isinstance(dims, int):
        dims = () if dims is None else (dims,)
    dims = {int(d) + x.rank if int(d) < 0 else int(d) for d in dims}
    spatial = {1, 2} if x.layout == CHANNELS_LAST else {2, 3}
    if len(x.shape) != 3 or dims != spatial:
        m.fail(f"{kind} over dims {sorted(dims)} of a {x.rank}-D tensor; the spec states a {kind} over the spatial "
               f"axes only (dims {sorted(spatial)})")
    pool = GlobalAvgPool if kind == "mean" else GlobalMaxPool
    layout = x.layout if keepdim else STANDARD
    return m.leaf(pool(keepdims=bool(keepdim)), x, layout=layout)


# -- shapes ---------------------------------------------------------------------------------------------

def flatten(m, x, start_dim, end_dim) -> Tensor:
    """flatten(1) of (N, C, H, W) in PyTorch's (C, H, W) order; of (N, F) it changes nothing, still
    a layer since the model states it."""
    require(m, x, "flatten", layouts=(STANDARD, CHANNELS_LAST))
    rank = x.rank
    start = int(start_dim) + rank if int(start_dim) < 0 else int(start_dim)
    end = int(end_dim) + rank if int(end_dim) < 0 else int(end_dim)
    if start != 1 or end != rank - 1:
        m.fail(f"flatten(start_dim={start_dim}, end_dim={end_dim}) of a {rank}-D tensor; the spec flattens "
               "everything but the batch (start_dim=1, end_dim=-1)")
    if x.layout == CHANNELS_LAST and x.shape[1:] != (1, 1):
        m.fail("flatten of a channels-last tensor, whose (H, W, C) order is not the spec's (C, H, W): permute it "
               "back first")
    return m.leaf(Flatten(), x, layout=STANDARD)


def pad(m, x, padding, value) -> Tensor:
    """Zero padding of H and W; PyTorch lists the last axis first: (left, right, top, bottom). A
    negative side crops (F.pad's, nn.ZeroPad2d's), a crop2d."""
    require(m, x, "padding", image=True)
    padding = tuple(int(p) for p in padding)
    if value not in (None, 0, 0.0):
        m.fail(f"constant padding with value {value}; the spec pads with zeros")
    if len(padding) == 2:
        padding = (*padding, 0, 0)
    if len(padding) != 4:
        m.fail(f"padding {padding} of more than H and W; the spec pads H and W only")
    left, right, top, bottom = padding
    grow = tuple(max(p, 0) for p in (top, bottom, left, right))
    cut = tuple(max(-p, 0) for p in (top, bottom, left, right))  # negative padding crops that side
    if not any(cut):
        return m.leaf(Pad2d(_sides(grow)), x)
    if any(grow):  # each side either grows or shrinks: padding first, then cropping, is the same
        x = m.leaf(Pad2d(_sides(grow)), x)
        return m.leaf(Crop2d(_sides(cut)), x, name=m.default_name() + "/crop")
    return m.leaf(Crop2d(_sides(cut)), x)


def _sides(sides):
    """(top, bottom, left, right) as the symmetric pair where it is one."""
    top, bottom, left, right = sides
    return (top, left) if (top, left) == (bottom, right) else sides


# -- identity in eval -------------------------------------------------------------------------------

def dropout(m, x, p) -> Tensor:
    require(m, x, "dropout", layouts=(STANDARD, CHANNELS_LAST))
    return m.leaf(Dropout(float(p)), x)


def drop_path(m, x, p, mode) -> Tensor:
    require(m, x, "stochastic depth", layouts=(STANDARD, CHANNELS_LAST))
    if mode != "row":
        m.fail(f"stochastic depth in mode {mode!r}, which drops the whole batch at once; the spec's drop_path "
               "drops each example on its own (mode 'row')")
    return m.leaf(DropPath(float(p)), x)
