"""torchvision's modern families and InsightFace's MobileFaceNet in the zoo.

Each tv_* spec must be torchvision 0.29's function: the same parameter count, the same
weights in state_dict order, and - with torchvision's own weights moved over by order - the
same eval-mode output in every framework. The numerical checks run at a reduced input size
(the last feature maps are 1x1 or 2x2) so that the module stays fast.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest

from netparity.backends import BACKEND_NAMES, available, get_backend
from netparity.spec import BatchNorm, Conv2d, ChannelScale, Dense, Flatten, GlobalAvgPool, Sequence, Spec, SpecError
from netparity.spec import init_weights, zoo
from netparity.spec.flops import flops
from netparity.spec.weights import weights_from_ordered

from helpers import installed_or_skip

# zoo name -> input size of the numerical check: the smallest 32 px that every model accepts
# (ConvNeXt's 4x4/4 stem and three 2x2/2 downsamples need it), odd sizes where they are cheap
# so that ceil-mode pools (SqueezeNet) and stride-2 convolutions meet odd edges.
REDUCED_SIZE = {
    "tv_mobilenet_v2": 32,
    "tv_mobilenet_v3_small": 33,
    "tv_efficientnet_b0": 32,
    "tv_regnet_y_400mf": 32,
    "tv_convnext_tiny": 32,
    "tv_squeezenet1_1": 49,  # each of the three ceil-mode pools then keeps a partial window
    "tv_shufflenet_v2_x1_0": 37,
    "tv_resnext50_32x4d": 32,
    "tv_densenet121": 32,
}
# torchvision's published num_params (the weights' meta), so the counts are checked without it too
TORCHVISION_PARAMETERS = {
    "tv_mobilenet_v2": 3_504_872,
    "tv_mobilenet_v3_small": 2_542_856,
    "tv_efficientnet_b0": 5_288_548,
    "tv_regnet_y_400mf": 4_344_144,
    "tv_convnext_tiny": 28_589_128,
    "tv_squeezenet1_1": 1_235_496,
    "tv_shufflenet_v2_x1_0": 2_278_604,
    "tv_resnext50_32x4d": 25_028_904,
    "tv_densenet121": 7_978_856,
}
# torchvision's published GFLOPS (the weights' meta "_ops": multiply-adds, 224 px)
TORCHVISION_GMACS = {
    "tv_mobilenet_v2": 0.301,
    "tv_mobilenet_v3_small": 0.057,
    "tv_efficientnet_b0": 0.386,
    "tv_regnet_y_400mf": 0.402,
    "tv_convnext_tiny": 4.456,
    "tv_squeezenet1_1": 0.349,
    "tv_shufflenet_v2_x1_0": 0.145,
    "tv_resnext50_32x4d": 4.23,
    "tv_densenet121": 2.834,
}
MODELS = list(REDUCED_SIZE)
TOLERANCE = 1e-4  # max|a - b| / max|b|


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def squeezed(shape) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


# ---------------------------------------------------------------------------------------
# From the spec alone
# ---------------------------------------------------------------------------------------

def test_every_new_model_is_in_the_zoo():
    assert set(MODELS) | {"mobilefacenet"} <= set(zoo.names())


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_is_torchvisions_published_one(name):
    spec = zoo.get(name)
    assert spec.input_shape == (3, 224, 224)
    inference = spec.infer()
    assert inference.parameters == TORCHVISION_PARAMETERS[name]
    assert inference.output_shape == (1000,)


@pytest.mark.parametrize("name", MODELS)
def test_multiply_adds_are_torchvisions_published_ones(name):
    # an independent check of the structure: every conv's groups, kernel and stride count
    macs = flops(zoo.get(name)).macs_per_image / 1e9
    assert macs == pytest.approx(TORCHVISION_GMACS[name], rel=0.01)


@pytest.mark.parametrize("name", MODELS)
def test_options_change_input_channels_and_classes(name):
    spec = zoo.get(name, in_channels=1, num_classes=10, input_size=REDUCED_SIZE[name])
    assert spec.input_shape[0] == 1 and spec.infer().output_shape == (10,)


def test_stochastic_depth_probabilities_are_torchvisions():
    def drop_paths(name):
        return [r.layer.p for r in zoo.get(name).infer().leaves() if r.kind == "drop_path"]

    # EfficientNet: block k of 16 gets 0.2 * k / 16, only blocks with a residual add keep it
    assert drop_paths("tv_efficientnet_b0") == [0.2 * k / 16 for k in (2, 4, 6, 7, 9, 10, 12, 13, 14)]
    # ConvNeXt: block k of 18 gets 0.1 * k / 17, every block has one
    assert drop_paths("tv_convnext_tiny") == [0.1 * k / 17.0 for k in range(18)]


def test_convnext_layer_scale_comes_first_in_its_block():
    layout = list(zoo.get("tv_convnext_tiny").infer().weight_layout().items())
    first_block = layout[4:13]  # after the stem's conv (weight, bias) and LayerNorm (weight, bias)
    assert first_block[0] == ("blocks[0].layers[1].layers[0].body.layers[5].weight", (96,))
    assert first_block[1][0] == "blocks[0].layers[1].layers[0].body.layers[0].weight"


# ---------------------------------------------------------------------------------------
# weights_from_ordered
# ---------------------------------------------------------------------------------------

def small_spec() -> Spec:
    return Spec("small", (2, 5, 5), (Conv2d(4, 3, bias=False), ChannelScale(), BatchNorm(), GlobalAvgPool(),
                                      Sequence(layers=(Flatten(), Dense(3)))))


def test_weights_from_ordered_reshapes_only_unit_axes():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in [(4, 2, 3, 3), (4, 1, 1), (4,), (4,), (4,), (4,), (3, 4), (3,)]]
    weights = weights_from_ordered(small_spec(), arrays)
    assert list(weights) == list(small_spec().infer().weight_layout())
    assert list(weights_from_ordered(small_spec().infer(), arrays)) == list(weights)  # an Inference works too
    assert weights["blocks[1].weight"].shape == (4,) and weights["blocks[1].weight"].dtype == np.float32
    np.testing.assert_array_equal(weights["blocks[1].weight"], arrays[1].reshape(4).astype(np.float32))
    # a Linear (out, in) into a 1x1 conv (out, in, 1, 1)
    conv = Spec("conv1x1", (6, 2, 2), (Conv2d(3, 1),))
    moved = weights_from_ordered(conv, [np.ones((3, 6)), np.zeros(3)])
    assert moved["blocks[0].weight"].shape == (3, 6, 1, 1)


def test_weights_from_ordered_names_the_first_misfit():
    rng = np.random.default_rng(0)
    shapes = [(4, 2, 3, 3), (4,), (4,), (4,), (4,), (4,), (3, 4), (3,)]
    arrays = [rng.standard_normal(s) for s in shapes]
    wrong = list(arrays)
    wrong[6] = rng.standard_normal((4, 3))  # transposed: same size, other axes
    with pytest.raises(SpecError, match=r"blocks\[4\]\.layers\[1\]\.weight.*\(3, 4\).*array 6.*\(4, 3\)"):
        weights_from_ordered(small_spec(), wrong)
    with pytest.raises(SpecError, match=r"blocks\[4\]\.layers\[1\]\.bias.*\(3,\).*7 arrays"):
        weights_from_ordered(small_spec(), arrays[:7])
    with pytest.raises(SpecError, match=r"9 arrays for 8.*array 8 \(shape \(2,\)\)"):
        weights_from_ordered(small_spec(), [*arrays, np.zeros(2)])


# ---------------------------------------------------------------------------------------
# Against torchvision itself
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchvisionCase:
    parameters: int  # trainable
    running_stats: int
    state: list  # (key, array) of the state_dict without num_batches_tracked
    spec: Spec  # at the reduced size
    weights: dict  # canonical, by order from the state
    x: np.ndarray
    expected: np.ndarray  # torchvision's eval-mode output


def randomize_statistics(model, size: int, torch) -> None:
    """BatchNorm statistics that matter: measured on a random batch at the input size, then
    scaled and shifted at random. BN's affine terms, every bias and ConvNeXt's layer scale
    (1e-6 at init, which would hide the whole block) are drawn at random too."""
    generator = torch.Generator().manual_seed(0)

    def uniform(tensor, low, high):
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if key.endswith("layer_scale"):
                uniform(parameter, 0.5, 1.5)
            elif key.endswith("bias"):
                uniform(parameter, -0.1, 0.1)
        for norm in norms:
            uniform(norm.weight, 0.5, 1.5)
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: the statistics of this one batch
        model.train()
        model(torch.randn((4, 3, size, size), generator=generator))
        model.eval()
        for norm in norms:
            norm.momentum = 0.1
            norm.running_var.mul_(torch.rand(norm.running_var.shape, generator=generator) * 0.5 + 0.75).add_(0.05)
            norm.running_mean.add_((torch.rand(norm.running_mean.shape, generator=generator) - 0.5)
                                   * 0.2 * norm.running_var.sqrt())


@lru_cache(maxsize=None)
def torchvision_case(name: str) -> TorchvisionCase:
    """torchvision's model (never pretrained weights: ``weights=None``) with random statistics,
    its weights by order and its output at the reduced size; the model itself is dropped."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    model = torchvision.models.get_model(name[3:], weights=None)
    size = REDUCED_SIZE[name]
    randomize_statistics(model, size, torch)
    state = [(k, v.numpy()) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    spec = zoo.get(name, input_size=size)
    x = np.random.default_rng(1).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    return TorchvisionCase(
        parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        running_stats=sum(v.numel() for k, v in model.state_dict().items()
                          if k.endswith(("running_mean", "running_var"))),
        state=state, spec=spec, weights=weights_from_ordered(spec, [array for _, array in state]),
        x=x, expected=expected)


@pytest.fixture(scope="module", autouse=True)
def release_torchvision_cases():
    yield
    torchvision_case.cache_clear()  # ~330 MB of weights: not for the rest of the session


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_equals_torchvisions(name):
    case = torchvision_case(name)
    inference = zoo.get(name).infer()
    assert inference.parameters == case.parameters
    assert inference.running_stats == case.running_stats


@pytest.mark.parametrize("name", MODELS)
def test_weight_order_lines_up_with_the_state_dict(name):
    theirs = torchvision_case(name).state
    ours = list(zoo.get(name).infer().weight_layout().items())
    assert len(ours) == len(theirs)
    for (key, shape), (their_key, array) in zip(ours, theirs):
        assert key.rsplit(".", 1)[1] == their_key.rsplit(".", 1)[1] or their_key.endswith("layer_scale"), (
            key, their_key)
        assert shape == array.shape or squeezed(shape) == squeezed(array.shape), (key, shape, their_key, array.shape)


@pytest.mark.parametrize("framework", BACKEND_NAMES)
@pytest.mark.parametrize("name", MODELS)
def test_torchvision_weights_reproduce_torchvisions_output(name, framework):
    if framework not in available():
        pytest.skip(f"{framework} is not installed")
    case = torchvision_case(name)
    backend = get_backend(framework)
    model = backend.build(case.spec)
    backend.set_weights(model, case.weights)
    out = backend.forward(model, case.x)
    assert out.shape == case.expected.shape
    assert relative_error(out, case.expected) <= TOLERANCE


# ---------------------------------------------------------------------------------------
# MobileFaceNet
# ---------------------------------------------------------------------------------------

def test_mobilefacenet_spec():
    spec = zoo.get("mobilefacenet")
    inference = spec.infer()
    assert spec.input_shape == (3, 112, 112) and inference.output_shape == (128,)
    # counted by hand from Table 1: stem 2688, bottlenecks 841,472, conv_6sep 67,072, GDC 26,112,
    # dense 65,664, and the embedding BatchNorm's 128 betas
    assert inference.parameters == 1_003_136
    assert flops(spec).macs_per_image == pytest.approx(221e6, rel=0.01)  # the paper's 221M MAdds
    last = inference.top_level()[-1]
    assert last.kind == "batchnorm" and not last.layer.scale and last.layer.center
    assert last.parameters == 128 and last.running_stats == 256
    layout = inference.weight_layout()
    assert f"{last.path}.weight" not in layout and layout[f"{last.path}.bias"] == (128,)
    gdc = inference.row("blocks[18].layers[0]")
    assert gdc.input_shape == (512, 7, 7) and gdc.layer.groups == 512 and gdc.output_shape == (512, 1, 1)
    assert sum(r.kind == "prelu" for r in inference.leaves()) == 2 + 2 * 15 + 1


def test_mobilefacenet_agrees_across_frameworks():
    frameworks = installed_or_skip(2)
    spec = zoo.get("mobilefacenet")
    weights = init_weights(spec, seed=4)
    x = np.random.default_rng(2).standard_normal((2, 3, 112, 112)).astype(np.float32)
    outputs = {}
    for framework in frameworks:
        backend = get_backend(framework)
        model = backend.build(spec)
        backend.set_weights(model, weights)
        outputs[framework] = backend.forward(model, x)
        assert outputs[framework].shape == (2, 128)
        # the embedding's BatchNorm has no learned gamma in any framework
        assert backend.parameter_counts(model)["blocks[21]"] == (128, 256), framework
        assert "blocks[21].weight" not in backend.get_weights(model)
    first, *others = frameworks
    for framework in others:
        assert relative_error(outputs[framework], outputs[first]) <= TOLERANCE, (framework, first)
