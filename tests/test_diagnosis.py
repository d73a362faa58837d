"""diagnose()'s detectors on synthetic arrays, and the port catalogue checked by manual weight copies."""

from __future__ import annotations

from types import SimpleNamespace as Layer

import numpy as np
import pytest
from netparity.backends import available
from netparity.compare import diagnosis as D

from tests.ports import catalogue as C

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------ detectors, synthetic

def test_pixel_shift_found_and_not_for_other_differences():
    ref = RNG.normal(size=(2, 3, 8, 8))
    shifted = np.zeros_like(ref)
    shifted[:, :, 1:, 1:] = ref[:, :, :-1, :-1]
    assert D.detect_pixel_shift(ref, shifted)["shift"] == (1, 1)
    assert D.detect_pixel_shift(ref, ref + RNG.normal(size=ref.shape) * 0.1) is None
    assert D.detect_pixel_shift(ref, ref) is None


def test_conv_hypotheses_same_padding_flip_transpose_bias():
    x = RNG.normal(size=(2, 3, 8, 8))
    w, b = RNG.normal(size=(4, 3, 3, 3)), RNG.normal(size=4)
    cfg = {"stride": 2, "padding": 1}
    weights = {"weight": w, "bias": b}
    assert D.conv_hypotheses(x, weights, cfg, D.conv2d(x, w, b, (2, 2), ((0, 1), (0, 1)))) == "same_padding"
    assert D.conv_hypotheses(x, weights, cfg, D.conv2d(x, w[:, :, ::-1, ::-1], b, (2, 2), ((1, 1),) * 2)) \
        == "kernel_flipped"
    assert D.conv_hypotheses(x, weights, cfg, D.conv2d(x, w.transpose(0, 1, 3, 2), b, (2, 2), ((1, 1),) * 2)) \
        == "kernel_transposed"
    assert D.conv_hypotheses(x, weights, cfg, D.conv2d(x, w, None, (2, 2), ((1, 1),) * 2)) == "missing_bias"
    # the configured conv itself, and an unrelated difference: no hypothesis
    assert D.conv_hypotheses(x, weights, cfg, D.conv2d(x, w, b, (2, 2), ((1, 1),) * 2)) is None
    assert D.conv_hypotheses(x, weights, cfg, D.conv2d(x, w * 1.1, b, (2, 2), ((1, 1),) * 2)) is None


def test_conv2d_matches_torch():
    torch = pytest.importorskip("torch")
    x, w, b = RNG.normal(size=(2, 3, 9, 9)), RNG.normal(size=(4, 3, 3, 3)), RNG.normal(size=4)
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), 2, 1).numpy()
    assert D.rel_error(D.conv2d(x, w, b, (2, 2), ((1, 1), (1, 1))), expected) < 1e-12


