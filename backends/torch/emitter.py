"""PyTorch source for a spec: ``nn.Module`` classes with ``__init__`` and ``forward``.

The code builds what netparity's torch backend (backends/torch/core.py) builds, layer for layer,
with its small modules re-written inline where PyTorch has none (per-side conv padding,
LayerNorm over channels, layer scale, fixed normalisation, channel slices, stochastic depth).
The spec's kinds are PyTorch's definitions, so the weights need no conversion: the state_dict
holds the canonical weights under the emitted attribute names.
"""

from __future__ import annotations

from ..emit.modules import Dialect, LeafCode, write_classes
from ..emit.naming import camel, pair_value
from ..emit.plan import Child, Plan, build_plan, native_paths
from ..emit.source import REQUIRED, EmitError, Writer, arguments, expr, format_source, load_module

NAME = "torch"
FRAMEWORK = "PyTorch"
LOAD_HINT = "model.load_state_dict(torch.load(PATH))"
WEIGHTS_SUFFIX = ".pt"
INPUT_LAYOUT = "NCHW"  # how the emitted model takes an image batch


# ---------------------------------------------------------------------------------------
# Facts: what each leaf's code depends on
# ---------------------------------------------------------------------------------------

class Lowering:
    def leaf(self, path, layer, row):
        kind = layer.kind
        channels = row.input_shape[0]
        if kind == "conv2d":
            top, bottom, left, right = layer.pads
            symmetric = top == bottom and left == right
            padding = pair_value((top, left)) if symmetric else (top, bottom, left, right)
            return symmetric, {
                "in_channels": ("channels", channels), "out_channels": ("channels", layer.out_channels),
                "kernel_size": ("kernel", pair_value(layer.kernel)), "stride": ("stride", pair_value(layer.stride)),
                "padding": ("padding", padding), "dilation": ("dilation", pair_value(layer.dilation)),
                "groups": ("channels", layer.groups), "bias": ("flag", layer.bias)}
        if kind == "pad2d":
            top, bottom, left, right = layer.pads
            return (), {"padding": ("padding", (left, right, top, bottom))}
        if kind == "crop2d":
            return (), {"crop": ("padding", layer.crops)}
        if kind == "batchnorm":
            return (len(row.input_shape), layer.scale, layer.center), {
                "num_features": ("channels", channels), "eps": ("float", layer.eps),
                "momentum": ("float", layer.momentum)}
        if kind == "layernorm":
            return len(row.input_shape), {"normalized_shape": ("channels", channels), "eps": ("float", layer.eps)}
        if kind == "activation":
            if layer.function not in KNOWN_ACTIVATIONS:
                raise EmitError(f"{path}: no PyTorch code for activation {layer.function!r}")
            facts = {"leaky_relu": {"negative_slope": ("float", layer.negative_slope)},
                     "elu": {"alpha": ("float", layer.alpha)},
                     "gelu": {"approximate": ("other", layer.approximate)}}.get(layer.function, {})
            return layer.function, facts
        if kind in ("prelu", "channel_scale"):
            return (), {"channels": ("channels", channels)}
        if kind == "normalize":
            return (), {"mean": ("other", layer.mean), "std": ("other", layer.std)}
        if kind in ("maxpool2d", "avgpool2d"):
            facts = {"kernel_size": ("kernel", pair_value(layer.kernel)), "stride": ("stride", pair_value(layer.stride)),
                     "padding": ("padding", pair_value(layer.padding)), "ceil_mode": ("flag", layer.ceil_mode)}
            if kind == "avgpool2d":
                facts["count_include_pad"] = ("flag", layer.count_include_pad)
            return (), facts
        if kind == "adaptive_avgpool2d":
            return (), {"output_size": ("size", pair_value(layer.output_size))}
        if kind in ("global_avgpool", "global_maxpool"):
            return layer.keepdims, {}
        if kind == "dense":
            return (), {"in_features": ("channels", channels), "out_features": ("channels", layer.out_features),
                        "bias": ("flag", layer.bias)}
        if kind in ("dropout", "drop_path"):
            return (), {"p": ("float", float(layer.p))}
        if kind == "channel_shuffle":
            return (), {"groups": ("other", layer.groups)}
        if kind == "channel_slice":
            return (), {"start": ("channels", layer.start), "stop": ("channels", layer.stop)}
        if kind in ("flatten", "identity"):
            return (), {}
        raise EmitError(f"{path}: no PyTorch code for layer kind {kind!r}")

    def block(self, path, layer, row):
        return (), {}


