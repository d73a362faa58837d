"""The hand-written reference networks (netparity.compare.reference): lenet_bn and resnet18 in
PyTorch, MXNet Gluon and Keras 3, written the d2l way, must be the zoo specs' function.

- verify_port(zoo spec, hand-written model) is equivalent layer by layer, with the same layer
  configuration (no notes: eps, momentum, strides, paddings, biases agree) and in training mode
  (BatchNorm batch statistics and running statistics);
- build_reference(..., weights=init_weights(spec)) loads the canonical weights: its eval-mode
  output is netparity's backend forward on the same weights;
- its train step is plain SGD with momentum on the mean cross-entropy: from the same weights, on
  the same batch, its losses are the backend's train_step losses (which follow PyTorch's SGD), they
  fall, and after training the eval-mode outputs still agree (running statistics moved alike);
- unknown names raise ValueError naming them; importing the package imports no framework.

resnet18 runs at 1 x 32 x 32, lenet_bn at its 1 x 28 x 28.
"""

import subprocess
import sys

import numpy as np
import pytest

from netparity.backends import available, get_backend
from netparity.compare.reference import FRAMEWORKS, MODELS, build_reference, has_reference
from netparity.spec import init_weights, zoo

SIZES = {"lenet_bn": 28, "resnet18": 32}
# parameterised layers: lenet_bn 2 convs + 3 dense + 4 BatchNorms; resnet18 stem conv+bn,
# 8 units x (conv, bn, conv, bn), 3 projections, the dense layer
LAYERS = {"lenet_bn": 9, "resnet18": 2 + 8 * 4 + 3 + 1}
BATCH = 8
TRAIN_STEPS = 4
LR, MOMENTUM = 0.005, 0.8

CASES = [pytest.param(framework, model, id=f"{framework}-{model}",
                      marks=pytest.mark.skipif(framework not in available(), reason=f"{framework} not installed"))
         for framework in FRAMEWORKS for model in MODELS]


def _spec(model):
    return zoo.get(model, input_size=SIZES[model])


def _batch(model, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, 1, SIZES[model], SIZES[model])).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int64)
    return x, y


def _backend_model(framework, model, weights):
    backend = get_backend(framework)
    net = backend.build(_spec(model))
    backend.set_weights(net, weights)
    return backend, net


@pytest.mark.parametrize("framework,model", CASES)
def test_reference_is_the_zoo_spec(framework, model):
    from netparity.compare.port import verify_port

    reference = build_reference(framework, model, SIZES[model])
    report = verify_port(_spec(model), reference.model, input_shape=(1, SIZES[model], SIZES[model]),
                         training_step=True)
    assert report.alignment_error is None, report.summary()
    assert report.weights_copied
    assert len(report.layers) == LAYERS[model], report.summary()
    assert [row.notes for row in report.layers] == [[]] * LAYERS[model], report.summary()
    assert report.equivalent, report.summary()
    assert report.training is not None and report.training.meaningful and report.training.ok, report.summary()


@pytest.mark.parametrize("framework,model", CASES)
def test_canonical_weights_give_the_backend_output(framework, model):
    weights = init_weights(_spec(model).infer(), seed=0)
    reference = build_reference(framework, model, SIZES[model], weights=weights)
    backend, net = _backend_model(framework, model, weights)
    x, _ = _batch(model, seed=1)

    out = reference.infer(reference.native_batch(x))
    assert isinstance(out, np.ndarray) and out.shape == (BATCH, 10)
    np.testing.assert_allclose(out, backend.forward(net, x), rtol=0, atol=1e-4)
    # eval mode: BatchNorm uses its running statistics, so a sample's output does not depend on the batch
    np.testing.assert_allclose(reference.infer(reference.native_batch(x[:1])), out[:1], rtol=0, atol=1e-5)
    # without weights the framework's own initialisation stays: the output differs
    fresh = build_reference(framework, model, SIZES[model])
    assert np.abs(fresh.infer(fresh.native_batch(x)) - out).max() > 1e-2


@pytest.mark.parametrize("framework,model", CASES)
def test_train_step_is_sgd_on_the_mean_cross_entropy(framework, model):
    weights = init_weights(_spec(model).infer(), seed=0)
    # not the defaults (lr 0.01, momentum 0.9), so that a train step that drops them shows
    reference = build_reference(framework, model, SIZES[model], weights=weights, lr=LR, momentum=MOMENTUM)
    backend, net = _backend_model(framework, model, weights)
    optimizer = backend.make_optimizer(net, lr=LR, momentum=MOMENTUM)
    x, y = _batch(model, seed=2)
    batch = reference.native_batch(x)
    reference.infer(batch)  # the train step must put the model back in training mode

    losses = [reference.train_step(batch, y) for _ in range(TRAIN_STEPS)]
    expected = [backend.train_step(net, optimizer, x, y) for _ in range(TRAIN_STEPS)]
    assert all(isinstance(loss, float) and np.isfinite(loss) for loss in losses), losses
    # the first loss is before any update; later ones check lr, momentum and the mean reduction
    np.testing.assert_allclose(losses, expected, rtol=1e-3)
    assert losses[-1] < losses[0] - 0.1, losses
    # the weights and the BatchNorm running statistics moved as in the backend
    out = reference.infer(batch)
    assert out.shape == (BATCH, 10)
    np.testing.assert_allclose(out, backend.forward(net, x), rtol=0, atol=1e-3 * max(1.0, np.abs(out).max()))


def test_bad_names_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="'jax'.*torch, mxnet, keras"):
        build_reference("jax", "lenet_bn")
    with pytest.raises(ValueError, match="'vgg11'.*lenet_bn, resnet18"):
        build_reference("torch", "vgg11")
    with pytest.raises(ValueError, match="input_size 32"):
        build_reference("torch", "lenet_bn", input_size=32)
    with pytest.raises(ValueError, match="missing 1 .*blocks\\[0\\].weight"):
        weights = init_weights(zoo.get("lenet_bn").infer(), seed=0)
        del weights["blocks[0].weight"]
        build_reference("torch", "lenet_bn", weights=weights)
    assert has_reference("resnet18") and has_reference("lenet_bn")
    assert not has_reference("resnet34") and not has_reference("googlenet")


def test_importing_the_package_imports_no_framework():
    code = ("import sys, netparity.compare.reference as r; "
            "print(sorted({'torch', 'mxnet', 'keras', 'tensorflow'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