def test_conv2d_with_groups_and_dilation_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = RNG.normal(size=(2, 6, 11, 10))
    cases = ((3, (2, 1), (1, 2), ((2, 1), (0, 1))),   # grouped, dilated in H, strided in W, asymmetric padding
             (6, (2, 2), (2, 2), ((2, 2), (2, 2))),   # depthwise with multiplier 2: channel c*2+m reads input c
             (1, (1, 3), (1, 1), ((0, 0), (3, 3))))
    for groups, dilation, stride, ((t, b), (l, r)) in cases:
        w, bias = RNG.normal(size=(12, 6 // groups, 3, 3)), RNG.normal(size=12)
        expected = F.conv2d(F.pad(torch.tensor(x), (l, r, t, b)), torch.tensor(w), torch.tensor(bias), stride, 0,
                            dilation, groups).numpy()
        got = D.conv2d(x, w, bias, stride, ((t, b), (l, r)), dilation, groups)
        assert got.shape == expected.shape and D.rel_error(got, expected) < 1e-12, (groups, dilation)


def test_conv_hypotheses_on_a_dilated_depthwise_conv():
    x = RNG.normal(size=(2, 4, 9, 9))
    w, b = RNG.normal(size=(4, 1, 3, 3)), RNG.normal(size=4)
    cfg = {"stride": 1, "padding": 2, "dilation": 2, "groups": 4}

    def conv(weight=w, bias=b):
        return D.conv2d(x, weight, bias, (1, 1), ((2, 2), (2, 2)), (2, 2), 4)

    assert D.conv_hypotheses(x, {"weight": w, "bias": b}, cfg, conv(weight=w[:, :, ::-1, ::-1])) == "kernel_flipped"
    assert D.conv_hypotheses(x, {"weight": w, "bias": b}, cfg, conv(bias=None)) == "missing_bias"
    assert D.conv_hypotheses(x, {"weight": w, "bias": b}, cfg, conv()) is None
    # an input whose channels do not fit the grouped weight: no hypothesis, no exception
    assert D.conv_hypotheses(x[:, :2], {"weight": w, "bias": b}, cfg, conv()) is None


def test_layernorm_matches_torch_and_its_eps_hypothesis():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = RNG.normal(size=(2, 5, 4, 3))
    gamma, beta = RNG.uniform(0.5, 1.5, 5), RNG.normal(size=5)
    # over the channels of each pixel (ConvNeXt's LayerNorm2d) and over flat features
    expected = F.layer_norm(torch.tensor(x).permute(0, 2, 3, 1), (5,), torch.tensor(gamma), torch.tensor(beta),
                            1e-5).permute(0, 3, 1, 2).numpy()
    assert D.rel_error(D.layernorm(x, gamma, beta, 1e-5), expected) < 1e-12
    flat = x[:, :, 0, 0]
    expected = F.layer_norm(torch.tensor(flat), (5,), torch.tensor(gamma), torch.tensor(beta), 1e-5).numpy()
    assert D.rel_error(D.layernorm(flat, gamma, beta, 1e-5), expected) < 1e-12
    # small variances make epsilon visible: Keras' default 1e-3 where the reference has 1e-5
    x = x * 0.05
    weights = {"weight": gamma, "bias": beta}
    assert D.layernorm_eps_hypothesis(x, weights, 1e-5, D.layernorm(x, gamma, beta, 1e-3)) == 1e-3
    assert D.layernorm_eps_hypothesis(x, weights, 1e-5, D.layernorm(x, gamma, beta, 1e-5)) is None
    assert D.layernorm_eps_hypothesis(x, weights, 1e-5, D.layernorm(x, gamma, -beta, 1e-5)) is None
    code, message = D.diagnose({"first_divergence": 0, "reference_layers": [
        Layer(name="ln", kind="layernorm", config={"eps": 1e-5}, input=x, weights=weights,
              output=D.layernorm(x, gamma, beta, 1e-5))], "candidate_layers": [
        Layer(name="ln", kind="layernorm", config={}, input=x, output=D.layernorm(x, gamma, beta, 1e-3))]})
    assert code == "layernorm_eps" and "eps=0.001" in message


def test_dense_hypotheses():
    x, w, b = RNG.normal(size=(4, 6)), RNG.normal(size=(6, 6)), RNG.normal(size=6)
    assert D.dense_hypotheses(x, {"weight": w, "bias": b}, x @ w + b) == "dense_not_transposed"
    assert D.dense_hypotheses(x, {"weight": w, "bias": b}, x @ w.T) == "missing_bias"
    assert D.dense_hypotheses(x, {"weight": w, "bias": b}, x @ w.T + b) is None
    assert D.dense_hypotheses(x, {"weight": w, "bias": b}, x @ w.T + 2 * b) is None


def _bn_case(eps_cand):
    x = RNG.normal(size=(4, 3, 5, 5))
    g, beta, mean, var = RNG.uniform(0.5, 1.5, 3), RNG.normal(size=3), RNG.normal(size=3) * 0.1, \
        RNG.uniform(0.05, 0.3, 3)
    weights = {"weight": g, "bias": beta, "running_mean": mean, "running_var": var}
    return x, weights, D.batchnorm(x, g, beta, mean, var, 1e-5), D.batchnorm(x, g, beta, mean, var, eps_cand)


def test_batchnorm_eps_scale_detector_and_hypothesis():
    x, weights, ref, cand = _bn_case(1e-3)
    found = D.detect_channel_scale(ref, cand, running_var=weights["running_var"], eps_ref=1e-5)
    assert found and abs(found["eps_estimate"] - 1e-3) < 1e-5
    assert np.allclose(found["scales"], np.sqrt((weights["running_var"] + 1e-5) / (weights["running_var"] + 1e-3)))
    assert D.batchnorm_eps_hypothesis(x, weights, 1e-5, cand) == 1e-3
    # an offset only (bias), or noise: not an epsilon
    assert D.detect_channel_scale(ref, ref + 0.3) is None
    assert D.detect_channel_scale(ref, ref + RNG.normal(size=ref.shape) * 0.05) is None
    assert D.batchnorm_eps_hypothesis(x, weights, 1e-5, ref) is None


def test_channel_offset():
    ref = RNG.normal(size=(2, 4, 5, 5))
    assert D.detect_channel_offset(ref, ref + np.arange(4).reshape(1, 4, 1, 1))
    assert D.detect_channel_offset(ref, ref * 1.01 + 0.1) is None


def test_border_only():
    ref = RNG.normal(size=(2, 3, 8, 8))
    cand = ref.copy()
    cand[:, :, 0, :] += 1
    cand[:, :, :, -1] += 1
    assert D.detect_border_only(ref, cand)["ring"] == 1
    cand2 = ref.copy()
    cand2[:, :, 4, 4] += 1
    assert D.detect_border_only(ref, cand2) is None


def test_negative_only():
    inputs = {"random": RNG.normal(size=(2, 1, 4, 4)), "negative": -np.ones((2, 1, 4, 4)),
              "constant": np.full((2, 1, 4, 4), 0.5)}
    assert D.detect_negative_only(["negative", "random"], inputs)
    assert D.detect_negative_only(["negative", "constant"], inputs) is None
    assert D.detect_negative_only([], inputs) is None


def test_flatten_permutation():
    chw = RNG.normal(size=(3, 4, 5, 5))
    ref, cand = chw.reshape(3, -1), chw.transpose(0, 2, 3, 1).reshape(3, -1)
    assert D.detect_flatten_permutation(ref, cand, [(4, 5, 5)])["shape"] == (4, 5, 5)
    assert D.detect_flatten_permutation(ref, cand)["shape"] == (4, 5, 5)  # found by factorising
    assert D.detect_flatten_permutation(ref, ref[:, ::-1].copy()) is None


def test_relu_relation_dropout_and_one_sided():
    pre = RNG.normal(size=(4, 50))
    assert D.detect_relu_relation(np.maximum(pre, 0), pre)["relation"] == "missing"
    assert D.detect_relu_relation(pre, np.maximum(pre, 0))["relation"] == "extra"
    assert D.detect_relu_relation(pre, pre * 0.9) is None
    ref = np.abs(pre) + 0.1
    mask = RNG.random(ref.shape) > 0.5
    found = D.detect_dropout_mask(ref, ref * mask * 2)
    assert found and abs(found["p"] - 0.5) < 1e-9
    assert D.detect_dropout_mask(ref, ref * 1.5) is None
    smaller = ref - RNG.uniform(0, 0.05, ref.shape)
    assert D.detect_one_sided(ref, smaller)["candidate"] == "smaller"
    assert D.detect_one_sided(ref, ref + RNG.normal(size=ref.shape) * 0.01) is None


def test_shape_off_by_one():
    assert D.detect_shape_off_by_one((2, 8, 7, 7), (2, 8, 6, 6))
    assert D.detect_shape_off_by_one((2, 8, 7, 7), (2, 8, 5, 5)) is None
    assert D.detect_shape_off_by_one((2, 8, 7, 7), (2, 8, 7, 7)) is None


def test_diagnose_config_differences_first():
    def lay(name, **config):
        return Layer(name=name, kind="batchnorm", config=config, output=np.zeros((1, 2, 2, 2)))

    code, message = D.diagnose({"first_divergence": 0, "reference_layers": [lay("bn1", eps=1e-5)],
                                "candidate_layers": [lay("bn1", eps=1e-3)]})
    assert code == "batchnorm_eps" and "bn1" in message and "0.001" in message
    evidence = {"first_divergence": None, "training_only": True, "reference_framework": "torch",
                "candidate_framework": "keras", "reference_layers": [lay("bn1", momentum=0.1)],
                "candidate_layers": [lay("bn1", momentum=0.1)]}
    code, message = D.diagnose(evidence)
    assert code == "batchnorm_momentum" and "0.9" in message  # keras 0.1 means torch 0.9
    evidence["candidate_layers"] = [lay("bn1", momentum=0.9)]
    assert D.diagnose({**evidence, "training_only": False}) is None  # same momentum, no divergence


def test_diagnose_layernorm_eps_and_norm_affine_from_the_config():
    def lay(name, kind, **config):
        return Layer(name=name, kind=kind, config=config, output=np.zeros((1, 2, 2, 2)))

    code, message = D.diagnose({"first_divergence": 0, "reference_layers": [lay("ln", "layernorm", eps=1e-5)],
                                "candidate_layers": [lay("ln", "layernorm", eps=1e-3)]})
    assert code == "layernorm_eps" and "LayerNorm 'ln'" in message and "epsilon=1e-05" in message
    code, message = D.diagnose({"first_divergence": 0, "reference_layers": [lay("bn", "batchnorm", scale=True)],
                                "candidate_layers": [lay("bn", "batchnorm", scale=False)]})
    assert code == "norm_affine" and "BatchNorm 'bn' has no learned scale" in message
    # a missing learned shift in a layer that agrees (its beta is 0) is not the cause of a later divergence
    evidence = {"first_divergence": 1, "reference_layers": [lay("ln", "layernorm", center=True), lay("c", "conv2d")],
                "candidate_layers": [lay("ln", "layernorm", center=False), lay("c", "conv2d")]}
    assert D.diagnose(evidence) is None


def test_diagnose_names_prelu_and_groups_mismatches_where_alignment_stops():
    def pair(kind, ref, cand):
        return {"mismatch": {"reference": Layer(name="r", kind=kind, config=ref),
                             "candidate": Layer(name="c", kind=kind, config=cand)}}

    code, message = D.diagnose(pair("prelu", {"channels": 8}, {"channels": 1}))
    assert code == "prelu_shared" and "'c' has one shared slope" in message and "nn.PReLU(8)" in message
    assert D.diagnose(pair("prelu", {"channels": 1}, {"channels": 8}))[0] == "prelu_shared"
    code, message = D.diagnose(pair("prelu", {"channels": 8}, {"channels": 8, "per_element": True,
                                                                "alpha_shape": (4, 4, 8)}))
    assert code == "prelu_per_element" and "shared_axes=[1, 2]" in message
    code, message = D.diagnose(pair("conv2d", {"groups": 8, "in_channels": 8}, {"groups": 1, "in_channels": 8}))
    assert code == "conv_groups" and "depthwise (groups 8" in message and "a full convolution" in message
    assert D.diagnose(pair("prelu", {"channels": 8}, {"channels": 4})) is None  # another width: no diagnosis


def test_diagnose_returns_none_without_a_pattern():
    ref = RNG.normal(size=(2, 3, 6, 6))
    layer = Layer(name="conv1", kind="conv2d", config={"stride": 1, "padding": 1}, output=ref)
    other = Layer(name="conv1", kind="conv2d", config={"stride": 1, "padding": 1},
                  output=ref + RNG.normal(size=ref.shape))
    assert D.diagnose({"first_divergence": 0, "reference_layers": [layer], "candidate_layers": [other]}) is None
    assert D.diagnose({}) is None


# ------------------------------------------------------------------------------------- catalogue

def test_catalogue_shape():
    assert {e.mistake_code for e in C.WRONG} == set(C.MISTAKE_CODES)
    for code in C.MISTAKE_CODES:
        assert {e.framework for e in C.WRONG if e.mistake_code == code} == set(C.FRAMEWORKS), code
    for entry in C.CATALOGUE:
        assert entry.framework != entry.reference_framework
        assert C.ops_differences(entry.ops, entry.reference_ops) == (0 if entry.mistake_code is None else 1)
        names = [op["name"] for op in C.param_ops(entry.reference_ops)]
        assert entry.wrong_layer_hint is None or entry.wrong_layer_hint in names
    assert len({e.name for e in C.CATALOGUE}) == len(C.CATALOGUE)


def _needs(*frameworks):
    missing = [f for f in frameworks if f not in available()]
    if missing:
        pytest.skip(f"needs {missing}")


def _pair(entry, seed=3):
    """Reference and candidate with the same canonical weights, copied by hand."""
    ref, cand = entry.reference_factory(), entry.factory()
    weights = C.random_canonical(entry.reference_ops, seed)
    C.set_canonical(ref, entry.reference_framework, weights, entry.reference_ops, entry.input_shape)
    C.set_canonical(cand, entry.framework, weights, entry.ops, entry.input_shape)
    return ref, cand


def _inputs(entry):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, *entry.input_shape)).astype(np.float32)
    return [x, -np.abs(x), np.abs(x)]


