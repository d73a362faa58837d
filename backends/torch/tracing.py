"""The port tracer's PyTorch part (see ``backends/tracing.py``): which ``nn.Module`` is which
parameterised kind, its configuration as PyTorch states it, and its weights, which are already in
the canonical layout. PyTorch is taken from ``sys.modules`` (the model is PyTorch: it is loaded).
"""

from __future__ import annotations

import sys

import numpy as np

from ..tracing import (SCALE_NAMES, Trace, TracedLayer, canonical_shape, check_shape, effective_padding,
                       float32_copy, nhwc_to_nchw, record_names, scale_channels_last, scale_parameter,
                       skipped_notes)


def is_native(model) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def declared_input_shape(model) -> tuple | None:
    """An nn.Module declares no input shape."""
    return None


def first_conv_channels(model) -> int | None:
    nn = sys.modules["torch"].nn
    return next((m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def _torch_kind(module) -> str | None:
    nn = sys.modules["torch"].nn
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    if isinstance(module, nn.Linear):
        return "dense"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)):
        return "batchnorm"
    if isinstance(module, nn.PReLU):
        return "prelu"
    if _torch_is_layernorm(module):
        return "layernorm"
    if type(module).__name__ in SCALE_NAMES and scale_parameter(_torch_parameters(module)):
        return "channel_scale"
    return None


def _torch_parameters(module) -> dict:
    return {n: p for n, p in module._parameters.items() if p is not None}


def _torch_is_layernorm(module) -> bool:
    """nn.LayerNorm over one axis (a LayerNorm2d subclass included), or a LayerNorm module of its
    own with weight and bias of shape (C,) and an eps (the ConvNeXt repository's)."""
    nn = sys.modules["torch"].nn
    if isinstance(module, nn.LayerNorm):
        return len(module.normalized_shape) == 1
    weight = getattr(module, "weight", None)
    return ("LayerNorm" in type(module).__name__ and isinstance(weight, nn.Parameter) and weight.ndim == 1
            and isinstance(getattr(module, "eps", None), float))


def _torch_channels_last(module, kind: str, value) -> bool:
    """Whether this layer's 4D values hold channels last (NHWC): nn.Linear and a plain nn.LayerNorm
    act on the last axis (ConvNeXt permutes to NHWC around them); a LayerNorm2d of its own
    normalises the channels of NCHW unless it says data_format='channels_last'."""
    nn = sys.modules["torch"].nn
    if value is None or value.ndim != 4:
        return False
    if kind == "dense":
        return True
    if kind == "layernorm":
        if type(module).forward is nn.LayerNorm.forward:
            return True
        return getattr(module, "data_format", "channels_first") == "channels_last"
    if kind == "channel_scale":
        _, param = scale_parameter(_torch_parameters(module))
        return param.dim() == 1 and scale_channels_last(param.numel(), value)
    return False


def _torch_own_parameters(module) -> bool:
    return any(p is not None for p in module._parameters.values())


def _torch_config(module, kind: str) -> dict:
    if kind == "conv2d":
        return {"in_channels": module.in_channels, "out_channels": module.out_channels,
                "kernel": tuple(module.kernel_size), "stride": tuple(module.stride),
                "padding": module.padding if isinstance(module.padding, str) else tuple(module.padding),
                "dilation": tuple(module.dilation), "groups": module.groups, "bias": module.bias is not None,
                "padding_mode": module.padding_mode,
                "effective_padding": effective_padding(module.padding, module.kernel_size, module.stride)}
    if kind == "dense":
        return {"in_features": module.in_features, "out_features": module.out_features,
                "bias": module.bias is not None}
    if kind == "batchnorm":
        return {"channels": module.num_features, "eps": float(module.eps),
                "momentum": None if module.momentum is None else float(module.momentum),
                "affine": module.affine, "scale": module.weight is not None, "center": module.bias is not None,
                "track_running_stats": module.track_running_stats}
    if kind == "prelu":
        return {"channels": int(module.num_parameters)}
    if kind == "channel_scale":
        return {"channels": int(scale_parameter(_torch_parameters(module))[1].numel())}
    if kind == "layernorm":
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        shape = getattr(module, "normalized_shape", None)
        return {"channels": int(shape[0]) if shape else int(weight.shape[0]), "eps": float(module.eps),
                "scale": weight is not None, "center": bias is not None}
    return {"parameters": {n: tuple(p.shape) for n, p in module._parameters.items() if p is not None}}


