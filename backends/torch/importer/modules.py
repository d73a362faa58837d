"""Module calls (``call_module``) to spec layers, one mapper per exact class.

Each mapper checks every setting that changes the function (a padding mode, ``return_indices``,
a batch norm without running statistics) and refuses what the spec cannot state exactly; the
checks that depend on the tensor (its layout, its rank) live in ``layers`` and are shared with
the functional forms.
"""

from __future__ import annotations

import sys

from . import layers
from .values import Tensor


def _conv2d(m, node, module, x):
    if module.padding_mode != "zeros":
        m.fail(f"padding_mode={module.padding_mode!r}; the spec's convolutions pad with zeros only "
               "(padding_mode='zeros')")
    weights = {"weight": (module.weight, f"{node.target}.weight")}
    if module.bias is not None:
        weights["bias"] = (module.bias, f"{node.target}.bias")
    return layers.conv2d(m, x, weights, module.stride, module.padding, module.dilation, module.groups,
                         tuple(module.weight.shape[2:]))


def _padded_conv2d(m, node, module, x):
    """netparity's own PaddedConv2d (torch backend): a conv after per-side zero padding."""
    left, right, top, bottom = module.pads
    weights = {"weight": (module.weight, f"{node.target}.weight")}
    if module.bias is not None:
        weights["bias"] = (module.bias, f"{node.target}.bias")
    return layers.conv2d(m, x, weights, module.stride, (top, bottom, left, right), module.dilation, module.groups,
                         tuple(module.weight.shape[2:]))


def _batchnorm(rank):
    def mapper(m, node, module, x):
        if not module.track_running_stats or module.running_mean is None:
            m.fail("track_running_stats=False: this BatchNorm normalises with the batch's own statistics even in "
                   "eval mode, which the spec's batchnorm (running statistics in eval) does not")
        if module.momentum is None:
            m.fail("momentum=None (a cumulative average of the running statistics); the spec's batchnorm keeps an "
                   "exponential average: give the BatchNorm a momentum")
        if x.rank != rank:
            m.fail(f"{type(module).__name__} on a {x.rank}-D tensor; the spec's batchnorm takes (N, C, H, W) "
                   "(BatchNorm2d) or (N, F) (BatchNorm1d)")
        weights = {}
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(module, name) is not None:
                weights[name] = (getattr(module, name), f"{node.target}.{name}")
        return layers.batchnorm(m, x, weights, module.eps, module.momentum)
    return mapper


def _linear(m, node, module, x):
    weights = {"weight": (module.weight, f"{node.target}.weight")}
    if module.bias is not None:
        weights["bias"] = (module.bias, f"{node.target}.bias")
    return layers.linear(m, x, weights)


def _layernorm(m, node, module, x):
    weight = None if module.weight is None else (module.weight, f"{node.target}.weight")
    bias = None if module.bias is None else (module.bias, f"{node.target}.bias")
    return layers.layernorm(m, x, tuple(module.normalized_shape), weight, bias, module.eps)


def _activation(function, **fields):
    def mapper(m, node, module, x):
        return layers.activation(m, x, function, **{k: getattr(module, attr) for k, attr in fields.items()})
    return mapper


def _hardtanh(m, node, module, x):
    return layers.hardtanh(m, x, module.min_val, module.max_val)


def _softmax(m, node, module, x):
    return layers.softmax(m, x, module.dim)


def _prelu(m, node, module, x):
    return layers.prelu(m, x, (module.weight, f"{node.target}.weight"))


def _maxpool(m, node, module, x):
    if module.return_indices:
        m.fail("return_indices=True: the spec's pools return the pooled values only")
    return layers.maxpool(m, x, module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode)


def _avgpool(m, node, module, x):
    return layers.avgpool(m, x, module.kernel_size, module.stride, module.padding, module.ceil_mode,
                          module.count_include_pad, module.divisor_override)


def _adaptive_avgpool(m, node, module, x):
    return layers.adaptive_avgpool(m, x, module.output_size)


def _adaptive_maxpool(m, node, module, x):
    if module.return_indices:
        m.fail("return_indices=True: the spec's pools return the pooled values only")
    return layers.adaptive_maxpool(m, x, module.output_size)


def _flatten(m, node, module, x):
    return layers.flatten(m, x, module.start_dim, module.end_dim)


def _dropout(m, node, module, x):
    return layers.dropout(m, x, module.p)


def _channel_dropout(m, node, module, x):
    m.fail(f"{type(module).__name__} is the identity in eval mode but in training drops whole channels (or keeps "
           "the self-normalising statistics), which the spec's dropout (elementwise) does not: use nn.Dropout")


def _stochastic_depth(m, node, module, x):
    return layers.drop_path(m, x, module.p, module.mode)


def _netparity_drop_path(m, node, module, x):
    return layers.drop_path(m, x, module.p, "row")


def _masked_dropout(m, node, module, x):
    m.fail("a dropout that takes its masks from outside (a netparity model built with lockstep_dropout=True): "
           "import the model built without lockstep_dropout")