# ---------------------------------------------------------------------------------------
# Leaf code
# ---------------------------------------------------------------------------------------

ACTIVATION_MODULES = {"relu": "nn.ReLU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()", "relu6": "nn.ReLU6()",
                      "silu": "nn.SiLU()", "hardswish": "nn.Hardswish()", "hardsigmoid": "nn.Hardsigmoid()",
                      "softplus": "nn.Softplus()"}
KNOWN_ACTIVATIONS = {*ACTIVATION_MODULES, "leaky_relu", "elu", "gelu", "softmax"}


def leaf_code(child: Child) -> LeafCode:
    kind, key, f = child.kind, child.key, child.facts
    if kind == "conv2d":
        options = [("stride", "stride", 1), ("padding", "padding", 0), ("dilation", "dilation", 1),
                   ("groups", "groups", 1), ("bias", "bias", True)]
        if key:  # symmetric padding
            return LeafCode(f"nn.Conv2d({arguments(f, ('in_channels', 'out_channels', 'kernel_size'), options)})")
        return LeafCode(f"PaddedConv2d({arguments(f, ('padding', 'in_channels', 'out_channels', 'kernel_size'), options[:1] + options[2:])})",
                        helpers=("PaddedConv2d",))
    if kind == "pad2d":
        return LeafCode(f"nn.ZeroPad2d({expr(f['padding'])})", note="nn.ZeroPad2d takes (left, right, top, bottom)")
    if kind == "crop2d":
        module = f"Crop2d({expr(f['crop'])})"
        if f["crop"].param:  # forward cannot see __init__'s arguments
            return LeafCode(module, helpers=("Crop2d",))
        top, bottom, left, right = f["crop"].value
        rows, columns = f"{top or ''}:{-bottom or ''}", f"{left or ''}:{-right or ''}"
        return LeafCode(None, call=f"{{x}}[:, :, {rows}, {columns}]", seq=[module], helpers=("Crop2d",))
    if kind == "batchnorm":
        dims, scale, center = key
        norm = "nn.BatchNorm2d" if dims == 3 else "nn.BatchNorm1d"
        options = [("eps", "eps", 1e-5), ("momentum", "momentum", 0.1)]
        if scale:
            extra = [] if center else ["bias=False"]
            return LeafCode(f"{norm}({arguments(f, ('num_features',), options, extra)})")
        if center:
            return LeafCode(f"batchnorm_without_scale({norm}, {arguments(f, ('num_features',), options)})",
                            helpers=("batchnorm_without_scale",))
        return LeafCode(f"{norm}({arguments(f, ('num_features',), options, ['affine=False'])})")
    if kind == "layernorm":
        norm = "LayerNorm2d" if key == 3 else "nn.LayerNorm"
        return LeafCode(f"{norm}({arguments(f, ('normalized_shape',), [('eps', 'eps', 1e-5)])})",
                        helpers=("LayerNorm2d",) if key == 3 else ())
    if kind == "activation":
        if key in ACTIVATION_MODULES:
            return LeafCode(ACTIVATION_MODULES[key])
        if key == "leaky_relu":
            return LeafCode(f"nn.LeakyReLU({arguments(f, (), [('negative_slope', 'negative_slope', 0.01)])})")
        if key == "elu":
            return LeafCode(f"nn.ELU({arguments(f, (), [('alpha', 'alpha', 1.0)])})")
        if key == "gelu":
            return LeafCode(f"nn.GELU({arguments(f, (), [('approximate', 'approximate', 'none')])})")
        if key == "softmax":
            return LeafCode("nn.Softmax(dim=1)", note="softmax over dim 1: the channels of each pixel, or the features")
    if kind == "prelu":
        return LeafCode(f"nn.PReLU({expr(f['channels'])})")
    if kind == "channel_scale":
        return LeafCode(f"ChannelScale({expr(f['channels'])})", helpers=("ChannelScale",))
    if kind == "normalize":
        return LeafCode(f"Normalize({expr(f['mean'])}, {expr(f['std'])})", helpers=("Normalize",))
    if kind in ("maxpool2d", "avgpool2d"):
        name = "nn.MaxPool2d" if kind == "maxpool2d" else "nn.AvgPool2d"
        stride_default = f["kernel_size"].value if f["kernel_size"].param is None else REQUIRED
        options = [("stride", "stride", stride_default), ("padding", "padding", 0), ("ceil_mode", "ceil_mode", False)]
        if kind == "avgpool2d":
            options.append(("count_include_pad", "count_include_pad", True))
        return LeafCode(f"{name}({arguments(f, ('kernel_size',), options)})")
    if kind == "adaptive_avgpool2d":
        return LeafCode(f"nn.AdaptiveAvgPool2d({expr(f['output_size'])})")
    if kind in ("global_avgpool", "global_maxpool"):
        pool = "nn.AdaptiveAvgPool2d(1)" if kind == "global_avgpool" else "nn.AdaptiveMaxPool2d(1)"
        if key:  # keepdims: (N, C, 1, 1)
            return LeafCode(pool)
        return LeafCode(pool, call="torch.flatten({m}({x}), 1)", seq=[pool, "nn.Flatten()"])
    if kind == "flatten":
        return LeafCode("nn.Flatten()")
    if kind == "dense":
        return LeafCode(f"nn.Linear({arguments(f, ('in_features', 'out_features'), [('bias', 'bias', True)])})")
    if kind == "dropout":
        return LeafCode(f"nn.Dropout({expr(f['p'])})")
    if kind == "drop_path":
        return LeafCode(f"DropPath({expr(f['p'])})", helpers=("DropPath",))
    if kind == "identity":
        return LeafCode(None, call="{x}", seq=["nn.Identity()"])
    if kind == "channel_shuffle":
        return LeafCode(f"nn.ChannelShuffle({expr(f['groups'])})")
    if kind == "channel_slice":
        start, stop = expr(f["start"]), expr(f["stop"])
        module = f"ChannelSlice({start}, {stop})"
        if f["start"].param or f["stop"].param:  # forward cannot see __init__'s arguments
            return LeafCode(module, helpers=("ChannelSlice",))
        return LeafCode(None, call=f"{{x}}[:, {start}:{stop}]", seq=[module], helpers=("ChannelSlice",))
    raise ValueError(f"no PyTorch code for layer kind {kind!r}")


