"""Training in the three backends: the same SGD, loss, dropout masks and checkpoints.

PyTorch's ``torch.optim.SGD`` is the reference semantics (coupled weight decay on
every parameter, lr outside the momentum buffer); MXNet's Trainer and Keras' SGD
are made to follow it (docs/framework-differences.md rows 6, 6b, 7). The tests
check the trajectories step by step against a float64 reference, show that the
naive variants (Keras' decoupled weight_decay, MXNet's momentum left unscaled
after an LR change) would fail the same tolerance, and check lockstep dropout,
exact checkpoint resume, seeding and NaN reporting.
"""

from __future__ import annotations

import numpy as np
import pytest

from netparity.backends.common import BackendError
from netparity.compare.lockstep import draw_dropout_masks, dropout_rows
from netparity.spec import (Activation, BatchNorm, Conv2d, Dense, Dropout, Flatten, Spec, init_weights,
                            zoo)

MODULES = {
    "torch": ("netparity.backends.torch.core", "PyTorch is not installed (pip install 'netparity[torch]')"),
    "mxnet": ("netparity.backends.mxnet.core", "MXNet is not installed (pip install 'netparity[mxnet]')"),
    "keras": ("netparity.backends.keras.core",
              "Keras 3 with TensorFlow is not installed (pip install 'netparity[keras]')"),
}
NAMES = tuple(MODULES)


def backend(name: str):
    module, reason = MODULES[name]
    return pytest.importorskip(module, reason=reason, exc_type=ImportError)


def all_backends() -> dict:
    return {name: backend(name) for name in NAMES}


