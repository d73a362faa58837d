"""verify_port on hand-written d2l ports (tests/ports/handwritten.py): ResNet-18 and GoogLeNet
written idiomatically in PyTorch, MXNet Gluon and Keras 3, at 1x32x32, batch 2; and on small ports
with the modern kinds (tests/ports/modern.py: PReLU, LayerNorm, depthwise, grouped and dilated
convolutions, BatchNorm without learned scale/center), 3x8x8.

- every ordered framework pair of hand-written models is equivalent (the reference first gets
  seeded non-trivial weights: random biases, BatchNorm statistics away from 0/1);
- the zoo spec ("resnet18" / "googlenet" at 32 px) is equivalent to each hand-written port.

d2l's PyTorch ``Residual`` does ``Y += X`` after ``Y = self.bn2(...)``: the tracer must copy each
recorded output, or bn2's record would become bn2 + shortcut (it did, before compare/native.py
copied them). The same port written ``Y = Y + X`` (``torch_resnet18_out_of_place``) is the control.
"""

import itertools

import numpy as np
import pytest

from netparity.backends import available
from netparity.spec import zoo

FRAMEWORKS = ("torch", "mxnet", "keras")
MODELS = ("resnet18", "googlenet")
SIZE = 32
SHAPE = (1, SIZE, SIZE)
# parameterised layers: ResNet-18 stem conv+bn, 8 units x (conv, bn, conv, bn), 3 projections, dense;
# GoogLeNet b1 conv, b2 2 convs, 9 Inception blocks x 6 convs, dense
ALIGNED = {"resnet18": 2 + 8 * 4 + 3 + 1, "googlenet": 1 + 2 + 9 * 6 + 1}

pytestmark = pytest.mark.skipif(set(available()) != set(FRAMEWORKS), reason="needs torch, mxnet and keras")

if set(available()) == set(FRAMEWORKS):
    from ports import handwritten, modern
    from netparity.backends.tracing import set_canonical_weights, trace
    from netparity.compare.port import transfer_weights, verify_port

@pytest.fixture(scope="module")
def models():
    """Each hand-written model built once per module (built on first use)."""
    built = {}

    def get(name, framework):
        if (name, framework) not in built:
            built[name, framework] = handwritten.FACTORIES[name, framework]()
        return built[name, framework]

    return get


def _load_nontrivial(model, framework, seed):
    """Seeded weights like init_weights(nontrivial=True), written through the canonical layout."""
    rng = np.random.default_rng(seed)
    for layer in trace(model, np.zeros((1, *SHAPE), np.float32), framework):
        weights = {}
        for key, shape in layer.weight_shapes().items():
            if layer.kind == "batchnorm" and key in ("weight", "running_var"):
                value = rng.uniform(0.5, 1.5, shape)
            elif key == "weight":
                fan_in = int(np.prod(shape[1:]))
                fan_out = int(shape[0] * np.prod(shape[2:]))
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                value = rng.uniform(-bound, bound, shape)
            else:
                value = rng.uniform(-0.2, 0.2, shape)
            weights[key] = value.astype(np.float32)
        set_canonical_weights(model, layer, weights)


def _check(report, name):
    assert report.alignment_error is None, report.summary()
    assert len(report.layers) == ALIGNED[name], report.summary()
    assert report.weights_copied
    assert report.equivalent, report.summary()


PAIRS = [pytest.param(name, a, b, id=f"{name}-{a}->{b}")
         for name in MODELS for a, b in itertools.permutations(FRAMEWORKS, 2)]


@pytest.mark.parametrize("name,source,target", PAIRS)
def test_handwritten_ports_are_equivalent_across_frameworks(models, name, source, target):
    reference, candidate = models(name, source), models(name, target)
    _load_nontrivial(reference, source, seed=FRAMEWORKS.index(source) * 10 + FRAMEWORKS.index(target))
    report = verify_port(reference, candidate, input_shape=SHAPE)
    _check(report, name)


SPEC_CASES = [pytest.param(name, fw, id=f"{name}-spec->{fw}")
              for name in MODELS for fw in FRAMEWORKS]


@pytest.mark.parametrize("name,framework", SPEC_CASES)
def test_zoo_spec_verifies_against_handwritten_port(models, name, framework):
    spec = zoo.get(name).with_input(SIZE)
    report = verify_port(spec, models(name, framework))
    assert report.reference_framework == framework
    assert tuple(report.input_shape) == SHAPE
    _check(report, name)


@pytest.mark.parametrize("reference", ["spec", "mxnet", "keras"])
def test_out_of_place_residual_control(models, reference):
    """The out-of-place residual verifies like the in-place one (the tracer copies recorded outputs)."""
    candidate = handwritten.torch_resnet18_out_of_place()
    if reference == "spec":
        report = verify_port(zoo.get("resnet18").with_input(SIZE), candidate)
    else:
        source = models("resnet18", reference)
        _load_nontrivial(source, reference, seed=99)
        report = verify_port(source, candidate, input_shape=SHAPE)
    _check(report, "resnet18")