@pytest.mark.parametrize("entry", C.CATALOGUE, ids=lambda e: e.name)
def test_catalogue_entry_against_its_reference(entry):
    _needs(entry.framework, entry.reference_framework)
    ref, cand = _pair(entry)
    errors = [D.rel_error(C.forward(cand, entry.framework, x), C.forward(ref, entry.reference_framework, x))
              for x in _inputs(entry)]
    if entry.training_only:
        assert max(errors) < 1e-5, "eval mode must agree"
        x = _inputs(entry)[0]
        C.train_forward(ref, entry.reference_framework, x)
        C.train_forward(cand, entry.framework, x)
        a = C.running_means(ref, entry.reference_framework, entry.reference_ops)
        b = C.running_means(cand, entry.framework, entry.ops)
        assert max(float(np.abs(a[k] - b[k]).max()) for k in a) > 1e-2
    elif entry.mistake_code is None:
        assert max(errors) < 1e-5, errors
    else:
        assert max(errors) > 1e-3, errors
    if entry.mistake_code == "maxpool_zero_padding":
        assert errors[2] < 1e-5 and errors[1] > 1e-3  # only inputs with negative values show it


@pytest.mark.parametrize("entry", [e for e in C.CATALOGUE if e.arch == "cnn" and (e.training_only or e.mistake_code
                                                                                     is None)], ids=lambda e: e.name)