def rel(a, b) -> float:
    """max|a - b| / max|b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def max_abs(a: dict, b: dict, keys=None) -> float:
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
               for k in (keys or b))


def toy_spec() -> Spec:
    return Spec("toy", (1, 5, 5), (Conv2d(2, 3), BatchNorm(), Activation("relu"), Flatten(), Dense(3)))


def dropout_spec() -> Spec:
    """A spatial dropout on a (C, H, W) map and a flat dropout right after the Flatten, whose
    mask Keras must permute into its (H, W, C) feature order."""
    return Spec("dropout_toy", (2, 8, 8), (Conv2d(4, 3), BatchNorm(), Activation("relu"), Dropout(0.3),
                                            Flatten(), Dropout(0.5), Dense(10)))


def batches(spec: Spec, count: int, size: int, seed: int, classes: int):
    rng = np.random.default_rng(seed)
    return [(rng.random((size, *spec.input_shape), dtype=np.float32), rng.integers(0, classes, size))
            for _ in range(count)]


def trained(module, spec, weights, data, lr, momentum=0.0, weight_decay=0.0, masks=None, lr_changes=None,
            lockstep=False):
    """Build, load weights, run train_step over data; returns (model, optimizer, losses)."""
    model = module.build(spec, lockstep_dropout=lockstep)
    module.set_weights(model, weights)
    optimizer = module.make_optimizer(model, lr, momentum, weight_decay)
    losses = []
    for i, (x, y) in enumerate(data):
        if lr_changes and i in lr_changes:
            module.set_learning_rate(optimizer, lr_changes[i])
        losses.append(module.train_step(model, optimizer, x, y, None if masks is None else masks[i]))
    return model, optimizer, losses


# ---------------------------------------------------------------------------------------
# (1) The toy: every step against a float64 reference of PyTorch's SGD formula
# ---------------------------------------------------------------------------------------

LR, LR_LATER, MOMENTUM, DECAY, STEPS, CHANGE_AFTER = 0.1, 0.03, 0.9, 1e-2, 6, 3
BN_MOMENTUM = 0.1  # the spec's (PyTorch's) BatchNorm momentum

# Weights are O(1) and the trajectories are 6 steps of fp32 arithmetic on an O(1) loss:
# each framework's rounding (~6e-8 relative per op, carried through BatchNorm over 72
# values per channel and 6 momentum steps) keeps it within 2e-7 of the float64 reference
# (measured max: torch 7.2e-8, mxnet 1.5e-7, keras 4.4e-8). 2e-6 absolute leaves 10x room
# for other BLAS/oneDNN builds and stays far below the naive variants' errors (measured:
# Keras' decoupled weight_decay 1.5e-3 after 3 steps, MXNet's unrescaled momentum 9.8e-2).
TOY_ATOL = 2e-6


def reference_trajectory(T, spec, weights, data):
    """float64: gradients from a float64 PyTorch model, the update and the running
    statistics written out by hand (PyTorch's SGD; both variance conventions)."""
    import torch
    model = T.build(spec).double()
    T.set_weights(model, weights)  # float32 values copied exactly into float64 tensors
    record = T.record_of(model, "torch")
    params = {k: getattr(record.layers[k.rsplit(".", 1)[0]], k.rsplit(".", 1)[1])
              for k in record.inference.weight_layout(running_stats=False)}
    norm_path = "blocks[1]"
    captured = {}
    hook = record.layers[norm_path].register_forward_hook(
        lambda _m, inputs, _o: captured.__setitem__("x", inputs[0]))
    p = {k: weights[k].astype(np.float64) for k in params}
    mean = weights[f"{norm_path}.running_mean"].astype(np.float64)
    var_biased = weights[f"{norm_path}.running_var"].astype(np.float64)
    var_unbiased = var_biased.copy()
    buf, lr, steps = {}, LR, []
    try:
        for i, (x, y) in enumerate(data):
            if i == CHANGE_AFTER:
                lr = LR_LATER
            with torch.no_grad():
                for k, param in params.items():
                    param.copy_(torch.from_numpy(p[k]))
            model.train()
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x.astype(np.float64))),
                                                     torch.from_numpy(y))
            grads = torch.autograd.grad(loss, list(params.values()))
            for (k, _), g in zip(params.items(), grads):
                d = g.numpy() + DECAY * p[k]
                buf[k] = d if k not in buf else MOMENTUM * buf[k] + d
                p[k] = p[k] - lr * buf[k]
            inputs = captured["x"].detach().numpy()
            n = inputs.shape[0] * inputs.shape[2] * inputs.shape[3]
            batch_mean = inputs.mean(axis=(0, 2, 3))
            batch_var = inputs.var(axis=(0, 2, 3))  # biased: divides by n
            mean = (1 - BN_MOMENTUM) * mean + BN_MOMENTUM * batch_mean
            var_biased = (1 - BN_MOMENTUM) * var_biased + BN_MOMENTUM * batch_var
            var_unbiased = (1 - BN_MOMENTUM) * var_unbiased + BN_MOMENTUM * batch_var * n / (n - 1)
            steps.append({"params": dict(p), "loss": loss.item(), "running_mean": mean.copy(),
                          "var_biased": var_biased.copy(), "var_unbiased": var_unbiased.copy(), "n": n})
    finally:
        hook.remove()
    return steps