@pytest.mark.parametrize("target", ["mxnet", "keras"])
def test_out_of_place_residual_as_reference(models, target):
    reference = handwritten.torch_resnet18_out_of_place()
    _load_nontrivial(reference, "torch", seed=7)
    _check(verify_port(reference, models("resnet18", target), input_shape=SHAPE), "resnet18")


# ---------------------------------------------------------------------------------------
# the modern kinds: PReLU, LayerNorm, depthwise / grouped / dilated convs, BN without scale
# ---------------------------------------------------------------------------------------

MODERN_KINDS = {"mobile": ["conv2d", "batchnorm", "prelu", "conv2d", "layernorm", "conv2d", "conv2d", "batchnorm",
                           "dense", "layernorm", "prelu", "dense"],
                "convnext": ["conv2d", "layernorm", "conv2d", "layernorm", "dense", "dense", "channel_scale", "dense"]}
MODERN_PAIRS = [pytest.param(name, a, b, id=f"{name}-{a}->{b}")
                for name in MODERN_KINDS for a, b in itertools.permutations(FRAMEWORKS, 2)]


@pytest.mark.parametrize("name,source,target", MODERN_PAIRS)
def test_modern_kinds_transfer_and_verify_across_frameworks(name, source, target):
    """Weights move both ways between every pair, through the canonical layout, and the two are then
    the same function in eval and training mode."""
    reference, candidate = modern.FACTORIES[name, source](), modern.FACTORIES[name, target]()
    modern.load_nontrivial(reference, source, seed=FRAMEWORKS.index(source) * 10 + FRAMEWORKS.index(target))
    report = transfer_weights(reference, candidate, input_shape=modern.SHAPE)
    assert report.alignment_error is None and report.weights_copied, report.summary()
    assert [row.kind for row in report.layers] == MODERN_KINDS[name], report.summary()
    assert report.equivalent and report.training.ok, report.summary()
    x = np.zeros((1, *modern.SHAPE), np.float32)
    for r, c in zip(trace(reference, x, source), trace(candidate, x, target)):
        assert r.weight_shapes() == c.weight_shapes(), (r.name, c.name)
        for key, value in r.weights().items():
            np.testing.assert_array_equal(c.weights()[key], value, err_msg=f"{c.name}.{key}")


def test_keras_native_layouts_of_the_modern_kinds():
    """Depthwise kernel (kh, kw, C, mult) holds output channel c * mult + m of PyTorch's
    (C * mult, 1, kh, kw); a per-channel PReLU alpha is (1, 1, C); LayerNorm gamma/beta (C,)."""
    reference = modern.torch_mobile()
    modern.load_nontrivial(reference, "torch", seed=5)
    candidate = modern.keras_mobile()
    assert transfer_weights(reference, candidate, input_shape=modern.SHAPE).equivalent
    L = modern.L
    depthwise = [layer for layer in candidate.layers if isinstance(layer, L.DepthwiseConv2D)][1]
    kernel, torch_kernel = np.asarray(depthwise.kernel), reference[7].weight.detach().numpy()
    assert kernel.shape == (3, 3, 16, 2) and torch_kernel.shape == (32, 1, 3, 3)
    for c in range(16):
        for m in range(2):
            np.testing.assert_array_equal(kernel[:, :, c, m], torch_kernel[c * 2 + m, 0])
    prelu = [layer for layer in candidate.layers if isinstance(layer, L.PReLU)]
    np.testing.assert_array_equal(np.asarray(prelu[0].alpha), reference[2].weight.detach().numpy().reshape(1, 1, 8))
    np.testing.assert_array_equal(np.asarray(prelu[1].alpha), reference[13].weight.detach().numpy())
    norm = [layer for layer in candidate.layers if isinstance(layer, L.LayerNormalization)][0]
    np.testing.assert_array_equal(np.asarray(norm.gamma), reference[4].weight.detach().numpy())
    np.testing.assert_array_equal(np.asarray(norm.beta), reference[4].bias.detach().numpy())


def test_a_grouped_keras_conv2d_is_the_same_function_as_depthwise():
    reference = modern.torch_mobile()
    modern.load_nontrivial(reference, "torch", seed=6)
    grouped = modern.keras_mobile(grouped=True)
    report = verify_port(reference, grouped, input_shape=modern.SHAPE)
    assert report.equivalent, report.summary()
    assert report.layers[3].candidate_type == "Conv2D" and report.layers[3].shape == [8, 1, 3, 3]


