"""Importing PyTorch models (issue 11): ``backends.torch.importer.import_model``.

- torchvision's CNN classification families, with random non-trivial BatchNorm statistics, import
  at a reduced input size; the imported spec built in PyTorch, MXNet and Keras with the imported
  weights reproduces torchvision's own eval-mode output (max|a-b| / max|b| <= 1e-4).
- Round trip: every zoo spec built by the torch backend imports back as the same spec (block
  spelling and names aside, see ``helpers.normal_form``) with bitwise the same weights in the same order.
- The functional and tensor forms people write, one small model each, reproduce the module.
- What cannot be stated exactly is refused with an error naming the fx node and its source line;
  a model fx cannot trace gets fx's reason and a hint.
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'netparity[torch]')")
nn = torch.nn
F = torch.nn.functional

from netparity.backends import BACKEND_NAMES, available, get_backend  # noqa: E402
from netparity.backends.torch.importer import TorchImportError, import_model  # noqa: E402
from netparity.backends.torch.importer.sources import AUXILIARY  # noqa: E402
from netparity.spec import Sequence, init_weights, zoo  # noqa: E402
from netparity.compare.import_coverage import randomize_statistics  # noqa: E402

from helpers import normal_form, smallest_input  # noqa: E402

TOLERANCE = 1e-4  # max|a - b| / max|b| against torchvision's own output
EXACT = 1e-6  # small models, same arithmetic in the same framework


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def run_module(module, x: np.ndarray) -> np.ndarray:
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def run_spec(imported, x: np.ndarray, framework: str = "torch") -> np.ndarray:
    backend = get_backend(framework)
    model = backend.build(imported.spec)
    backend.set_weights(model, imported.weights)
    return backend.forward(model, x)


def batch(shape, seed: int = 1, n: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# torchvision's families
# ---------------------------------------------------------------------------------------

# the smallest member of each family at (about) the smallest input it accepts: the last feature
# maps are 1x1 or 2x2. Odd sizes where they are free, so ceil-mode pools and strided convs meet
# odd edges. The heaviest (dense heads of 60-130 M parameters, the widest nets) are slow tests.
FAMILIES = {
    "alexnet": 63,
    "vgg11": 32,
    "vgg11_bn": 32,
    "resnet18": 33,
    "resnext50_32x4d": 32,
    "wide_resnet50_2": 32,
    "squeezenet1_0": 49,
    "squeezenet1_1": 49,
    "densenet121": 32,
    "googlenet": 35,
    "inception_v3": 75,
    "mobilenet_v2": 32,
    "mobilenet_v3_small": 33,
    "mnasnet0_5": 32,
    "efficientnet_b0": 32,
    "efficientnet_v2_s": 32,
    "regnet_x_400mf": 32,
    "regnet_y_400mf": 32,
    "convnext_tiny": 32,
    "shufflenet_v2_x0_5": 37,
}
SLOW = {"alexnet", "vgg11", "vgg11_bn", "wide_resnet50_2", "efficientnet_v2_s", "inception_v3"}
# torchvision's defaults for weights=None, except the auxiliary classifiers (training-only outputs), as
# `netparity import torchvision:NAME` builds them
OPTIONS = AUXILIARY


def family_params():
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in FAMILIES]


@dataclasses.dataclass(frozen=True)
class FamilyCase:
    imported: object
    parameters: int  # torchvision's own count
    running_stats: int
    x: np.ndarray
    expected: np.ndarray  # torchvision's eval-mode output


@lru_cache(maxsize=2)
def family_case(name: str) -> FamilyCase:
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **OPTIONS.get(name, {}))
    size = FAMILIES[name]
    randomize_statistics(model, size)
    x = batch((3, size, size))
    expected = run_module(model, x)
    imported = import_model(model, (3, size, size), name=name)
    assert not model.training  # left in the mode it was in
    return FamilyCase(imported, sum(p.numel() for p in model.parameters()),
                      sum(b.numel() for k, b in model.named_buffers() if k.endswith(("running_mean", "running_var"))),
                      x, expected)


@pytest.fixture(scope="module", autouse=True)
def release_family_cases():
    yield
    family_case.cache_clear()


@pytest.mark.parametrize("framework", BACKEND_NAMES)
@pytest.mark.parametrize("name", family_params())
def test_torchvision_family_reproduces_its_output(name, framework):
    if framework not in available():
        pytest.skip(f"{framework} is not installed")
    case = family_case(name)
    inference = case.imported.spec.infer()
    assert inference.parameters == case.parameters
    assert inference.running_stats == case.running_stats
    assert case.imported.source_counts == {"trainable": case.parameters, "running_stats": case.running_stats}
    out = run_spec(case.imported, case.x, framework)
    assert relative_error(out, case.expected) <= TOLERANCE


def test_convnext_layer_scale_keeps_torchvisions_weight_order():
    imported = family_case("convnext_tiny").imported
    body = imported.spec.infer().row("blocks[2].branches[0]")
    assert body.layer.parameter_order == (5, 0, 1, 2, 3, 4, 6)
    assert [layer.kind for layer in body.layer.layers] == ["conv2d", "layernorm", "conv2d", "activation", "conv2d",
                                                           "channel_scale", "drop_path"]
    # by order, the imported weights are torchvision's state_dict (layer scale (C, 1, 1) -> (C,))
    torchvision = pytest.importorskip("torchvision")
    state = [v for k, v in torchvision.models.convnext_tiny().state_dict().items()]
    assert [tuple(np.squeeze(np.empty(w.shape)).shape) for w in imported.weights.values()] == \
        [tuple(np.squeeze(np.empty(tuple(s.shape))).shape) for s in state]


def test_source_names_become_layer_names():
    imported = family_case("resnet18").imported
    names = [row.layer.name for row in imported.spec.infer().rows]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert "layer1.0" in names  # the residual add, named after the block it happens in
    assert "layer1.0.conv1" in names and "layer1.0.relu#2" in names  # a module called twice
    assert names[-2:] == ["avgpool", "fc"]  # AdaptiveAvgPool2d(1) + torch.flatten: one global pool


# ---------------------------------------------------------------------------------------
# Round trip: zoo spec -> torch backend -> import
# ---------------------------------------------------------------------------------------

# the smallest input each accepts (helpers.smallest_input): VGG's dense head at 224 px alone is
# 100 M weights; the torchvision ones keep their adaptive pool and so their head
ROUND_TRIP_SLOW = {"tv_vgg11", "tv_vgg13", "tv_alexnet"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ROUND_TRIP_SLOW else n
                                  for n in zoo.names()])
def test_zoo_round_trip(name):
    backend = get_backend("torch")
    spec = smallest_input(zoo.get(name), at_least=16)
    model = backend.build(spec)
    weights = init_weights(spec, seed=3)
    backend.set_weights(model, weights)
    imported = import_model(model, spec.input_shape)
    assert normal_form(imported.spec.blocks) == normal_form(spec.blocks)
    # bitwise the same weights, in the same canonical order (parameter_order included)
    ours, theirs = list(imported.weights.values()), list(weights.values())
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == np.float32 and np.array_equal(a, b)
    assert list(imported.weights) == list(imported.spec.infer().weight_layout())


def test_normal_form_tells_specs_apart():
    # the comparison above would pass for anything if normal_form erased differences
    assert normal_form(zoo.get("resnet18").blocks) != normal_form(zoo.get("resnet34").blocks)
    assert normal_form(zoo.get("tv_resnet18").blocks) != normal_form(zoo.get("resnet18").blocks)
    a, b = zoo.get("tv_squeezenet1_1").blocks, zoo.get("tv_squeezenet1_1", num_classes=10).blocks
    assert normal_form(a) != normal_form(b)


# ---------------------------------------------------------------------------------------
# The forms people write
# ---------------------------------------------------------------------------------------

class Lambda(nn.Module):
    """A small model from a forward function and its layers."""

    def __init__(self, forward, **layers):
        super().__init__()
        for key, layer in layers.items():
            setattr(self, key, layer)
        self._forward = forward

    def forward(self, x):
        return self._forward(self, x)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle as torchvision writes it."""

    def forward(self, x):
        batchsize, num_channels, height, width = x.size()
        x = x.view(batchsize, 2, num_channels // 2, height, width)
        x = torch.transpose(x, 1, 2).contiguous()
        return x.view(batchsize, -1, height, width)


class LayerScaleBlock(nn.Module):
    """ConvNeXt's block: permute -> LayerNorm -> Linear -> GELU -> Linear -> permute, layer scale."""

    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.gamma = nn.Parameter(torch.rand(c, 1, 1) + 0.5)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.up = nn.Linear(c, 2 * c)
        self.down = nn.Linear(2 * c, c)

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.down(F.gelu(self.up(self.norm(y)))).permute(0, 3, 1, 2)
        return x + self.gamma * y


class ChannelsLastScale(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)
        self.linear = nn.Linear(c, c)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        return (self.linear(x) * self.gamma).permute(0, 3, 1, 2)


class Split(nn.Module):
    """ShuffleNetV2's chunk and a split into unequal parts, each piece used differently."""

    def __init__(self):
        super().__init__()
        self.c, self.p, self.c2 = conv(3, 6, 1), conv(3, 3, 1), conv(3, 4, 1)

    def forward(self, x):
        a, b = torch.chunk(self.c(x), 2, dim=1)
        first, rest = self.c2(x).split([1, 3], dim=1)
        return torch.cat([torch.cat([self.p(a), b], dim=1), torch.cat([rest, first], dim=1)], dim=1)


class LinearSqueezeExcitation(nn.Module):
    """Squeeze-and-excitation written with Linear layers and views (SENet's reference code)."""

    def __init__(self, channels, reduction=2):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


def conv(c_in=3, c_out=6, kernel=3, *args, **kwargs):
    return nn.Conv2d(c_in, c_out, kernel, *args, **kwargs)


def _gate(s, x):
    y = s.c(x)
    return y * torch.sigmoid(s.se(y.mean([2, 3], keepdim=True)))


def _slices(s, x):
    y = s.c(x)
    return torch.cat([y[:, y.size(1) // 3:], y[:, :2, :, :]], 1)


def _crops(s, x):
    y = s.c(x)
    a = y[:, :, 1:-1, 1:]
    b = y[..., 2:, : y.size(3) - 1]
    c = y[:, :, :-2][:, :, :, 1:]  # a crop of H, then one of W
    return torch.cat([a, b, c, y[:, :, :, :][:, :, 1:-1, :-1]], 1)


def _functional_activations(s, x):
    x = F.relu6(torch.relu(F.gelu(s.c(x), approximate="tanh")))
    x = F.hardswish(F.silu(F.elu(F.leaky_relu(x, 0.3), 0.5)))
    return F.softmax(torch.tanh(F.hardsigmoid(x)).clamp(0, 6).sigmoid(), dim=1)


# name -> (forward(self, x), the layers (a factory: built when the test runs), input shape)
FORMS = {
    "view(size(0), -1) and Linear": (
        lambda s, x: s.fc(F.relu(s.c(x)).view(x.size(0), -1)),
        lambda: dict(c=conv(3, 4, 3), fc=nn.Linear(4 * 6 * 6, 5)), (3, 8, 8)),
    "reshape(shape[0], -1)": (
        lambda s, x: s.fc(s.c(x).reshape(x.shape[0], -1)),
        lambda: dict(c=conv(3, 4, 3), fc=nn.Linear(4 * 6 * 6, 5)), (3, 8, 8)),
    "torch.flatten and x.flatten": (
        lambda s, x: s.fc(torch.flatten(s.c(x), 1)) + s.fc2(s.c2(x).flatten(1)),
        lambda: dict(c=conv(3, 2, 3), c2=conv(3, 2, 3), fc=nn.Linear(72, 5), fc2=nn.Linear(72, 5)), (3, 8, 8)),
    "x.mean((2, 3))": (
        lambda s, x: s.fc(s.c(x).mean((2, 3))),
        lambda: dict(c=conv(), fc=nn.Linear(6, 4)), (3, 7, 7)),
    "mean([2, 3], keepdim=True) gate": (_gate, lambda: dict(c=conv(), se=conv(6, 6, 1)), (3, 7, 7)),
    "squeeze-and-excitation with Linear, view and expand_as": (
        lambda s, x: s.se(s.c(x)), lambda: dict(c=conv(), se=LinearSqueezeExcitation(6)), (3, 7, 7)),
    "torch.amax over H and W": (lambda s, x: torch.amax(s.c(x), dim=(-2, -1)), lambda: dict(c=conv()), (3, 7, 7)),
    "F.adaptive_avg_pool2d": (
        lambda s, x: torch.flatten(F.adaptive_avg_pool2d(s.c(x), (2, 3)), 1), lambda: dict(c=conv()), (3, 9, 9)),
    "F.adaptive_max_pool2d(1)": (lambda s, x: F.adaptive_max_pool2d(s.c(x), 1), lambda: dict(c=conv()), (3, 7, 7)),
    "torch.cat, +, *, torch.add": (
        lambda s, x: torch.cat([s.a(x) + s.b(x), torch.add(s.a2(x), s.b2(x)) * s.c(x)], 1),
        lambda: dict(a=conv(), b=conv(), a2=conv(), b2=conv(), c=conv()), (3, 6, 6)),
    "torch.chunk and split on dim 1": (lambda s, x: s.split(x), lambda: dict(split=Split()), (3, 6, 6)),
    "x[:, a:b]": (_slices, lambda: dict(c=conv()), (3, 6, 6)),
    "x[:, :, a:b, c:d]": (_crops, lambda: dict(c=conv()), (3, 8, 9)),
    "negative padding crops": (  # nn.ZeroPad2d and F.pad take (left, right, top, bottom)
        lambda s, x: F.pad(s.c(s.crop(x)), (2, -1, -1, 0)), lambda: dict(crop=nn.ZeroPad2d((-1, -2, 0, -1)), c=conv()),
        (3, 8, 9)),
    "channel shuffle view/transpose/view": (
        lambda s, x: s.shuffle(s.c(x)), lambda: dict(c=conv(), shuffle=ChannelShuffle()), (3, 5, 5)),
    "nn.ChannelShuffle": (lambda s, x: s.shuffle(s.c(x)), lambda: dict(c=conv(), shuffle=nn.ChannelShuffle(3)),
                          (3, 5, 5)),
    "permute -> LayerNorm/Linear -> permute, layer scale": (
        lambda s, x: s.block(s.c(x)), lambda: dict(c=conv(3, 8, 1), block=LayerScaleBlock(8)), (3, 6, 6)),
    "channels-last layer scale (C,)": (
        lambda s, x: s.block(s.c(x)), lambda: dict(c=conv(3, 4, 1), block=ChannelsLastScale(4)), (3, 5, 5)),
    "activations as modules": (
        lambda s, x: s.acts(s.c(x)),
        lambda: dict(c=conv(), acts=nn.Sequential(
            nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(0.2), nn.ELU(0.7), nn.SiLU(), nn.Hardswish(), nn.Hardsigmoid(),
            nn.GELU(approximate="tanh"), nn.GELU(), nn.Sigmoid(), nn.Tanh(), nn.Hardtanh(0, 6), nn.PReLU(6),
            nn.Softmax(dim=1))), (3, 5, 5)),
    "activations as functions": (_functional_activations, lambda: dict(c=conv()), (3, 5, 5)),
    "conv options": (
        lambda s, x: s.c4(s.c3(s.c2(s.c1(x)))),
        lambda: dict(c1=conv(3, 6, 4, padding="same"), c2=conv(6, 6, 3, stride=2, padding=2, dilation=2, groups=3),
                     c3=conv(6, 4, (3, 1), padding=(1, 0), bias=False), c4=conv(4, 4, 3, padding="valid", groups=4)),
        (3, 9, 9)),
    "F.conv2d and F.linear with parameters": (
        lambda s, x: F.linear(F.conv2d(x, s.w, s.b, padding=1).flatten(1), s.fw),
        lambda: dict(w=nn.Parameter(torch.randn(4, 3, 3, 3)), b=nn.Parameter(torch.randn(4)),
                     fw=nn.Parameter(torch.randn(5, 4 * 5 * 5))), (3, 5, 5)),
    "BatchNorm affine and not, BatchNorm1d": (
        lambda s, x: s.bn3(s.fc(torch.flatten(s.bn2(s.bn(s.c(x))), 1))),
        lambda: dict(c=conv(3, 6, 1), bn=nn.BatchNorm2d(6), bn2=nn.BatchNorm2d(6, affine=False),
                     fc=nn.Linear(6 * 25, 7), bn3=nn.BatchNorm1d(7, eps=1e-3, momentum=0.3)), (3, 5, 5)),
    "pools": (
        lambda s, x: s.p4(s.p3(s.p2(s.p1(s.c(x))))),
        lambda: dict(c=conv(), p1=nn.MaxPool2d(3, 2, 1, ceil_mode=True),
                     p2=nn.AvgPool2d(3, 1, 1, count_include_pad=False), p3=nn.AvgPool2d(2, ceil_mode=True),
                     p4=nn.AdaptiveAvgPool2d((2, 1))), (3, 11, 11)),
    "functional pools": (
        lambda s, x: F.avg_pool2d(F.max_pool2d(s.c(x), 2, ceil_mode=True), 3, stride=1, padding=1),
        lambda: dict(c=conv()), (3, 9, 9)),
    "padding": (
        lambda s, x: F.pad(s.c(s.pad(x)), (1, 0, 2, 1)), lambda: dict(pad=nn.ZeroPad2d((0, 1, 1, 0)), c=conv()),
        (3, 6, 6)),
    "dropout and Identity": (
        lambda s, x: F.dropout(s.i(s.d(s.c(x))), 0.3, s.training),
        lambda: dict(c=conv(), d=nn.Dropout(0.2), i=nn.Identity()), (3, 5, 5)),
    "LayerNorm and Softmax on flat features": (
        lambda s, x: s.sm(s.ln(s.fc(torch.flatten(x, 1)))),
        lambda: dict(fc=nn.Linear(27, 6), ln=nn.LayerNorm(6), sm=nn.Softmax(dim=-1)), (3, 3, 3)),
}


def form_module(name: str) -> nn.Module:
    forward, layers, _ = FORMS[name]
    torch.manual_seed(0)
    return Lambda(forward, **layers())


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # PyTorch's note on its own speed
@pytest.mark.parametrize("form", list(FORMS))
def test_form_reproduces_the_module(form):
    module = form_module(form)
    shape = FORMS[form][2]
    with torch.no_grad():  # non-trivial statistics and slopes
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(0.05, 0.45)
    x = batch(shape)
    expected = run_module(module, x)
    imported = import_model(module, shape)
    assert relative_error(run_spec(imported, x), expected) <= EXACT
    assert imported.spec.infer().parameters == sum(p.numel() for p in module.parameters())


def test_stochastic_depth_is_drop_path():
    ops = pytest.importorskip("torchvision.ops", reason="torchvision is not installed")
    module = nn.Sequential(conv(), ops.StochasticDepth(0.25, "row"))
    imported = import_model(module, (3, 5, 5))
    assert [(r.kind, getattr(r.layer, "p", None)) for r in imported.spec.infer().leaves()] == [
        ("conv2d", None), ("drop_path", 0.25)]
    with pytest.raises(TorchImportError, match=r"fx node '_1'.*StochasticDepth.*mode 'batch'"):
        import_model(nn.Sequential(conv(), ops.StochasticDepth(0.25, "batch")), (3, 5, 5))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_kinds_and_fields_of_the_forms():
    leaves = import_model(form_module("activations as modules"), (3, 5, 5)).spec.infer().leaves()
    assert [r.layer.describe() for r in leaves] == [
        "conv2d 6@3x3", "relu", "relu6", "leaky_relu 0.2", "elu 0.7", "silu", "hardswish", "hardsigmoid",
        "gelu (tanh)", "gelu", "sigmoid", "tanh", "relu6", "prelu", "softmax"]
    leaves = import_model(form_module("conv options"), (3, 9, 9)).spec.infer().leaves()
    # PyTorch's 'same' for an even kernel pads the odd pixel after (bottom, right)
    assert leaves[0].layer.padding == (1, 2, 1, 2)
    assert (leaves[1].layer.dilation, leaves[1].layer.groups, leaves[1].layer.stride) == ((2, 2), 3, (2, 2))
    assert leaves[2].layer.bias is False
    leaves = import_model(form_module("BatchNorm affine and not, BatchNorm1d"), (3, 5, 5)).spec.infer().leaves()
    norms = [r.layer for r in leaves if r.kind == "batchnorm"]
    assert [(n.scale, n.center, n.eps, n.momentum) for n in norms] == [
        (True, True, 1e-5, 0.1), (False, False, 1e-5, 0.1), (True, True, 1e-3, 0.3)]
    rows = import_model(form_module("squeeze-and-excitation with Linear, view and expand_as"), (3, 7, 7)).spec.infer()
    gate = rows.row("blocks[1].branches[1]")
    assert [(r.layer.describe(), r.output_shape) for r in rows.leaves() if r.path.startswith(gate.path)] == [
        ("global_avgpool keepdims", (6, 1, 1)), ("conv2d 3@1x1 no bias", (3, 1, 1)), ("relu", (3, 1, 1)),
        ("conv2d 6@1x1", (6, 1, 1)), ("sigmoid", (6, 1, 1))]
    kinds = [r.kind for r in import_model(form_module("channel shuffle view/transpose/view"),
                                          (3, 5, 5)).spec.infer().leaves()]
    assert kinds == ["conv2d", "channel_shuffle"]
    spec = import_model(form_module("torch.chunk and split on dim 1"), (3, 6, 6)).spec
    slices = [(r.layer.start, r.layer.stop) for r in spec.infer().leaves() if r.kind == "channel_slice"]
    assert sorted(slices) == [(0, 1), (0, 3), (1, 4), (3, 6)]
    spec = import_model(form_module("x[:, :, a:b, c:d]"), (3, 8, 9)).spec
    assert [r.layer.crops for r in spec.infer().leaves() if r.kind == "crop2d"] == [
        (1, 1, 1, 0), (2, 0, 0, 1), (0, 2, 0, 0), (0, 0, 1, 0), (1, 1, 0, 1)]  # x[:, :, :, :] is x
    rows = import_model(form_module("negative padding crops"), (3, 8, 9)).spec.infer().leaves()
    assert [(r.kind, r.layer.name, getattr(r.layer, "crops", getattr(r.layer, "pads", None))) for r in rows] == [
        ("crop2d", "crop", (0, 1, 1, 2)), ("conv2d", "c", (0, 0, 0, 0)), ("pad2d", "pad", (0, 0, 2, 0)),
        ("crop2d", "pad/crop", (1, 0, 0, 1))]


def test_imported_weights_are_the_modules():
    module = form_module("permute -> LayerNorm/Linear -> permute, layer scale")
    imported = import_model(module, (3, 6, 6))
    weights = list(imported.weights.values())
    # state_dict order: c, block.gamma, block.dw, block.norm, block.up, block.down
    state = [v.numpy() for v in module.state_dict().values()]
    assert len(weights) == len(state)
    for ours, theirs in zip(weights, state):
        assert np.array_equal(ours.reshape(-1), theirs.reshape(-1))
    # the Linear over channels-last pixels is a 1x1 convolution with the (out, in) weight as (out, in, 1, 1)
    up = next(r for r in imported.spec.infer().leaves() if r.layer.name == "block.up")
    assert up.kind == "conv2d" and up.layer.kernel == (1, 1) and up.output_shape == (16, 6, 6)
    np.testing.assert_array_equal(imported.weights[f"{up.path}.weight"],
                                  module.block.up.weight.detach().numpy().reshape(16, 8, 1, 1))


def test_weights_follow_the_state_dict_when_it_differs_from_execution_order():
    class HeadFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4 * 3 * 3, 2)  # registered first, runs last
            self.body = nn.Sequential(conv(3, 4, 3), nn.BatchNorm2d(4))

        def forward(self, x):
            return self.head(torch.flatten(self.body(x), 1))

    module = HeadFirst()
    imported = import_model(module, (3, 5, 5))
    (top,) = imported.spec.blocks
    assert isinstance(top, Sequence) and top.parameter_order == (2, 3, 0, 1)
    assert [layer.name for layer in top.layers] == ["body.0", "body.1", "flatten", "head"]
    state = [v.numpy() for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert [w.shape for w in imported.weights.values()] == [a.shape for a in state]
    assert all(np.array_equal(w, a) for w, a in zip(imported.weights.values(), state))
    x = batch((3, 5, 5))
    assert relative_error(run_spec(imported, x), run_module(module, x)) <= EXACT


def test_training_mode_is_restored():
    module = nn.Sequential(conv(), nn.BatchNorm2d(6), nn.Dropout(0.5))
    module.train()
    import_model(module, (3, 5, 5))
    assert module.training and all(m.training for m in module.modules())


def test_runner_gives_each_layer_by_its_spec_name():
    module = form_module("permute -> LayerNorm/Linear -> permute, layer scale")
    imported = import_model(module, (3, 6, 6))
    x = batch((3, 6, 6))
    backend = get_backend("torch")
    model = backend.build(imported.spec)
    backend.set_weights(model, imported.weights)
    ours = backend.forward_layers(model, x)
    theirs = imported.runner.layers(x)
    rows = [r for r in imported.spec.infer().rows if r.layer.name]
    assert {r.layer.name for r in rows} <= set(theirs)
    for row in rows:
        assert relative_error(ours[row.path], theirs[row.layer.name]) <= EXACT, row.layer.name
    assert relative_error(imported.runner.forward(x), run_module(module, x)) == 0


# ---------------------------------------------------------------------------------------
# Refusals: named, with the line
# ---------------------------------------------------------------------------------------

def refuse(module, shape=(3, 6, 6)) -> str:
    with pytest.raises(TorchImportError) as info:
        import_model(module, shape)
    return str(info.value)


REFUSED = {
    "an unsupported module": (nn.Sequential(conv(), nn.Upsample(scale_factor=2)),
                              r"fx node '_1' \(call_module 1 \(Upsample\)\).*torch\.nn\.modules\.upsampling\.Upsample "
                              r"is not a layer.*maps these modules: AdaptiveAvgPool2d.*Conv2d"),
    "reflect padding": (nn.Sequential(conv(3, 4, 3, padding=1, padding_mode="reflect")),
                        r"fx node '_0'.*padding_mode='reflect'.*zeros only"),
    "batch statistics in eval": (nn.Sequential(conv(), nn.BatchNorm2d(6, track_running_stats=False)),
                                 r"fx node '_1'.*track_running_stats=False"),
    "a shared PReLU slope": (nn.Sequential(conv(), nn.PReLU()), r"fx node '_1'.*PReLU with 1 slope.*6 channels.*"
                                                                 r"refused rather than copied"),
    "Dropout2d": (nn.Sequential(conv(), nn.Dropout2d(0.1)), r"fx node '_1'.*Dropout2d.*whole channels"),
    "dilated max pooling": (nn.Sequential(conv(), nn.MaxPool2d(2, dilation=2)), r"fx node '_1'.*dilation=2"),
    "a module called twice": (Lambda(lambda s, x: s.c(s.c(x)), c=conv(3, 3, 1)),
                              r"fx node 'c_1'.*c\.weight is used again.*tied weights"),
    "a layer norm over W": (Lambda(lambda s, x: s.ln(x), ln=nn.LayerNorm(6)), r"fx node 'ln'.*over the W axis"),
    "a view back to (F, 1, 1) of features that were not (F, 1, 1)": (
        Lambda(lambda s, x: s.c(x) * s.fc(torch.flatten(x, 1)).view(x.size(0), 6, 1, 1), c=conv(),
               fc=nn.Linear(3 * 6 * 6, 6)),
        r"fx node 'view' \(call_method Tensor\.view\).*a view of flat features back to \(6, 1, 1\) after flatten "
        r"'flatten'; the importer restates only dense, activation"),
    "Linear over W": (Lambda(lambda s, x: s.fc(x), fc=nn.Linear(6, 4)), r"fx node 'fc'.*mixes positions along W"),
    "a strided slice of H": (Lambda(lambda s, x: s.c(x)[:, :, ::2], c=conv()),
                             r"fx node 'getitem'.*indexing with.*x\[:, :, a:b, c:d\] \(a crop of H and W\) only"),
    "a slice of channels and H at once": (Lambda(lambda s, x: s.c(x)[:, 1:3, 1:], c=conv()),
                                          r"fx node 'getitem'.*indexing with"),
    "a crop that leaves nothing": (Lambda(lambda s, x: s.c(x)[:, :, 3:3], c=conv()),
                                   r"fx node 'getitem'.*rows 3:3 and columns 0:4 of a 4x4 map leave nothing"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refusals_name_the_node(case):
    module, pattern = REFUSED[case]
    assert re.search(pattern, refuse(module)), refuse(module)


def test_frozen_batchnorm_is_refused_with_the_reason():
    ops = pytest.importorskip("torchvision.ops", reason="torchvision is not installed")
    message = refuse(nn.Sequential(conv(), ops.FrozenBatchNorm2d(6)))
    assert re.search(r"fx node '_1' \(call_module 1 \(FrozenBatchNorm2d\)\).*trains gamma and beta", message)


def test_functional_refusals_give_the_source_line():
    message = refuse(Lambda(lambda s, x: torch.sigmoid(s.c(x)) * 0.5, c=conv()))
    assert re.search(r"fx node 'mul' \(call_function operator\.mul\) at .*test_import_torch\.py:\d+ in <lambda>: "
                     r".*mul of a tensor and the number 0\.5", message), message
    message = refuse(Lambda(lambda s, x: s.c(x).view(-1, 6), c=conv()))
    assert "fx node 'view' (call_method Tensor.view)" in message and "changes the batch size" in message
    message = refuse(Lambda(lambda s, x: F.interpolate(s.c(x), scale_factor=2.0), c=conv()))
    assert re.search(r"torch\.nn\.functional\.interpolate is not an operation the importer maps; it maps functions "
                     r".*torch\.cat.*tensor methods .*view", message), message
    message = refuse(Lambda(lambda s, x: s.c(x) + s.bias, c=conv(), bias=nn.Parameter(torch.zeros(6, 1, 1))))
    assert "fx node 'add'" in message and "the model's own tensor bias" in message
    message = refuse(Lambda(lambda s, x: F.dropout(s.c(x), 0.5), c=conv()))
    assert "training=True drops even in eval mode" in message


def test_inplace_operation_read_afterwards_is_refused():
    message = refuse(Lambda(lambda s, x: (lambda y: y + F.relu(y, inplace=True))(s.c(x)), c=conv()))
    assert re.search(r"fx node 'relu'.*in-place operation on 'c', which fx node 'add' reads afterwards", message)
    # torchvision's pattern (an in-place ReLU on a value nothing else reads) is fine
    import_model(nn.Sequential(conv(), nn.ReLU(inplace=True), conv(6, 4, 1)), (3, 5, 5))


def test_untraceable_model_gives_fx_reason_and_hint():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = conv()

        def forward(self, x):
            x = self.c(x)
            if x.mean() > 0:  # data-dependent control flow
                x = F.relu(x)
            return x

    message = refuse(Dynamic())
    assert re.search(r"torch\.fx cannot trace Dynamic: TraceError: symbolically traced variables cannot be used as "
                     r"inputs to control flow \(at .*test_import_torch\.py:\d+ in forward: if x\.mean\(\) > 0:",
                     message)
    assert "Make the branch static" in message and "import the static part of the model" in message


def test_bad_inputs_are_named():
    with pytest.raises(TorchImportError, match="expected a torch.nn.Module"):
        import_model("resnet18", (3, 8, 8))
    with pytest.raises(TorchImportError, match=r"input_shape must be three positive integers \(C, H, W\)"):
        import_model(nn.Sequential(conv()), 32)
    message = refuse(nn.Sequential(conv()), (1, 8, 8))
    assert re.search(r"does not run on an input of shape \(1, 1, 8, 8\): fx node '_0' \(call_module 0 \(Conv2d\)\): "
                     r"RuntimeError: .*expected input\[1, 1, 8, 8\] to have 3 channels", message), message
    message = refuse(Lambda(lambda s, x: (s.c(x), x), c=conv()))
    assert "the model returns a tuple of 2" in message and "one tensor" in message


# ---------------------------------------------------------------------------------------
# netparity import's sources: torchvision:NAME and FILE.py:FACTORY
# ---------------------------------------------------------------------------------------

def test_torchvision_source_imports_and_checks_itself():
    pytest.importorskip("torchvision", reason="torchvision is not installed")
    from netparity.backends.importing import import_source, self_check

    imported = import_source("torchvision:squeezenet1_1", input_size=49, name="squeeze")
    assert imported.spec.name == "squeeze" and imported.spec.input_shape == (3, 49, 49)
    assert imported.source == "torchvision:squeezenet1_1" and imported.source_framework == "torch"
    check = self_check(imported)
    assert check.ok and check.source_ran, check


def test_torchvision_source_errors_are_named():
    pytest.importorskip("torchvision", reason="torchvision is not installed")
    from netparity.backends.importing import ImportSourceError, import_source

    with pytest.raises(ImportSourceError, match=r"has no model 'resnet81' \(did you mean resnet18"):
        import_source("torchvision:resnet81")
    with pytest.raises(ImportSourceError, match=r"input 60x60 is smaller than the 75x75 torchvision states"):
        import_source("torchvision:inception_v3", input_size=60)


FACTORY = '''
import torch.nn as nn

def build_model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))
'''


def test_factory_source(tmp_path):
    from netparity.backends.importing import ImportSourceError, import_source, self_check

    path = tmp_path / "small_torch_model.py"
    path.write_text(FACTORY)
    imported = import_source(f"{path}:build_model", input_size=12)  # channels from the first Conv2d
    assert imported.spec.input_shape == (1, 12, 12)
    assert [r.kind for r in imported.spec.infer().leaves()] == ["conv2d", "batchnorm", "activation",
                                                                "global_avgpool", "dense"]
    assert self_check(imported).ok
    with pytest.raises(ImportSourceError, match="does not state its input size; give --input-size"):
        import_source(f"{path}:build_model")


def test_a_graph_the_blocks_cannot_state_is_refused_by_layer_name():
    class Crossed(nn.Module):
        """a and b each feed two merges that do not nest: not series-parallel."""

        def __init__(self):
            super().__init__()
            self.a, self.b = conv(3, 4, 1), conv(3, 4, 1)

        def forward(self, x):
            a, b = self.a(x), self.b(x)
            return torch.cat([a + b, a * b], 1)

    message = refuse(Crossed())
    assert re.search(r"the traced graph of Crossed cannot be written as the spec's blocks: node '(a|b)': the graph is "
                     r"not series-parallel", message), message