def test_toy_trajectories_match_torch_sgd_step_by_step():
    backends = all_backends()
    T = backends["torch"]
    spec = toy_spec()
    weights = init_weights(spec, seed=0, nontrivial=True)
    data = batches(spec, STEPS, 8, seed=1, classes=3)
    reference = reference_trajectory(T, spec, weights, data)
    trainable = list(spec.infer().weight_layout(running_stats=False))
    norm = "blocks[1]"

    models, optimizers = {}, {}
    for name, module in backends.items():
        models[name] = module.build(spec)
        module.set_weights(models[name], weights)
        optimizers[name] = module.make_optimizer(models[name], LR, MOMENTUM, DECAY)
    initial_var = weights[f"{norm}.running_var"].astype(np.float64)
    errors = {name: 0.0 for name in backends}
    for step, ((x, y), ref) in enumerate(zip(data, reference)):
        if step == CHANGE_AFTER:
            for name, module in backends.items():
                module.set_learning_rate(optimizers[name], LR_LATER)
        got = {}
        for name, module in backends.items():
            loss = module.train_step(models[name], optimizers[name], x, y)
            assert isinstance(loss, float)
            assert abs(loss - ref["loss"]) <= TOY_ATOL * 10, (name, step, loss, ref["loss"])
            got[name] = module.get_weights(models[name])
            error = max_abs(got[name], ref["params"], trainable)
            errors[name] = max(errors[name], error)
            assert error <= TOY_ATOL, f"{name} step {step + 1}: weights off the float64 SGD by {error:.3g}"
            assert np.max(np.abs(got[name][f"{norm}.running_mean"] - ref["running_mean"])) <= TOY_ATOL, name
        for a in NAMES:
            for b in NAMES:
                if a < b:
                    assert max_abs(got[a], got[b], trainable) <= 2 * TOY_ATOL, (a, b, step)
        # Running variance (row 1c): PyTorch's batch term is unbiased (n-1), MXNet's and Keras' biased.
        var = {name: got[name][f"{norm}.running_var"].astype(np.float64) for name in NAMES}
        assert np.max(np.abs(var["torch"] - ref["var_unbiased"])) <= TOY_ATOL
        for name in ("mxnet", "keras"):
            assert np.max(np.abs(var[name] - ref["var_biased"])) <= TOY_ATOL, name
        # The two conventions really differ here (n = 72 values per channel; 45x the tolerance) ...
        assert np.min(np.abs(ref["var_unbiased"] - ref["var_biased"])) > 10 * TOY_ATOL
        if step == 0:
            # ... and after one step exactly by n/(n-1) in the batch term: torch = biased * n/(n-1).
            n = ref["n"]
            base = (1 - BN_MOMENTUM) * initial_var
            ratio = (var["torch"] - base) / (var["mxnet"] - base)
            np.testing.assert_allclose(ratio, n / (n - 1), rtol=1e-4)
            ratio = (var["torch"] - base) / (var["keras"] - base)
            np.testing.assert_allclose(ratio, n / (n - 1), rtol=1e-4)
    print(f"\ntoy: max weight error against float64 over {STEPS} steps: "
          + ", ".join(f"{k} {v:.2g}" for k, v in errors.items()))


def test_toy_tolerance_catches_the_naive_optimizers():
    """The tolerance above would fail Keras' own (decoupled) weight_decay and MXNet's
    momentum left at the old lr after an LR change."""
    backends = all_backends()
    K, M, T = backends["keras"], backends["mxnet"], backends["torch"]
    spec = toy_spec()
    weights = init_weights(spec, seed=0, nontrivial=True)
    data = batches(spec, STEPS, 8, seed=1, classes=3)
    reference = reference_trajectory(T, spec, weights, data)
    trainable = list(spec.infer().weight_layout(running_stats=False))

    # Keras with SGD(weight_decay=wd): p -= lr*wd*p outside the momentum.
    model = K.build(spec)
    K.set_weights(model, weights)
    optimizer = K.make_optimizer(model, LR, MOMENTUM, 0.0)
    optimizer.native = K.keras.optimizers.SGD(learning_rate=LR, momentum=MOMENTUM, weight_decay=DECAY)
    optimizer.native.build(optimizer.variables)
    drift = 0.0
    for step, (x, y) in enumerate(data[:CHANGE_AFTER]):
        K.train_step(model, optimizer, x, y)
        drift = max(drift, max_abs(K.get_weights(model), reference[step]["params"], trainable))
    print(f"\nKeras decoupled weight_decay: off the reference by {drift:.2g} after {CHANGE_AFTER} steps")
    assert drift > 100 * TOY_ATOL, f"decoupled weight decay drifted only {drift:.3g}"

    # MXNet with trainer.set_learning_rate alone: its state still holds the old lr.
    model = M.build(spec)
    M.set_weights(model, weights)
    optimizer = M.make_optimizer(model, LR, MOMENTUM, DECAY)
    drift = 0.0
    for step, (x, y) in enumerate(data):
        if step == CHANGE_AFTER:
            optimizer.native.set_learning_rate(LR_LATER)
        M.train_step(model, optimizer, x, y)
        error = max_abs(M.get_weights(model), reference[step]["params"], trainable)
        if step < CHANGE_AFTER:
            assert error <= TOY_ATOL  # identical until the LR change
        drift = max(drift, error)
    print(f"MXNet momentum not rescaled at the LR change: off by {drift:.2g}")
    assert drift > 100 * TOY_ATOL, f"unscaled momentum drifted only {drift:.3g}"


# ---------------------------------------------------------------------------------------
# (2) lenet_bn: the per-step losses of the three frameworks
# ---------------------------------------------------------------------------------------