def test_batchnorm_without_learned_scale_or_center():
    """Gluon BatchNorm(scale=False) runs with fix_gamma: the gamma it holds is not a weight of the
    function (MXNet takes 1), so a PyTorch port with affine=True gets gamma 1 and beta 0."""
    reference = modern.gluon_mobile()
    modern.load_nontrivial(reference, "mxnet", seed=8)
    reference[8].gamma.set_data(modern.mx.nd.full((32,), 3.0))  # ignored by MXNet
    layer = trace(reference, np.zeros((1, *modern.SHAPE), np.float32), "mxnet")[7]
    assert layer.kind == "batchnorm" and set(layer.weights()) == {"running_mean", "running_var"}
    assert layer.config["scale"] is False and layer.config["center"] is False
    candidate = modern.torch_mobile(bn_affine=True)
    report = verify_port(reference, candidate, input_shape=modern.SHAPE)
    assert report.equivalent, report.summary()
    assert "the reference has no weight: the candidate's set to 1" in report.layers[7].notes
    np.testing.assert_array_equal(candidate[8].weight.detach().numpy(), np.ones(32, np.float32))


def _reference(factory, framework, seed=11):
    model = factory()
    modern.load_nontrivial(model, framework, seed)
    return model


MODERN_MISTAKES = [
    # id, reference (factory, framework), candidate factory, diagnosis code, aligned index of the first divergence
    # (None: the alignment itself stops there)
    ("layernorm_eps-keras", (modern.torch_mobile, "torch"), lambda: modern.keras_mobile(ln_eps=1e-3),
     "layernorm_eps", 4),
    ("layernorm_eps-from-mxnet", (modern.gluon_mobile, "mxnet"), lambda: modern.keras_mobile(ln_eps=1e-3),
     "layernorm_eps", 4),
    ("prelu_shared-torch", (modern.torch_mobile, "torch"), lambda: modern.torch_mobile(prelu_shared=True),
     "prelu_shared", None),
    ("prelu_shared-keras", (modern.gluon_mobile, "mxnet"), lambda: modern.keras_mobile(prelu="shared"),
     "prelu_shared", None),
    ("prelu_shared-reference", (lambda: modern.gluon_mobile(prelu_shared=True), "mxnet"), modern.torch_mobile,
     "prelu_shared", None),
    ("prelu_per_element-keras", (modern.torch_mobile, "torch"), lambda: modern.keras_mobile(prelu="per_element"),
     "prelu_per_element", None),
    ("conv_groups-torch", (modern.keras_mobile, "keras"), lambda: modern.torch_mobile(plain_conv=True),
     "conv_groups", None),
    ("norm_affine-keras", (lambda: modern.torch_mobile(bn_affine=True), "torch"), modern.keras_mobile,
     "norm_affine", 7),
]


@pytest.mark.parametrize("reference,candidate,code,index", [pytest.param(*case[1:], id=case[0])
                                                            for case in MODERN_MISTAKES])
def test_modern_porting_mistakes_are_diagnosed(reference, candidate, code, index):
    report = verify_port(_reference(*reference), candidate(), input_shape=modern.SHAPE)
    assert not report.equivalent, report.summary()
    assert report.diagnosis_code == code, report.summary()
    if index is None:
        assert report.alignment_error and "shapes differ" in report.alignment_error, report.summary()
    else:
        assert report.first_divergence is not None and report.first_divergence.index == index, report.summary()


SPEC_REFERENCES = [pytest.param(built, port, id=f"spec-{built}->{port}")
                   for built, port in (("torch", "keras"), ("mxnet", "torch"), ("keras", "mxnet"))]


@pytest.mark.parametrize("built,port", SPEC_REFERENCES)
def test_a_spec_with_the_modern_kinds_verifies_against_hand_written_ports(built, port):
    """The reference built from a spec by another framework's backend (its builders for prelu,
    layernorm, depthwise/grouped/dilated conv2d, batchnorm without scale/center)."""
    report = verify_port(modern.mobile_spec(), modern.FACTORIES["mobile", port](), framework=built)
    assert report.reference_framework == built and report.candidate_framework == port
    assert [row.kind for row in report.layers] == MODERN_KINDS["mobile"], report.summary()
    assert report.equivalent and report.training.ok, report.summary()


def test_a_strided_dilated_conv_the_keras_backend_subsamples_is_traced_as_strided():
    """Keras refuses stride > 1 with dilation > 1 in Conv2D; netparity's Keras backend runs the conv at
    stride 1 and keeps every other pixel (Subsample2D). The tracer records that pair as one strided conv."""
    from netparity.spec import Conv2d, Dense, GlobalAvgPool, Spec

    spec = Spec("strided_dilated", (3, 9, 9), (Conv2d(8, 3, padding=1), Conv2d(8, 3, stride=2, padding=2, dilation=2),
                                               GlobalAvgPool(), Dense(5)))
    tnn = modern.tnn
    port = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1), tnn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2),
                          tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(8, 5)).eval()
    report = verify_port(spec, port, framework="keras")
    assert report.equivalent, report.summary()
    assert report.layers[1].notes == [] and report.layers[1].max_abs < 1e-5