def test_correct_ports_agree_after_a_training_step(entry):
    _needs(entry.framework, entry.reference_framework)
    ref, cand = _pair(entry)
    x = _inputs(entry)[0]
    C.train_forward(ref, entry.reference_framework, x)
    C.train_forward(cand, entry.framework, x)
    a = C.running_means(ref, entry.reference_framework, entry.reference_ops)
    b = C.running_means(cand, entry.framework, entry.ops)
    gap = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert (gap > 1e-2) if entry.training_only else (gap < 1e-5)


# ------------------------------------------------- diagnose on evidence recorded from torch ports

def _record(model, ops, x):
    import torch

    records, hooks = [], []
    for op in C.param_ops(ops):
        kind = {"conv": "conv2d", "bn": "batchnorm", "dense": "dense"}[op["op"]]
        config = {k: op[k] for k in ("eps", "momentum") if k in op}
        if op["op"] == "conv":
            config.update(kernel=op["k"], stride=op["s"], padding=op["p"])

        def hook(module, args, out, name=op["name"], kind=kind, config=config):
            weights = {k: v.detach().numpy().copy() for k, v in [*module.named_parameters(),
                                                                  *module.named_buffers()]}
            records.append(Layer(name=name, kind=kind, config=config, input=args[0].detach().numpy().copy(),
                                 output=out.detach().numpy().copy(), weights=weights))

        hooks.append(getattr(model, op["name"]).register_forward_hook(hook))
    with torch.no_grad():
        model.eval()
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    return records