# Same weights, same batches: step 1 differs only by fp32 rounding of the forward pass
# (~1e-7 relative); steps 2-3 add the rounding of one or two updates through four
# BatchNorms. Measured: rel <= 1e-6. 1e-5 is float32 noise with a margin, and far below
# what any semantic difference (wrong loss reduction, missing weight decay) gives.
LENET_RTOL = 1e-5


def test_lenet_bn_step_losses_agree():
    backends = all_backends()
    spec = zoo.get("lenet_bn")
    weights = init_weights(spec, seed=0, nontrivial=False)
    data = batches(spec, 3, 64, seed=2, classes=10)
    losses = {name: trained(module, spec, weights, data, lr=0.5, momentum=0.9, weight_decay=1e-4)[2]
              for name, module in backends.items()}
    for name in ("mxnet", "keras"):
        error = rel(losses[name], losses["torch"])
        print(f"\nlenet_bn losses {name} vs torch: rel {error:.2g}")
        assert error <= LENET_RTOL, (name, losses[name], losses["torch"])
    assert losses["torch"][2] < losses["torch"][0]  # it does learn something


# ---------------------------------------------------------------------------------------
# (3) Lockstep dropout
# ---------------------------------------------------------------------------------------

def test_draw_dropout_masks():
    spec = dropout_spec()
    inference = spec.infer()
    masks = draw_dropout_masks(inference, 16, np.random.default_rng(0))
    assert list(masks) == [row.path for row in dropout_rows(inference)] == ["blocks[3]", "blocks[5]"]
    assert masks["blocks[3]"].shape == (16, 4, 6, 6) and masks["blocks[5]"].shape == (16, 144)
    for row in dropout_rows(inference):
        mask = masks[row.path]
        assert mask.dtype == np.float32
        assert set(np.unique(mask)) == {0.0, np.float32(1 / (1 - row.layer.p))}
        assert abs(float(np.mean(mask > 0)) - (1 - row.layer.p)) < 0.05
    again = draw_dropout_masks(spec, 16, np.random.default_rng(0))
    assert all(np.array_equal(masks[k], again[k]) for k in masks)
    with pytest.raises(TypeError):
        draw_dropout_masks(inference, 16, 0)


def test_lockstep_dropout_losses_agree_and_native_ones_do_not():
    backends = all_backends()
    spec = dropout_spec()
    weights = init_weights(spec, seed=0, nontrivial=True)
    data = batches(spec, 3, 16, seed=3, classes=10)
    rng = np.random.default_rng(4)
    masks = [draw_dropout_masks(spec.infer(), 16, rng) for _ in data]
    runs = {name: trained(module, spec, weights, data, lr=0.1, momentum=0.9, weight_decay=1e-3,
                          masks=masks, lockstep=True)
            for name, module in backends.items()}
    losses = {name: run[2] for name, run in runs.items()}
    final = {name: backends[name].get_weights(run[0]) for name, run in runs.items()}
    for name in ("mxnet", "keras"):
        print(f"\nlockstep dropout losses {name} vs torch: rel {rel(losses[name], losses['torch']):.2g}")
        assert rel(losses[name], losses["torch"]) <= LENET_RTOL, (name, losses[name], losses["torch"])
        # Absolute, on O(1) weights: the conv bias ahead of the BatchNorm has a true gradient
        # of 0, so it moves by weight decay plus rounding noise (measured 1.3e-6, rel 7e-6).
        compared = [k for k in final["torch"] if not k.endswith("running_var")]
        worst = max_abs(final[name], final["torch"], compared)
        print(f"lockstep dropout final weights {name} vs torch: max difference {worst:.2g}")
        assert worst <= 1e-5, name
    # Eval mode ignores the masks: the lockstep model is the plain function.
    x = data[0][0]
    for name, module in backends.items():
        plain = module.build(spec)
        module.set_weights(plain, final[name])
        assert rel(module.forward(runs[name][0], x), module.forward(plain, x)) <= 1e-6

    native = {}
    for name, module in backends.items():
        module.seed_everything(0)
        native[name] = trained(module, spec, weights, data, lr=0.1, momentum=0.9, weight_decay=1e-3)[2]
    assert max(rel(native[name], native["torch"]) for name in ("mxnet", "keras")) > 1e-3, native