# ---------------------------------------------------------------------------------------
# Helpers re-written from backends/torch/core.py, emitted only where used
# ---------------------------------------------------------------------------------------

HELPERS = {
    "PaddedConv2d": '''
class PaddedConv2d(nn.Conv2d):
    """nn.Conv2d after zero padding that may differ per side, (top, bottom, left, right):
    PyTorch's own padding is symmetric, TensorFlow's 'same' at stride 2 pads one more after."""

    def __init__(self, padding, *args, **kwargs):
        super().__init__(*args, **kwargs)
        top, bottom, left, right = padding
        self.pads = (left, right, top, bottom)  # F.pad's order: the last dimension first

    def forward(self, x):
        return super().forward(nn.functional.pad(x, self.pads))
''',
    "batchnorm_without_scale": '''
def batchnorm_without_scale(norm, channels, **kwargs):
    """BatchNorm with a learned shift (beta) but gamma fixed at 1 (MXNet's fix_gamma): PyTorch
    has no flag for it, and F.batch_norm takes a missing weight as 1."""
    module = norm(channels, affine=False, **kwargs)
    module.bias = nn.Parameter(torch.zeros(channels))
    return module
''',
    "LayerNorm2d": '''
class LayerNorm2d(nn.LayerNorm):
    """nn.LayerNorm over the channels of each pixel of an NCHW input (torchvision's ConvNeXt)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
''',
    "ChannelScale": '''
class ChannelScale(nn.Module):
    """x * weight[c], a learned multiplier per channel (ConvNeXt's layer scale, kept as (C,))."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * self.weight.view(-1, *([1] * (x.dim() - 2)))
''',
    "Normalize": '''
class Normalize(nn.Module):
    """Fixed (x - mean[c]) / std[c]: constants, not weights (non-persistent buffers)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean), persistent=False)
        self.register_buffer("std", torch.tensor(std), persistent=False)

    def forward(self, x):
        shape = (-1,) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)
''',
    "Crop2d": '''
class Crop2d(nn.Module):
    """Drops (top, bottom, left, right) rows and columns at the edges (Keras' Cropping2D)."""

    def __init__(self, crop):
        super().__init__()
        self.crop = crop

    def forward(self, x):
        top, bottom, left, right = self.crop
        return x[:, :, top : x.shape[2] - bottom, left : x.shape[3] - right]
''',
    "ChannelSlice": '''
class ChannelSlice(nn.Module):
    """Channels start:stop (dim 1), ShuffleNetV2's split."""

    def __init__(self, start, stop):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x):
        return x[:, self.start : self.stop]
''',
    "DropPath": '''
class DropPath(nn.Dropout):
    """Stochastic depth (torchvision's StochasticDepth(p, "row")): in training each example is
    zeroed whole with probability p and the rest scaled by 1 / (1 - p); the identity in eval
    mode. A Dropout, so that tools treat it as one."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        draws = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * draws.bernoulli_(keep).div_(keep)
''',
    "DenseConcat": '''
class DenseConcat(nn.ModuleList):
    """DenseNet's dense block: each layer sees everything before it, x = cat(x, layer(x))."""

    def forward(self, x):
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x
''',
}