@pytest.mark.parametrize("entry", [e for e in C.CATALOGUE if e.framework == "torch"], ids=lambda e: e.name)
def test_diagnose_names_each_torch_catalogue_mistake(entry):
    """Evidence as verify_port would gather it (torch reference and candidate, with inputs and weights)."""
    _needs("torch")
    ref = C.build(entry.reference_ops, "torch", entry.input_shape, 1)
    cand = C.build(entry.ops, "torch", entry.input_shape, 1)
    weights = C.random_canonical(entry.reference_ops, 5)
    C.set_canonical(ref, "torch", weights, entry.reference_ops, entry.input_shape)
    C.set_canonical(cand, "torch", weights, entry.ops, entry.input_shape)
    x = np.random.default_rng(0).normal(size=(4, *entry.input_shape)).astype(np.float32)
    inputs = {"random": x, "negative": -np.abs(x), "constant": np.full_like(x, 0.5), "large": np.abs(x) * 100}
    diverging, first = {}, None
    for kind, batch in inputs.items():
        for i, (a, b) in enumerate(zip(_record(ref, entry.reference_ops, batch), _record(cand, entry.ops, batch))):
            if not D.close(b.output, a.output, 1e-4):
                diverging.setdefault(i, []).append(kind)
    ref_layers, cand_layers = _record(ref, entry.reference_ops, x), _record(cand, entry.ops, x)
    for i, (a, b) in enumerate(zip(ref_layers, cand_layers)):
        if not D.close(b.output, a.output, 1e-4):
            first = i
            break
    evidence = {"first_divergence": first, "reference_layers": ref_layers, "candidate_layers": cand_layers,
                "inputs": inputs, "diverging_inputs": diverging, "training_only": entry.training_only and first is None}
    if entry.mistake_code is None:
        assert first is None and D.diagnose(evidence) is None
        return
    if not entry.training_only:
        assert ref_layers[first].name == entry.wrong_layer_hint
    result = D.diagnose(evidence)
    assert result is not None and result[0] == entry.mistake_code, result
    if first is not None:
        assert f"'{entry.wrong_layer_hint}'" in result[1]
