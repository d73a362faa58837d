"""verify_port on hand-written d2l ports (tests/ports/handwritten.py): ResNet-18 and GoogLeNet
written idiomatically in PyTorch, MXNet Gluon and Keras 3, at 1x32x32, batch 2.

- every ordered framework pair of hand-written models is equivalent (the reference first gets
  seeded non-trivial weights: random biases, BatchNorm statistics away from 0/1);
- the zoo spec ("resnet18" / "googlenet" at 32 px) is equivalent to each hand-written port.

Known verify_port limitation (compare/native.py, PyTorch tracer): a traced layer's output is kept
as ``tensor.detach().float().cpu().numpy()``, a view of the live tensor, not a copy; d2l's PyTorch
``Residual`` does ``Y += X`` after ``Y = self.bn2(...)``, so bn2's recorded output becomes
bn2 + shortcut and every bn2 "diverges" although the final outputs agree. Those cases are
strict xfails; the same port with ``Y = Y + X`` (``torch_resnet18_out_of_place``) is the control.
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

INPLACE_ADD = ("PyTorch tracer keeps layer outputs as NumPy views of live tensors (compare/native.py "
               "_trace_torch post hook: detach().float().cpu().numpy(), no copy): d2l's in-place `Y += X` "
               "after bn2 overwrites bn2's recorded output with bn2 + shortcut, so every residual bn2 "
               "'diverges' while the final outputs agree")




class InplaceAddSymptom(AssertionError):
    """Exactly the tracer's in-place symptom: every PyTorch Residual bn2 differs, nothing else does."""


def _xfail_inplace(name, *frameworks):
    if name == "resnet18" and "torch" in frameworks:
        return [pytest.mark.xfail(strict=True, raises=InplaceAddSymptom, reason=INPLACE_ADD)]
    return []


def _raise_if_inplace_symptom(report):
    """Raise InplaceAddSymptom only for that exact pattern, so an xfail cannot hide another failure."""
    if report.equivalent or report.alignment_error or not report.weights_copied:
        return
    # the hand-written PyTorch side names them "<stage>.<unit>.bn2"
    torch_names = [row.candidate_name if report.candidate_framework == "torch" else row.reference_name
                   for row in report.layers]
    bn2 = {row.index for row, torch_name in zip(report.layers, torch_names) if torch_name.endswith(".bn2")}
    differs = {row.index for row in report.layers if not row.ok}
    if len(bn2) == 8 and differs == bn2 and not report.output_diverging_inputs:
        raise InplaceAddSymptom(f"bn2 layers {sorted(bn2)} differ, final output agrees "
                                f"(max rel {report.output_max_rel:.1e})")


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
    _raise_if_inplace_symptom(report)
    assert report.alignment_error is None, report.summary()
    assert len(report.layers) == ALIGNED[name], report.summary()
    assert report.weights_copied
    assert report.equivalent, report.summary()


PAIRS = [pytest.param(name, a, b, marks=_xfail_inplace(name, a, b), id=f"{name}-{a}->{b}")
         for name in MODELS for a, b in itertools.permutations(FRAMEWORKS, 2)]


@pytest.mark.parametrize("name,source,target", PAIRS)
def test_handwritten_ports_are_equivalent_across_frameworks(models, name, source, target):
    reference, candidate = models(name, source), models(name, target)
    _load_nontrivial(reference, source, seed=FRAMEWORKS.index(source) * 10 + FRAMEWORKS.index(target))
    report = verify_port(reference, candidate, input_shape=SHAPE)
    _check(report, name)


SPEC_CASES = [pytest.param(name, fw, marks=_xfail_inplace(name, fw), id=f"{name}-spec->{fw}")
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
    """The xfails above are the tracer's, not the port's: with `Y = Y + X` the PyTorch port verifies
    against the spec and as candidate of the Gluon and Keras ports."""
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
