"""Execution modes and precisions of the backends (``build(..., execution=, precision=)``).

They change how a network runs, never which function it computes: a float32 execution
mode gives the plain model's outputs and training losses to float32 rounding; bfloat16 /
float16 give them to their own precision. ``forward_layers`` and ``input_gradient`` always
run the eager float32 network, so parity checks are unaffected. Speeds are never asserted.
"""

from __future__ import annotations

import numpy as np
import pytest

from netparity.backends import BACKEND_NAMES, available, get_backend
from netparity.backends.common import BackendError
from netparity.spec import Conv2d, Dense, Flatten, Spec, init_weights, zoo

INSTALLED = available()
# The tolerance of each precision on lenet_bn's logits (max |difference| / max |plain|):
# bfloat16 keeps 8 bits of mantissa (relative rounding 2^-8 = 4e-3 per op), float16 11.
TOLERANCE = {"float32": 1e-5, "bfloat16": 5e-2, "float16": 1e-2}
SLOW_EXECUTIONS = {"compile"}  # torch.compile takes ~10 s per model: one tiny model below


def _problem(spec, batch: int = 8):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, *spec.input_shape)).astype(np.float32)
    y = (np.arange(batch) % spec.infer().output_shape[0]).astype(np.int64)
    return x, y


def _run(backend, spec, weights, x, y, steps: int = 3, **options):
    model = backend.build(spec, **options)
    backend.set_weights(model, weights)
    out = backend.forward(model, x)
    optimizer = backend.make_optimizer(model, lr=0.1, momentum=0.9)
    losses = [backend.train_step(model, optimizer, x, y) for _ in range(steps)]
    return model, out, np.array(losses)


def _cases():
    for name in BACKEND_NAMES:
        if name not in INSTALLED:
            yield pytest.param(name, None, None, marks=pytest.mark.skip(reason=f"{name} is not installed"))
            continue
        backend = get_backend(name)
        for execution in backend.EXECUTIONS:
            for precision in backend.PRECISIONS:
                if (execution, precision) != ("plain", "float32") and execution not in SLOW_EXECUTIONS:
                    yield pytest.param(name, execution, precision, id=f"{name}-{execution}-{precision}")


@pytest.mark.parametrize("name, execution, precision", list(_cases()))
def test_options_compute_the_same_function(name, execution, precision):
    backend = get_backend(name)
    spec = zoo.get("lenet_bn")
    weights = init_weights(spec.infer(), seed=0)
    x, y = _problem(spec)
    _, plain_out, plain_losses = _run(backend, spec, weights, x, y)
    model, out, losses = _run(backend, spec, weights, x, y, execution=execution, precision=precision)
    assert out.dtype == np.float32 and out.shape == plain_out.shape
    scale = np.abs(plain_out).max()
    assert np.abs(out - plain_out).max() <= TOLERANCE[precision] * scale
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]  # it trains
    assert np.abs(losses - plain_losses).max() <= TOLERANCE[precision] * 10 * plain_losses.max()
    if precision != "float32":  # and it really ran in low precision: not bitwise float32
        assert np.abs(out - plain_out).max() > 1e-6 * scale
    # the parity paths run the eager float32 network whatever the options
    layers = backend.forward_layers(model, x)
    final = layers[f"blocks[{len(spec.blocks) - 1}]"]
    assert final.dtype == np.float32
    assert backend.peak_device_memory_mb("cpu") is None


@pytest.mark.skipif("torch" not in INSTALLED, reason="PyTorch is not installed")
def test_torch_compile_runs_the_same_function():
    backend = get_backend("torch")
    spec = Spec("tiny", (1, 6, 6), (Conv2d(2, 3), Flatten(), Dense(3)))
    weights = init_weights(spec.infer(), seed=0)
    x, y = _problem(spec, batch=4)
    _, plain_out, plain_losses = _run(backend, spec, weights, x, y)
    _, out, losses = _run(backend, spec, weights, x, y, execution="compile")
    np.testing.assert_allclose(out, plain_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-5)


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_unknown_options_are_refused_with_the_choices(name):
    if name not in INSTALLED:
        pytest.skip(f"{name} is not installed")
    backend = get_backend(name)
    spec = zoo.get("lenet")
    with pytest.raises(BackendError, match=rf"{name}: unknown execution 'sideways'.*'plain'"):
        backend.build(spec, execution="sideways")
    with pytest.raises(BackendError, match=rf"{name}: unknown precision 'float8'"):
        backend.build(spec, precision="float8")
    for precision in ("bfloat16", "float16"):
        if precision not in backend.PRECISIONS:
            with pytest.raises(BackendError, match=rf"precision '{precision}' is not supported"):
                backend.build(spec, precision=precision)
    assert list(backend.EXECUTIONS)[0] == "plain" and list(backend.PRECISIONS)[0] == "float32"


@pytest.mark.skipif("mxnet" not in INSTALLED, reason="MXNet is not installed")
def test_mxnet_refuses_a_hybridized_lockstep_model():
    backend = get_backend("mxnet")
    with pytest.raises(BackendError, match="lockstep_dropout=True cannot be hybridized"):
        backend.build(zoo.get("alexnet"), lockstep_dropout=True, execution="hybrid")