def _zero_pad(m, node, module, x):
    return layers.pad(m, x, tuple(module.padding), 0.0)


def _constant_pad(m, node, module, x):
    return layers.pad(m, x, tuple(module.padding), module.value)


def _identity(m, node, module, x):
    from ....spec.layers import Identity
    return m.leaf(Identity(), x)


def _channel_shuffle(m, node, module, x):
    from ....spec.layers import ChannelShuffle
    layers.require(m, x, "channel shuffle", image=True)
    return m.leaf(ChannelShuffle(int(module.groups)), x)


def _channel_scale(m, node, module, x):
    """netparity's own ChannelScale (torch backend): x * weight[c]."""
    return layers.channel_scale(m, x, (module.weight, f"{node.target}.weight"))


def _normalize(m, node, module, x):
    """netparity's own Normalize (torch backend): fixed (x - mean[c]) / std[c]."""
    from ....spec.layers import Normalize
    layers.require(m, x, "normalize")
    mean = tuple(float(v) for v in module.mean.flatten())
    std = tuple(float(v) for v in module.std.flatten())
    return m.leaf(Normalize(mean=mean, std=std), x)


def _frozen_batchnorm(m, node, module, x):
    m.fail("torchvision's FrozenBatchNorm2d keeps its statistics and affine terms as constants; the spec's batchnorm "
           "is the same function in eval mode but trains gamma and beta and updates its statistics in training: "
           "replace it with nn.BatchNorm2d (with the same buffers) to import the model")


# mappers that exist only to say why a module is refused
REFUSALS = (_channel_dropout, _masked_dropout, _frozen_batchnorm)


def _torch_mappers() -> dict:
    import torch.nn as nn

    return {
        nn.Conv2d: _conv2d,
        nn.BatchNorm1d: _batchnorm(2),
        nn.BatchNorm2d: _batchnorm(4),
        nn.Linear: _linear,
        nn.LayerNorm: _layernorm,
        nn.ReLU: _activation("relu"),
        nn.ReLU6: _activation("relu6"),
        nn.Hardtanh: _hardtanh,
        nn.LeakyReLU: _activation("leaky_relu", negative_slope="negative_slope"),
        nn.ELU: _activation("elu", alpha="alpha"),
        nn.SiLU: _activation("silu"),
        nn.Hardswish: _activation("hardswish"),
        nn.Hardsigmoid: _activation("hardsigmoid"),
        nn.GELU: _activation("gelu", approximate="approximate"),
        nn.Sigmoid: _activation("sigmoid"),
        nn.Tanh: _activation("tanh"),
        nn.Softmax: _softmax,
        nn.PReLU: _prelu,
        nn.MaxPool2d: _maxpool,
        nn.AvgPool2d: _avgpool,
        nn.AdaptiveAvgPool2d: _adaptive_avgpool,
        nn.AdaptiveMaxPool2d: _adaptive_maxpool,
        nn.Flatten: _flatten,
        nn.Dropout: _dropout,
        nn.Dropout1d: _channel_dropout,
        nn.Dropout2d: _channel_dropout,
        nn.Dropout3d: _channel_dropout,
        nn.AlphaDropout: _channel_dropout,
        nn.FeatureAlphaDropout: _channel_dropout,
        nn.ZeroPad2d: _zero_pad,
        nn.ConstantPad2d: _constant_pad,
        nn.Identity: _identity,
        nn.ChannelShuffle: _channel_shuffle,
    }


def _optional_mappers() -> dict:
    """Classes of packages the model may come from, looked up only when already imported: an
    object of a class can only exist once its module is loaded."""
    mappers = {}
    depth = sys.modules.get("torchvision.ops.stochastic_depth")
    if depth is not None:
        mappers[depth.StochasticDepth] = _stochastic_depth
    misc = sys.modules.get("torchvision.ops.misc")
    if misc is not None:
        mappers[misc.FrozenBatchNorm2d] = _frozen_batchnorm
    backend = sys.modules.get(__name__.rsplit(".", 3)[0] + ".torch.core")  # netparity.backends.torch.core
    if backend is not None:
        mappers.update({backend.PaddedConv2d: _padded_conv2d, backend.ChannelScale: _channel_scale,
                        backend.Normalize: _normalize, backend.DropPath: _netparity_drop_path,
                        backend.MaskedDropout: _masked_dropout})
    return mappers


def module_mappers() -> dict:
    return {**_torch_mappers(), **_optional_mappers()}


def map_module(m, node, module) -> Tensor:
    mapper = m.module_mappers.get(type(module))
    if mapper is None:
        supported = ", ".join(sorted({cls.__name__ for cls, mapper in m.module_mappers.items()
                                      if mapper not in REFUSALS}))
        m.fail(f"{type(module).__module__}.{type(module).__qualname__} is not a layer the spec can state; the "
               f"importer maps these modules: {supported} (and traces through containers and your own modules)")
    return mapper(m, node, module, m.module_input(node))