@pytest.mark.parametrize("name", NAMES)
def test_dropout_mask_arguments_are_checked(name):
    module = backend(name)
    spec = dropout_spec()
    weights = init_weights(spec, seed=0)
    (x, y), = batches(spec, 1, 4, seed=5, classes=10)
    masks = draw_dropout_masks(spec, 4, np.random.default_rng(0))
    plain = module.build(spec)
    module.set_weights(plain, weights)
    optimizer = module.make_optimizer(plain, 0.1)
    with pytest.raises(BackendError, match="lockstep_dropout"):
        module.train_step(plain, optimizer, x, y, masks)
    locked = module.build(spec, lockstep_dropout=True)
    module.set_weights(locked, weights)
    optimizer = module.make_optimizer(locked, 0.1)
    with pytest.raises(BackendError, match="needs dropout_masks"):
        module.train_step(locked, optimizer, x, y)
    with pytest.raises(BackendError, match="shape"):
        module.train_step(locked, optimizer, x, y, {k: v[:2] for k, v in masks.items()})
    with pytest.raises(BackendError, match=r"labels must lie in \[0, 10\)"):
        module.train_step(locked, optimizer, x, np.full(4, 10), masks)
    with pytest.raises(BackendError, match="another model"):
        module.train_step(plain, optimizer, x, y)
    with pytest.raises(BackendError, match="lr must be positive"):
        module.make_optimizer(plain, 0.0)
    assert np.isfinite(module.train_step(locked, optimizer, x, y, masks))


# ---------------------------------------------------------------------------------------
# (4) Checkpoints: resuming is exactly the uninterrupted run
# ---------------------------------------------------------------------------------------

def _resume_run(module, spec, weights, data, masks, path, lockstep, seed=None):
    """4 steps straight, and 2 steps + save + fresh build + load + 2 steps; LR change after step 1."""
    changes = {1: 0.04}

    def fresh():
        if seed is not None:
            module.seed_everything(seed)
        model = module.build(spec, lockstep_dropout=lockstep)
        module.set_weights(model, weights)
        return model, module.make_optimizer(model, 0.1, 0.9, 1e-3)

    def steps(model, optimizer, indices):
        losses = []
        for i in indices:
            if i in changes:
                module.set_learning_rate(optimizer, changes[i])
            losses.append(module.train_step(model, optimizer, *data[i], masks[i] if lockstep else None))
        return losses

    model, optimizer = fresh()
    straight = steps(model, optimizer, range(4))
    straight_weights = module.get_weights(model)

    model, optimizer = fresh()
    first = steps(model, optimizer, range(2))
    module.save_checkpoint(model, optimizer, path)
    if seed is not None:
        module.seed_everything(seed + 1)  # the RNG must come from the checkpoint, not from here
    model = module.build(spec, lockstep_dropout=lockstep)
    optimizer = module.make_optimizer(model, 0.5, 0.9, 1e-3)  # lr comes from the checkpoint
    module.load_checkpoint(model, optimizer, path)
    assert optimizer.lr == pytest.approx(0.04)
    resumed = first + steps(model, optimizer, range(2, 4))
    return straight, straight_weights, resumed, module.get_weights(model)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_resume_is_bitwise(name, tmp_path):
    module = backend(name)
    spec = dropout_spec()
    weights = init_weights(spec, seed=0, nontrivial=True)
    data = batches(spec, 4, 8, seed=6, classes=10)
    rng = np.random.default_rng(7)
    masks = [draw_dropout_masks(spec, 8, rng) for _ in data]
    straight, straight_weights, resumed, resumed_weights = _resume_run(
        module, spec, weights, data, masks, tmp_path / "run" / "step2.npz", lockstep=True)
    assert straight == resumed
    for key, value in straight_weights.items():
        assert np.array_equal(value, resumed_weights[key]), key
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["step2.npz"]  # no temporary left


