"""The parity harness across all installed frameworks."""

import numpy as np
import pytest

from netparity.backends import BACKEND_NAMES, available, get_backend
from netparity.compare import check_parity
from netparity.spec import LAYER_KINDS, init_weights, zoo

from helpers import installed_or_skip, smallest_input


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_backend_maps_every_layer_kind(name):
    if name not in available():
        pytest.skip(f"{name} is not installed")
    backend = get_backend(name)
    assert set(backend.LAYER_BUILDERS) == set(LAYER_KINDS), (
        f"{name} misses {set(LAYER_KINDS) - set(backend.LAYER_BUILDERS)}")


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_model_parity_at_reduced_size(name):
    frameworks = installed_or_skip()
    spec = smallest_input(zoo.get(name), at_least=32)
    result = check_parity(spec, frameworks)
    assert result.errors == {}
    assert result.frameworks == list(frameworks)
    assert result.shape_parity, result.shape_mismatches[:3]
    assert result.parameter_parity, result.count_mismatches[:3]
    for pair in result.pairs:
        assert pair.ok, pair
    assert result.ok


def test_weight_round_trip_is_bitwise_across_frameworks():
    installed_or_skip(3)
    for name in ("lenet_bn", "googlenet", "resnet18", "densenet", "tv_alexnet"):
        spec = smallest_input(zoo.get(name), at_least=32)
        original = init_weights(spec, seed=3)
        weights = original
        for framework in ("torch", "keras", "mxnet", "torch"):
            backend = get_backend(framework)
            model = backend.build(spec)
            backend.set_weights(model, weights)
            weights = backend.get_weights(model)
        assert list(weights) == list(original), name
        for key in original:
            assert weights[key].dtype == np.float32 and np.array_equal(weights[key], original[key]), (name, key)


def test_harness_names_the_first_diverging_layer(monkeypatch):
    frameworks = installed_or_skip()
    spec = smallest_input(zoo.get("resnet18"), at_least=32)
    victim = frameworks[-1]
    backend = get_backend(victim)
    honest = backend.set_weights
    target = "blocks[2].layers[0].body.layers[3].weight"  # a conv inside the second stage

    def tampered(model, weights):
        weights = dict(weights)
        weights[target] = weights[target] * np.float32(1.01)
        honest(model, weights)

    monkeypatch.setattr(backend, "set_weights", tampered)
    result = check_parity(spec, frameworks)
    assert not result.ok and result.shape_parity and result.parameter_parity
    bad = [p for p in result.pairs if victim in (p.a, p.b)]
    assert bad and all(p.first_divergence == "blocks[2].layers[0].body.layers[3]" for p in bad)
    assert all(p.ok for p in result.pairs if victim not in (p.a, p.b))


def test_a_wrong_input_gradient_is_not_excused_as_a_kink(monkeypatch):
    frameworks = installed_or_skip()
    backend = get_backend(frameworks[-1])
    honest = backend.input_gradient
    # 10% everywhere: beyond the kink budget (L2 <= 5% on a minority of entries), as
    # backward-only bugs are (MXNet's eval-mode BatchNorm gradient was off by 2.4).
    monkeypatch.setattr(backend, "input_gradient", lambda *args, **kw: honest(*args, **kw) * np.float32(1.1))
    result = check_parity("lenet", frameworks)
    bad = [p for p in result.pairs if frameworks[-1] in (p.a, p.b)]
    assert bad and not any(p.ok for p in bad) and not result.ok
    assert all(p.first_divergence is None and p.gradient_verdict == "differ" for p in bad)


def test_judge_gradients_separates_kinks_from_errors():
    from netparity.compare.parity import judge_gradients

    # agreed on fresh draws: a kink on the first draw
    assert judge_gradients(3e-2, [1e-6, 2e-6], None, 1e-4)[0] == "kinks"
    # disagrees on a fresh draw too, but the input sits on kinks (own gradient moves as much)
    assert judge_gradients(2.7e-2, [5e-2], 2.3e-2, 1e-4)[0] == "kinks"
    # a smooth net (own gradient moves 1.5e-6) with a 1e-2 difference: an error
    verdict, note = judge_gradients(1e-2, [1e-2], 1.5e-6, 1e-4)
    assert verdict == "differ" and "beyond what kinks explain" in note


def test_missing_framework_is_a_note_not_a_crash(monkeypatch):
    import netparity.backends as backends

    monkeypatch.setattr(backends, "is_installed", lambda module: module == "torch")
    result = check_parity("lenet", ("torch", "mxnet"))
    assert result.frameworks == ["torch"] and "mxnet" in result.skipped
    assert "not available" in result.skipped["mxnet"] and "pip install" in result.skipped["mxnet"]


def test_framework_failure_keeps_the_others(monkeypatch):
    frameworks = installed_or_skip()
    backend = get_backend(frameworks[0])

    def broken(spec, device="cpu"):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(backend, "build", broken)
    result = check_parity("lenet", frameworks)
    assert not result.ok and "out of memory" in result.errors[frameworks[0]]
    assert result.frameworks == list(frameworks[1:])


def test_gpu_without_gpu_is_a_clear_error():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = check_parity("lenet", ("torch",), device="gpu")
    assert "CUDA is not available" in result.errors["torch"]


@pytest.mark.parametrize("name", ["tv_resnet18", "tv_alexnet"])
def test_tv_specs_compute_torchvisions_function(name):
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    torch = pytest.importorskip("torch")
    backend = get_backend("torch")
    spec = zoo.get(name).with_input(size=64)
    reference = getattr(torchvision.models, name[3:])(weights=None).eval()
    theirs = [v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")]
    layout = spec.infer().weight_layout()
    model = backend.build(spec)
    backend.set_weights(model, {key: value.numpy() for key, value in zip(layout, theirs)})
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(backend.forward(model, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet_bn", "resnet18", "googlenet", "densenet"])
def test_full_size_parity(name):
    frameworks = installed_or_skip()
    result = check_parity(name, frameworks)
    assert result.ok, [p for p in result.pairs if not p.ok] or result.errors