def trace(model, x, training: bool = False) -> Trace:
    """See ``backends.tracing.trace``: forward pre-hooks give the order in which layers begin."""
    torch = sys.modules["torch"]
    names = record_names(model)
    for name, module in model.named_modules():
        names.setdefault(id(module), name or type(module).__name__)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    started: list = []  # (module, call) in the order forwards begin
    outputs: dict = {}
    received: dict = {}
    calls: dict = {}
    ran: set = set()

    dropout = []

    def pre(module, _inputs):
        ran.add(id(module))
        if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            dropout.append((names.get(id(module), type(module).__name__), len(started)))
        if _torch_kind(module) or _torch_own_parameters(module):
            calls[id(module)] = calls.get(id(module), 0) + 1
            entry = (module, calls[id(module)])
            started.append(entry)
            module._netparity_entry = len(started) - 1

    def post(module, inputs, out):
        position = getattr(module, "_netparity_entry", None)
        if position is not None and started[position][0] is module:
            value = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(value, torch.Tensor):
                # a copy: the model may change the tensor in place after the hook (d2l's `Y += X`,
                # ReLU(inplace=True)), and a NumPy view would follow it
                outputs[position] = value.detach().float().cpu().numpy().copy()
            if inputs and isinstance(inputs[0], torch.Tensor):
                received[position] = inputs[0].detach().float().cpu().numpy().copy()

    handles = []
    modes = {m: m.training for m in model.modules()}
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    model.train(training)
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(x).to(device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
            if hasattr(module, "_netparity_entry"):
                del module._netparity_entry
    out = out[0] if isinstance(out, (tuple, list)) else out
    layers = []
    for position, (module, call) in enumerate(started):
        kind = _torch_kind(module) or "unknown"
        name = names.get(id(module), type(module).__name__)
        output, layer_input = outputs.get(position), received.get(position)
        layout = "flat" if output is not None and output.ndim == 2 else "NCHW"
        if _torch_channels_last(module, kind, output):
            output, layout = nhwc_to_nchw(output), "NHWC->NCHW"
            layer_input = nhwc_to_nchw(layer_input)
        layers.append(TracedLayer(len(layers), name if call == 1 else f"{name}#{call}", kind,
                                  type(module).__name__, "torch", _torch_config(module, kind), output,
                                  layout, layer_input, call=call, native=module))
    untraced = [names[id(m)] for m in model.modules()
                if id(m) not in ran and (_torch_kind(m) or _torch_own_parameters(m))]
    return Trace(layers, "torch", out.detach().float().cpu().numpy(), "channels_first", dropout, untraced)


_TORCH_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _torch_tensors(layer: TracedLayer) -> dict:
    module = layer.native
    keys = _TORCH_BN_KEYS if layer.kind == "batchnorm" else ("weight", "bias")
    if layer.kind == "unknown":
        return _torch_parameters(module)
    if layer.kind == "channel_scale":
        return {"weight": scale_parameter(_torch_parameters(module))[1]}
    return {k: getattr(module, k) for k in keys if getattr(module, k, None) is not None}


def read_weights(layer: TracedLayer) -> dict:
    return {k: float32_copy(t.detach().float().cpu().numpy()).reshape(canonical_shape(layer, t.shape))
            for k, t in _torch_tensors(layer).items()}


def write_weights(layer: TracedLayer, weights: dict, flatten_source=None) -> list[str]:
    """PyTorch's layout is the canonical one: ``flatten_source`` changes nothing."""
    torch = sys.modules["torch"]
    present = _torch_tensors(layer)
    with torch.no_grad():
        for key, tensor in present.items():
            if key not in weights:
                continue
            value = np.asarray(weights[key], dtype=np.float32)
            check_shape(layer, key, value, canonical_shape(layer, tensor.shape))
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value).reshape(tensor.shape)).to(tensor.dtype))
    return skipped_notes(layer, weights, present)