@pytest.mark.parametrize("name", ["torch", "keras"])
def test_checkpoint_resume_with_native_dropout_restores_the_rng(name, tmp_path):
    """PyTorch's generator and Keras' Dropout seed states travel in the checkpoint
    (MXNet cannot read its RNG state: see its seed_everything note)."""
    module = backend(name)
    spec = dropout_spec()
    weights = init_weights(spec, seed=0, nontrivial=True)
    data = batches(spec, 4, 8, seed=6, classes=10)
    straight, straight_weights, resumed, resumed_weights = _resume_run(
        module, spec, weights, data, None, tmp_path / "native.npz", lockstep=False, seed=11)
    assert straight == resumed
    for key, value in straight_weights.items():
        assert np.array_equal(value, resumed_weights[key]), key


def test_checkpoint_moves_between_frameworks(tmp_path):
    """A PyTorch checkpoint resumed in MXNet and Keras follows PyTorch's own continuation
    (momentum converted from buf to -lr*buf; float32 noise, not bitwise)."""
    backends = all_backends()
    T = backends["torch"]
    spec = toy_spec()
    weights = init_weights(spec, seed=0, nontrivial=True)
    data = batches(spec, 4, 8, seed=1, classes=3)
    trainable = list(spec.infer().weight_layout(running_stats=False))
    norm = "blocks[1]"  # its running_var differs by design (row 1c), its running_mean does not
    model = T.build(spec)
    T.set_weights(model, weights)
    optimizer = T.make_optimizer(model, LR, MOMENTUM, DECAY)
    for x, y in data[:2]:
        T.train_step(model, optimizer, x, y)
    T.set_learning_rate(optimizer, LR_LATER)
    path = tmp_path / "torch.npz"
    T.save_checkpoint(model, optimizer, path)
    for x, y in data[2:]:
        T.train_step(model, optimizer, x, y)
    want = T.get_weights(model)
    for name in ("mxnet", "keras"):
        module = backends[name]
        other = module.build(spec)
        other_optimizer = module.make_optimizer(other, 1.0, MOMENTUM, DECAY)
        module.load_checkpoint(other, other_optimizer, path)
        for x, y in data[2:]:
            module.train_step(other, other_optimizer, x, y)
        got = module.get_weights(other)
        error = max_abs(got, want, trainable)
        print(f"\ntorch checkpoint resumed in {name}: max weight difference {error:.2g}")
        assert error <= TOY_ATOL, name
        assert max_abs(got, want, [f"{norm}.running_mean"]) <= TOY_ATOL, name
        with pytest.raises(BackendError, match="momentum"):
            module.load_checkpoint(other, module.make_optimizer(other, 1.0, 0.5, DECAY), path)


# ---------------------------------------------------------------------------------------
# (5) Seeding and (6) NaN
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_seed_everything_repeats_native_dropout_bitwise(name):
    module = backend(name)
    spec = dropout_spec()
    weights = init_weights(spec, seed=0, nontrivial=True)
    data = batches(spec, 3, 8, seed=8, classes=10)

    def run(seed):
        note = module.seed_everything(seed)
        assert isinstance(note, str) and "\n" not in note
        return trained(module, spec, weights, data, lr=0.1, momentum=0.9, weight_decay=1e-3)[2]

    first, second, other = run(0), run(0), run(1)
    assert first == second
    assert first != other  # native dropout is active and follows the seed


@pytest.mark.parametrize("name", NAMES)
def test_divergence_returns_a_non_finite_loss(name):
    """A diverged run returns NaN/inf losses (the orchestrator stops on them); no exception.

    lr=1e6 does not do it on lenet_bn: BatchNorm makes every layer but the last scale-free,
    so the loss only grows like lr (measured ~3e7 after 6 steps, finite for 40 steps in
    PyTorch). At lr=1e36 the logits reach float32's limit within a few steps."""
    module = backend(name)
    spec = zoo.get("lenet_bn")
    weights = init_weights(spec, seed=0, nontrivial=False)
    data = batches(spec, 6, 16, seed=9, classes=10)
    losses = trained(module, spec, weights, data, lr=1e36, momentum=0.9)[2]
    assert all(isinstance(loss, float) for loss in losses)
    assert not all(np.isfinite(losses)), losses
    x, y = data[0]
    x = x.copy()
    x[0, 0, 0, 0] = np.nan  # a NaN pixel: every later step is NaN, still no exception
    fresh = trained(module, spec, weights, [(x, y)], lr=0.1)[2]
    assert np.isnan(fresh[0])
