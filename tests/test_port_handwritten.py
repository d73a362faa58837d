"""verify_port on hand-written d2l ports (tests/ports/handwritten.py): ResNet-18 and GoogLeNet
written idiomatically in PyTorch, MXNet Gluon and Keras 3, at 1x32x32, batch 2.

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
    from ports import handwritten
    from netparity.compare.native import set_canonical_weights, trace
    from netparity.compare.port import verify_port

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