class TorchDialect(Dialect):
    base = "nn.Module"
    forward = "def forward(self, x):"

    def leaf_code(self, child):
        return leaf_code(child)

    def sequential(self, modules, out):
        return f"nn.Sequential({', '.join(modules)})"

    def dense(self, units, out):
        out.helper("DenseConcat")
        return f"DenseConcat([{', '.join(units)}])"

    def merge(self, merge, branches, out):
        if merge == "concat":
            return f"torch.cat([{', '.join(branches)}], dim=1)"
        # add and mul broadcast a (N, C, 1, 1) gate over (N, C, H, W) (squeeze-and-excitation)
        return (" + " if merge == "add" else " * ").join(branches)


def class_name(base: str) -> str:
    return camel(base)


def plan(spec) -> Plan:
    return build_plan(spec, Lowering(), class_name, reserved=HELPERS)


def emit_source(spec) -> str:
    """One Python file that imports only PyTorch and defines ``build_model()``."""
    the_plan = plan(spec)
    body = Writer()
    write_classes(TorchDialect(), the_plan, body)
    c, h, w = the_plan.spec.input_shape
    out_shape = ", ".join(str(s) for s in the_plan.spec.infer().output_shape)
    body.line("def build_model():")
    with body.indented():
        body.line(f'"""{the_plan.model.name} for (N, {c}, {h}, {w}) float32 input, in eval mode."""')
        body.line(f"return {the_plan.model.name}().eval()")
    head = [
        f'"""{spec.name} in PyTorch, written by `netparity emit` from its netparity spec.',
        "",
        f"Input (N, {c}, {h}, {w}) float32 (NCHW), output (N, {out_shape}). Weights that netparity",
        "wrote (`netparity emit --weights`) load with:",
        "",
        "    model = build_model()",
        "    model.load_state_dict(torch.load(PATH))",
        '"""',
        "",
        "import torch",
        "from torch import nn",
        "",
    ]
    helpers = [HELPERS[name] for name in body.helpers]
    return format_source("\n".join(head) + "\n" + "\n".join(helpers) + "\n" + body.text())


# ---------------------------------------------------------------------------------------
# Native weights: the emitted model's own state_dict, saved by torch.save
# ---------------------------------------------------------------------------------------

def native_keys(spec) -> dict[str, str]:
    """{canonical weight key: state_dict key of the emitted model}."""
    the_plan = plan(spec)
    natives = native_paths(the_plan)
    keys = {}
    for key in spec.infer().weight_layout():
        path, _, name = key.rpartition(".")
        keys[key] = ".".join(natives[path]) + "." + name
    return keys


def write_weights(spec, weights: dict, path, source: str | None = None) -> None:
    """Build the emitted model in this process, copy the canonical ``weights`` into it, and save
    its ``state_dict()`` with ``torch.save`` (loadable by ``model.load_state_dict(torch.load(path))``)."""
    import numpy as np

    from ..frameworks import import_torch

    torch = import_torch()
    model = load_module(source or emit_source(spec)).build_model()
    state = model.state_dict()
    with torch.no_grad():
        for key, native in native_keys(spec).items():
            state[native].copy_(torch.from_numpy(np.asarray(weights[key], dtype=np.float32)))
    torch.save(model.state_dict(), str(path))


def read_weights(spec, model) -> dict:
    """The canonical weights held by an emitted model (after ``load_state_dict``), float32 copies."""
    state = model.state_dict()
    return {key: state[native].detach().cpu().numpy().copy() for key, native in native_keys(spec).items()}


def load_weights(model, path) -> None:
    """The emitted model's weights from its state_dict file, by PyTorch's own loader."""
    from ..frameworks import import_torch

    model.load_state_dict(import_torch().load(str(path)))


def load_snippet(weights_name: str) -> list[str]:
    """How a user loads the emitted model and its weight file (for a converted folder's README)."""
    return ["import torch", "import model", "", "net = model.build_model()",
            f"net.load_state_dict(torch.load({weights_name!r}))"]
