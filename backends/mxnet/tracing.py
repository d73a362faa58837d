"""The port tracer's MXNet Gluon part (see ``backends/tracing.py``): which ``Block`` is which
parameterised kind, its configuration (BatchNorm momentum put into the canonical convention by
``layout``) and its weights (canonical axes, Gluon's names). MXNet is taken from ``sys.modules``.
"""

from __future__ import annotations

import sys

import numpy as np

from ..tracing import (SCALE_NAMES, Trace, TracedLayer, canonical_shape, check_shape, effective_padding,
                       float32_copy, nhwc_to_nchw, record_names, scale_channels_last, scale_parameter,
                       skipped_notes)
from . import layout


def is_native(model) -> bool:
    mxnet = sys.modules.get("mxnet")
    return mxnet is not None and isinstance(model, mxnet.gluon.Block)


def declared_input_shape(model) -> tuple | None:
    """A Gluon Block declares no input shape."""
    return None


def first_conv_channels(model) -> int | None:
    nn = sys.modules["mxnet"].gluon.nn
    stack = [model]
    while stack:
        block = stack.pop(0)
        if isinstance(block, nn.Conv2D) and block.weight.shape[1]:
            return int(block.weight.shape[1]) * block._kwargs["num_group"]
        stack.extend(block._children.values())
    return None


def _children(block):
    for name, child in block._children.items():
        yield name, (child() if callable(child) and not hasattr(child, "_children") else child)


def _mxnet_kind(block) -> str | None:
    nn = sys.modules["mxnet"].gluon.nn
    if isinstance(block, nn.Conv2D) and block._kwargs.get("layout", "NCHW") == "NCHW":
        return "conv2d"
    if isinstance(block, nn.Dense):
        return "dense"
    if isinstance(block, nn.BatchNorm):
        return "batchnorm"
    if isinstance(block, nn.PReLU):
        return "prelu"
    if isinstance(block, nn.LayerNorm):
        return "layernorm"
    if type(block).__name__ in SCALE_NAMES and scale_parameter(dict(getattr(block, "_reg_params", {}))):
        return "channel_scale"
    return None


def _mxnet_channels_last(block, kind: str, value) -> bool:
    """Whether this block's 4D values hold channels last: a Dense(flatten=False) or a LayerNorm over
    the last axis acts on a tensor the model permuted to NHWC."""
    if value is None or value.ndim != 4:
        return False
    if kind == "dense":
        return not block._flatten
    if kind == "layernorm":
        return block._kwargs["axis"] in (-1, 3)
    if kind == "channel_scale":
        _, param = scale_parameter(dict(block._reg_params))
        return len(param.shape) == 1 and scale_channels_last(int(param.shape[0]), value)
    return False


def _mxnet_own_parameters(block) -> bool:
    constant = sys.modules["mxnet"].gluon.Constant
    return any(not isinstance(p, constant) for p in getattr(block, "_reg_params", {}).values())


def _act_name(act) -> str | None:
    if act is None:
        return None
    return getattr(act, "_act_type", None) or type(act).__name__


def _mxnet_config(block, kind: str) -> dict:
    kw = getattr(block, "_kwargs", {})
    if kind == "conv2d":
        weight = block.weight.shape
        return {"in_channels": int(weight[1]) * kw["num_group"], "out_channels": kw["num_filter"],
                "kernel": tuple(kw["kernel"]), "stride": tuple(kw["stride"]), "padding": tuple(kw["pad"]),
                "dilation": tuple(kw["dilate"]), "groups": kw["num_group"], "bias": not kw["no_bias"],
                "activation": _act_name(block.act),
                "effective_padding": effective_padding(kw["pad"], kw["kernel"], kw["stride"])}
    if kind == "dense":
        return {"in_features": int(block.weight.shape[1]), "out_features": int(block._units),
                "bias": block.bias is not None, "flatten": bool(block._flatten), "activation": _act_name(block.act)}
    if kind == "batchnorm":
        return {"channels": int(block.running_mean.shape[0]), "eps": float(kw["eps"]),
                "momentum": layout.momentum_to_canonical(kw["momentum"]), "axis": kw["axis"],
                "fix_gamma": bool(kw["fix_gamma"]), "use_global_stats": bool(kw["use_global_stats"]),
                "scale": not kw["fix_gamma"], "center": bool(block.beta._differentiable)}
    if kind == "prelu":
        return {"channels": int(block.alpha.shape[0])}
    if kind == "channel_scale":
        return {"channels": int(np.prod(scale_parameter(dict(block._reg_params))[1].shape))}
    if kind == "layernorm":
        return {"channels": int(block.gamma.shape[0]), "eps": float(kw["eps"]), "axis": kw["axis"],
                "scale": bool(kw["scale"]), "center": bool(kw["center"])}
    return {"parameters": {n: tuple(p.shape) for n, p in block._reg_params.items()}}


def _mxnet_context(model):
    mx = sys.modules["mxnet"]
    for param in model.collect_params().values():
        try:
            return param.list_ctx()[0]
        except Exception:  # deferred initialisation: no context yet
            continue
    return mx.cpu()


def trace(model, x, training: bool = False) -> Trace:
    """See ``backends.tracing.trace``: Gluon runs imperatively, hybridization paused."""
    mx = sys.modules["mxnet"]
    names, stack = {id(model): model.name, **record_names(model)}, [("", model)]
    blocks = []
    while stack:
        prefix, block = stack.pop(0)
        blocks.append(block)
        for name, child in _children(block):
            path = f"{prefix}.{name}" if prefix else name
            names.setdefault(id(child), path)
            stack.append((path, child))
    started, outputs, calls, ran, received, preact = [], {}, {}, set(), {}, {}
    # A Conv2D/Dense with a fused activation runs it as a child block: its input is the layer's
    # pre-activation output, which is what a PyTorch layer followed by a separate activation gives.
    act_parent = {id(b.act): b for b in blocks if _mxnet_kind(b) in ("conv2d", "dense") and b.act is not None}

    dropout = []

    def pre(block, inputs):
        if isinstance(block, mx.gluon.nn.Dropout) and float(block._rate) > 0:
            dropout.append((names.get(id(block), block.name), len(started)))
        parent = act_parent.get(id(block))
        if parent is not None and getattr(parent, "_netparity_entry", None) is not None and inputs:
            preact[parent._netparity_entry] = inputs[0]
        ran.add(id(block))
        if _mxnet_kind(block) or _mxnet_own_parameters(block):
            calls[id(block)] = calls.get(id(block), 0) + 1
            started.append((block, calls[id(block)]))
            block._netparity_entry = len(started) - 1

    def post(block, inputs, out):
        position = getattr(block, "_netparity_entry", None)
        if position is not None and started[position][0] is block:
            value = out[0] if isinstance(out, (tuple, list)) else out
            value = preact.get(position, value)
            if isinstance(value, mx.nd.NDArray):
                outputs[position] = value.asnumpy().astype(np.float32)
            if inputs and isinstance(inputs[0], mx.nd.NDArray):
                received[position] = inputs[0].asnumpy().astype(np.float32)

    handles = [h for block in blocks for h in (block.register_forward_pre_hook(pre),
                                                block.register_forward_hook(post))]
    batch = mx.nd.array(x, ctx=_mxnet_context(model), dtype=np.float32)
    try:
        from .core import imperative  # the model is Gluon: mxnet is loaded already

        with imperative(model):
            if training:
                # Gluon moves BatchNorm running statistics only in backward: run one, like a step.
                with mx.autograd.record(train_mode=True):
                    out = model(batch)
                    head = out[0] if isinstance(out, (tuple, list)) else out
                try:
                    head.backward()
                except Exception:  # no parameter needs a gradient: statistics stay put
                    pass
            else:
                out = model(batch)
    finally:
        for handle in handles:
            handle.detach()
        for block in blocks:
            if hasattr(block, "_netparity_entry"):
                del block._netparity_entry
    out = out[0] if isinstance(out, (tuple, list)) else out
    layers = []
    for position, (block, call) in enumerate(started):
        kind = _mxnet_kind(block) or "unknown"
        name = names.get(id(block), block.name)
        output, layer_input = outputs.get(position), received.get(position)
        layout = "flat" if output is not None and output.ndim == 2 else "NCHW"
        if _mxnet_channels_last(block, kind, output):
            output, layout = nhwc_to_nchw(output), "NHWC->NCHW"
            layer_input = nhwc_to_nchw(layer_input)
        layers.append(TracedLayer(len(layers), name if call == 1 else f"{name}#{call}", kind,
                                  type(block).__name__, "mxnet", _mxnet_config(block, kind), output,
                                  layout, layer_input, call=call, native=block))
    untraced = [names[id(b)] for b in blocks
                if id(b) not in ran and (_mxnet_kind(b) or _mxnet_own_parameters(b))]
    return Trace(layers, "mxnet", out.asnumpy().astype(np.float32), "channels_first", dropout, untraced)


def _mxnet_params(layer: TracedLayer) -> dict:
    block = layer.native
    if layer.kind == "unknown":
        return dict(block._reg_params)
    if layer.kind == "channel_scale":
        return {"weight": scale_parameter(dict(block._reg_params))[1]}
    params = {}
    for key, native in layout.NATIVE_NAMES[layer.kind].items():
        param = getattr(block, native, None)
        if param is None:
            continue
        if layer.kind in ("batchnorm", "layernorm") and key in ("weight", "bias") and not _mxnet_learned(layer, key):
            continue  # scale=False / center=False: gamma 1 and beta 0 are not weights of the function
        params[key] = param
    return params


def _mxnet_learned(layer: TracedLayer, key: str) -> bool:
    """Whether a norm's gamma (weight) or beta (bias) is learned: BatchNorm(scale=False) runs with
    fix_gamma (gamma taken as 1 whatever it holds); center=False leaves beta at 0, untrained."""
    return bool(layer.config.get("scale" if key == "weight" else "center", True))


def read_weights(layer: TracedLayer) -> dict:
    return {k: float32_copy(p.data().asnumpy()).reshape(canonical_shape(layer, p.shape))
            for k, p in _mxnet_params(layer).items()}


def write_weights(layer: TracedLayer, weights: dict, flatten_source=None) -> list[str]:
    """Gluon flattens NCHW in canonical order: ``flatten_source`` changes nothing."""
    mx = sys.modules["mxnet"]
    present = _mxnet_params(layer)
    for key, param in present.items():
        if key not in weights:
            continue
        value = np.asarray(weights[key], dtype=np.float32)
        check_shape(layer, key, value, canonical_shape(layer, param.shape))
        param.set_data(mx.nd.array(value.reshape(param.shape), ctx=param.list_ctx()[0], dtype=param.dtype))
    return skipped_notes(layer, weights, present)
