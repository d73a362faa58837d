"""verify_port / transfer_weights core: tracing native models, alignment, weight copies, verdicts.

Weights move through backends.tracing (trace + set_canonical_weights), never through the
backends' set_weights, so these tests check the tracing itself on netparity-built models
(every ordered framework pair, resnet18 and googlenet) and on hand-written ones.
"""

import itertools
import json

import numpy as np
import pytest

from netparity.backends import available, get_backend
from netparity.spec import init_weights, zoo

from helpers import smallest_input

FRAMEWORKS = ("torch", "mxnet", "keras")
needs_all = pytest.mark.skipif(set(available()) != set(FRAMEWORKS), reason="needs torch, mxnet and keras")
pytestmark = needs_all

if set(available()) == set(FRAMEWORKS):
    from netparity.backends.frameworks import import_keras, import_mxnet, import_torch

    torch = import_torch()
    mx = import_mxnet()
    keras = import_keras()
    from netparity.backends.tracing import NotSupported, declared_input_shape, framework_of, set_canonical_weights, trace
    from netparity.compare.port import PortError, transfer_weights, verify_command, verify_port
    from netparity.spec.errors import NetparityError


# ---------------------------------------------------------------------------------------
# netparity's own backends, every ordered pair
# ---------------------------------------------------------------------------------------

_BUILT = {}


def _spec(name):
    return smallest_input(zoo.get(name), at_least=32)


def _built(name, framework):
    key = (name, framework)
    if key not in _BUILT:
        backend = get_backend(framework)
        _BUILT[key] = backend.build(_spec(name))
    return _BUILT[key]


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
@pytest.mark.parametrize("source,target", list(itertools.permutations(FRAMEWORKS, 2)))
def test_backend_models_verify_across_every_pair(name, source, target):
    spec = _spec(name)
    reference, candidate = _built(name, source), _built(name, target)
    get_backend(source).set_weights(reference, init_weights(spec, seed=1))
    get_backend(target).set_weights(candidate, init_weights(spec, seed=2))  # must be overwritten
    report = verify_port(reference, candidate, input_shape=spec.input_shape)
    assert report.alignment_error is None, report.alignment_error
    assert report.weights_copied
    assert report.equivalent, report.summary()
    assert report.first_divergence is None
    assert len(report.layers) == len({key.rsplit(".", 1)[0] for key in init_weights(spec)})
    copied = get_backend(target).get_weights(candidate)
    for key, value in init_weights(spec, seed=1).items():
        np.testing.assert_array_equal(copied[key], value, err_msg=key)


def test_spec_reference_against_backend_candidates():
    spec = _spec("googlenet")
    candidate = _built("googlenet", "mxnet")
    report = verify_port("googlenet", candidate, input_shape=spec.input_shape, framework="torch")
    assert report.equivalent, report.summary()
    assert (report.reference_framework, report.candidate_framework) == ("torch", "mxnet")
    # the reference's weights are init_weights(spec, seed)
    np.testing.assert_array_equal(get_backend("mxnet").get_weights(candidate)["blocks[5].weight"],
                                  init_weights(spec, seed=0)["blocks[5].weight"])
    keras_candidate = _built("resnet18", "keras")
    report = verify_port("resnet18", keras_candidate)  # input shape from the Keras model
    assert report.equivalent and report.reference_framework == "keras", report.summary()
    assert report.input_shape == [1, 32, 32]


# ---------------------------------------------------------------------------------------
# hand-written models
# ---------------------------------------------------------------------------------------

def torch_lenet(extra_conv=False, prelu=False):
    nn = torch.nn
    convs = [nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.PReLU(6) if prelu else nn.Sigmoid(),
             nn.AvgPool2d(2)]
    if extra_conv:
        convs += [nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()]
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*convs, nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.Sigmoid(),
                                               nn.AvgPool2d(2), nn.Flatten()))
    model.add_module("classifier", nn.Sequential(nn.Linear(400, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
                                                 nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
                                                 nn.Linear(84, 10)))
    return model.eval()


def keras_lenet(eps=1e-5, momentum=0.9, sequential=False):
    L = keras.layers

    def norm():
        return L.BatchNormalization(epsilon=eps, momentum=momentum)

    layers = [L.ZeroPadding2D(2), L.Conv2D(6, 5), norm(), L.Activation("sigmoid"), L.AveragePooling2D(2),
              L.Conv2D(16, 5), norm(), L.Activation("sigmoid"), L.AveragePooling2D(2), L.Flatten(),
              L.Dense(120), norm(), L.Activation("sigmoid"), L.Dense(84), norm(), L.Activation("sigmoid"),
              L.Dense(10)]
    if sequential:
        return keras.Sequential([keras.Input((28, 28, 1)), *layers])
    x = inputs = keras.Input((28, 28, 1))
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def gluon_lenet():
    nn = mx.gluon.nn
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, 5, padding=2), nn.BatchNorm(), nn.Activation("sigmoid"), nn.AvgPool2D(2),
            nn.Conv2D(16, 5), nn.BatchNorm(), nn.Activation("sigmoid"), nn.AvgPool2D(2),
            nn.Dense(120), nn.BatchNorm(), nn.Activation("sigmoid"),  # Dense flattens NCHW itself
            nn.Dense(84), nn.BatchNorm(), nn.Activation("sigmoid"), nn.Dense(10))
    net.initialize()
    net(mx.nd.zeros((1, 1, 28, 28)))  # deferred shapes
    net.hybridize()
    return net


def test_framework_of_and_trace_of_a_keras_port():
    model = keras_lenet()
    assert framework_of(model) == "keras" and framework_of(torch_lenet()) == "torch"
    assert framework_of(gluon_lenet()) == "mxnet"
    with pytest.raises(NotSupported, match="not a native model"):
        framework_of(object())
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    layers = trace(model, x)
    assert [layer.kind for layer in layers] == ["conv2d", "batchnorm"] * 2 + ["dense", "batchnorm"] * 2 + ["dense"]
    conv, dense = layers[0], layers[4]
    assert conv.config["padding"] == "valid" and conv.config["zero_padding_before"] == ((2, 2), (2, 2))
    assert conv.config["effective_padding"] == ((2, 2), (2, 2))
    assert conv.output.shape == (2, 6, 28, 28) and conv.layout == "NHWC->NCHW"
    assert conv.weights()["weight"].shape == (6, 1, 5, 5)
    assert dense.flatten_source == (16, 5, 5) and dense.weights()["weight"].shape == (120, 400)
    assert layers[1].config["momentum"] == pytest.approx(0.1) and layers[1].config["eps"] == 1e-5
    # canonical weights round-trip bitwise, including the (H, W, C) flatten permutation
    before = dense.weights()
    new = {k: np.random.default_rng(1).standard_normal(v.shape).astype(np.float32) for k, v in before.items()}
    set_canonical_weights(model, dense, new)
    for key in new:
        np.testing.assert_array_equal(dense.weights()[key], new[key])
    kernel = np.asarray(keras.ops.convert_to_numpy(dense.native.kernel))
    np.testing.assert_array_equal(kernel, new["weight"].reshape(120, 16, 5, 5).transpose(2, 3, 1, 0).reshape(400, 120))


def test_correct_hand_written_ports_are_equivalent():
    reference = torch_lenet()
    for candidate in (keras_lenet(), keras_lenet(sequential=True), gluon_lenet()):
        report = verify_port(reference, candidate, input_shape=(1, 28, 28))
        assert report.equivalent, report.summary()
        assert [row.kind for row in report.layers][:2] == ["conv2d", "batchnorm"]
        assert report.inputs == ["random 1", "random 2", "random 3", "negative", "positive", "constant",
                                 "large"]
    # and the other way round, mxnet -> keras, input shape from the Keras model
    report = verify_port(gluon_lenet(), keras_lenet())
    assert report.equivalent, report.summary()
    data = json.loads(report.to_json())
    assert data["equivalent"] is True and len(data["layers"]) == 9


def test_keras_default_epsilon_is_flagged_at_the_first_batchnorm():
    report = verify_port(torch_lenet(), keras_lenet(eps=1e-3), input_shape=(1, 28, 28))
    assert not report.equivalent and report.alignment_error is None
    first = report.first_divergence
    assert first is not None and first.index == 1 and first.kind == "batchnorm"
    assert first.reference_name == "features.1"
    assert any("eps" in note for note in first.notes)
    assert report.layers[0].ok
    text = report.summary()
    assert "first divergence: #1 features.1" in text and "NOT EQUIVALENT" in text


def test_training_mode_is_compared_by_default_and_catches_a_momentum_that_only_training_shows():
    """The training-mode forward runs unless asked not to. The correct Keras port agrees there too:
    PyTorch's unbiased running variance (BatchNorm1d over a batch of 8: a factor 8/7 on the batch term)
    is put beside Keras' biased one, so that known difference is no alarm."""
    report = verify_port(torch_lenet(), keras_lenet(), input_shape=(1, 28, 28))
    assert report.equivalent and report.training.ok and report.training.meaningful, report.summary()
    assert not report.eval_only and "training mode: agrees" in report.summary()
    report = verify_port(torch_lenet(), keras_lenet(momentum=0.99), input_shape=(1, 28, 28))
    assert not report.equivalent and report.training_only, report.summary()
    assert report.first_divergence is None and report.training.first_divergence.startswith("#1 ")
    assert report.diagnosis_code == "batchnorm_momentum"
    # eval only: the same wrong momentum passes, and the summary says what was not checked
    report = verify_port(torch_lenet(), keras_lenet(momentum=0.99), input_shape=(1, 28, 28), training_step=False)
    assert report.equivalent and report.training is None and report.eval_only
    assert "training mode: not checked (eval only)" in report.summary()


def test_rounding_that_train_mode_batchnorm_amplifies_is_no_alarm():
    """A channel whose values sit far from their mean (conv bias 10, weights ~3e-4): train-mode BatchNorm
    over 8 values divides the frameworks' float32 rounding by a tiny spread. Measured 4.6e-4 (PyTorch vs
    Keras), above the eval tolerance 1e-4 and far below what a training-only mistake gives."""
    from netparity.compare.port import DEFAULT_RTOL, TRAINING_RTOL

    nn, L = torch.nn, keras.layers
    reference = nn.Sequential(nn.Conv2d(3, 16, 4), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(), nn.Linear(16, 5))
    with torch.no_grad():
        reference[0].weight.copy_(torch.randn(16, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 3e-4)
        reference[0].bias.fill_(10.0)
        reference[1].running_mean.fill_(10.0)
    x = inputs = keras.Input((4, 4, 3))
    x = L.Flatten()(L.ReLU()(L.BatchNormalization(epsilon=1e-5, momentum=0.9)(L.Conv2D(16, 4)(x))))
    candidate = keras.Model(inputs, L.Dense(5)(x))
    report = verify_port(reference.eval(), candidate, input_shape=(3, 4, 4))
    assert report.equivalent and report.training.ok, report.summary()
    noise = report.training.layers[1]["max_rel"]
    assert DEFAULT_RTOL < noise < TRAINING_RTOL / 10, noise  # the premise: rounding above the eval tolerance


def test_a_batchnorm_frozen_while_training_is_named():
    """Keras runs BatchNormalization(trainable=False) in inference mode when training; Gluon's
    use_global_stats=True likewise. Eval mode agrees; the training-mode comparison names it."""
    frozen = keras_lenet()
    frozen.layers[3].trainable = False  # the first BatchNormalization
    assert isinstance(frozen.layers[3], keras.layers.BatchNormalization)
    report = verify_port(torch_lenet(), frozen, input_shape=(1, 28, 28))
    assert not report.equivalent and report.training_only, report.summary()
    assert report.diagnosis_code == "batchnorm_frozen" and "trainable=False" in report.diagnosis
    gluon = gluon_lenet()
    gluon[1]._kwargs["use_global_stats"] = True
    report = verify_port(torch_lenet(), gluon, input_shape=(1, 28, 28))
    assert not report.equivalent and report.training_only, report.summary()
    assert report.diagnosis_code == "batchnorm_frozen" and "use_global_stats=True" in report.diagnosis


def test_an_extra_conv_gives_a_clean_alignment_error():
    report = verify_port(torch_lenet(), torch_lenet(extra_conv=True), input_shape=(1, 28, 28))
    assert not report.equivalent and not report.weights_copied
    assert report.alignment_error.startswith("extra layer: candidate #2 features.4"), report.alignment_error
    assert "features.1" in report.alignment_error  # where it happens in the reference
    assert [row.reference_name for row in report.layers] == ["features.0", "features.1"]
    assert "NOT ALIGNED" in report.summary()
    report = verify_port(torch_lenet(extra_conv=True), keras_lenet(), input_shape=(1, 28, 28))
    assert report.alignment_error.startswith("missing layer: reference #2 features.4"), report.alignment_error


def test_a_changed_channel_count_and_a_transposed_dense_are_named():
    nn = torch.nn
    reference = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 8 * 6 * 6))
    candidate = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    report = verify_port(reference, candidate, input_shape=(3, 8, 8))
    assert "shapes differ at #0" in report.alignment_error and "output channels 8 vs 4" in report.alignment_error


def test_an_unknown_parameterised_layer_stops_alignment():
    nn = torch.nn

    class Block(nn.Module):
        """torchvision's ConvNeXt block keeps its layer scale as a bare parameter of the block: no
        layer call of its own, so no kind netparity aligns."""

        def __init__(self, channels):
            super().__init__()
            self.norm = nn.BatchNorm2d(channels)
            self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), 0.5))

        def forward(self, x):
            return x + self.layer_scale * self.norm(x)

    reference = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    candidate = nn.Sequential(nn.Conv2d(1, 4, 3), Block(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    report = verify_port(reference, candidate, input_shape=(1, 8, 8))
    assert report.alignment_error.startswith("alignment stops at candidate layer #1 1: unknown layer type "
                                             "Block (it holds parameters: layer_scale 4x1x1; netparity aligns "
                                             "conv2d, dense, batchnorm, prelu, layernorm, channel_scale layers "
                                             "only)"), report.alignment_error
    # a PReLU is a kind now: an extra one is named as an extra layer
    report = verify_port(torch_lenet(), torch_lenet(prelu=True), input_shape=(1, 28, 28))
    assert report.alignment_error.startswith("extra layer: candidate #2 features.2 (PReLU, prelu 6)"), \
        report.alignment_error

    class Embedded(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.embed = nn.Embedding(10, 4)

        def forward(self, x):
            return self.conv(x).mean((2, 3)) + self.embed(torch.zeros(x.shape[0], dtype=torch.long))

    reference = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    report = verify_port(reference, Embedded(), input_shape=(1, 8, 8))
    assert "alignment stops at candidate layer #1 embed: unknown layer type Embedding" in report.alignment_error


def test_subclassed_keras_models_are_refused_clearly():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(keras.ops.reshape(x, (x.shape[0], -1)))

    with pytest.raises(NotSupported, match="functional"):
        verify_port(torch_lenet(), Sub(), input_shape=(1, 28, 28))


def test_transfer_weights_torch_to_mxnet():
    source = torch_lenet()
    with torch.no_grad():  # "trained" weights and statistics
        for module in source.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    target = gluon_lenet()
    report = transfer_weights(source, target, input_shape=(1, 28, 28))
    assert report.weights_copied and report.equivalent, report.summary()
    x = np.random.default_rng(5).standard_normal((4, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = source(torch.from_numpy(x)).numpy()
    got = target(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------
# the command-line entry (wired into netparity.cli elsewhere)
# ---------------------------------------------------------------------------------------

PORTS = '''
import torch
import keras


def build_torch():
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 5)).eval()


def build_keras():
    L = keras.layers
    x = inputs = keras.Input((8, 8, 1))
    x = L.ZeroPadding2D(1)(x)
    x = L.Conv2D(4, 3)(x)
    x = L.BatchNormalization(epsilon=1e-5, momentum=0.9)(x)  # PyTorch's eps and momentum 0.1
    x = L.ReLU()(x)
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(5)(x))


def broken():
    raise RuntimeError("no weights file")


def not_a_model():
    return 42
'''


def test_verify_command(tmp_path, capsys):
    module = tmp_path / "my_port.py"
    module.write_text(PORTS)
    out = tmp_path / "report.json"
    assert verify_command(f"{module}:build_torch", f"{module}:build_keras", 8, out) == 0
    data = json.loads(out.read_text())
    assert data["equivalent"] and data["input_shape"] == [1, 8, 8]
    assert "EQUIVALENT" in capsys.readouterr().out
    for side, message in ((f"{tmp_path}/nope.py:build", "no such file"),
                          (f"{module}:missing", "has no function 'missing'"),
                          (f"{module}:broken", "broken() raised RuntimeError: no weights file"),
                          (f"{module}:not_a_model", "not a native model"),
                          ("not_a_zoo_model", "is not a zoo model")):
        assert verify_command(side, f"{module}:build_torch", 8, None) == 2
        assert message in capsys.readouterr().out.replace("\n", "")
    with pytest.raises(PortError, match="input_shape"):
        verify_port(torch_lenet(), torch_lenet())
    # eval only, and the old opt-in flag accepted as a no-op
    assert verify_command(f"{module}:build_torch", f"{module}:build_keras", 8, out, eval_only=True) == 0
    assert json.loads(out.read_text())["training"] is None
    assert "training mode: not checked" in capsys.readouterr().out
    assert verify_command(f"{module}:build_torch", f"{module}:build_keras", 8, out, training_step=True) == 0
    assert json.loads(out.read_text())["training"]["ok"] is True


def test_port_errors_are_netparity_errors():
    """One base for the CLI to catch: bad input to verify is a NetparityError, never a traceback."""
    assert issubclass(PortError, NetparityError) and issubclass(PortError, ValueError)
    assert issubclass(NotSupported, NetparityError) and issubclass(NotSupported, TypeError)
    with pytest.raises(NetparityError):
        verify_port(torch_lenet(), object(), input_shape=(1, 28, 28))


def test_verify_on_the_command_line(tmp_path):
    """``netparity verify`` runs the training-mode comparison by default; --eval-only skips it;
    --training-step is still accepted (it changes nothing)."""
    from typer.testing import CliRunner

    from netparity.cli import app

    module = tmp_path / "my_port.py"
    module.write_text(PORTS)
    sides = [f"{module}:build_torch", f"{module}:build_keras", "--input-size", "8"]
    runner = CliRunner()
    for extra, training in (([], "training mode: agrees"), (["--eval-only"], "training mode: not checked"),
                            (["--training-step"], "training mode: agrees")):
        result = runner.invoke(app, ["verify", *sides, *extra])
        assert result.exit_code == 0, result.output
        assert training in result.output and "EQUIVALENT" in result.output


def test_fused_activations_shared_layers_and_nested_models():
    """Keras/Gluon activation= is compared before the activation; a nested Sequential is walked
    into; each call of a shared layer is its own entry; dropout makes the training check moot."""
    nn, L = torch.nn, keras.layers

    class Torch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.shared = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)
            self.drop, self.fc = nn.Dropout(0.3), nn.Linear(4 * 8 * 8, 3)

        def forward(self, x):
            x = torch.relu(self.bn(self.conv(x)))
            a = torch.relu(self.shared(x))
            b = torch.relu(self.shared(a))
            return self.fc(self.drop(torch.flatten(a + b, 1)))

    inner = keras.Sequential([L.Conv2D(4, 3, padding="same"), L.BatchNormalization(epsilon=1e-5, momentum=0.9),
                              L.ReLU()])
    shared = L.Conv2D(4, 1, activation="relu")
    x = inputs = keras.Input((8, 8, 2))
    a = shared(inner(x))
    b = shared(a)
    x = L.Dense(3)(L.Dropout(0.3)(L.Flatten()(L.Add()([a, b]))))
    model = keras.Model(inputs, x)
    report = verify_port(Torch().eval(), model, training_step=True)
    assert report.equivalent, report.summary()
    assert [row.kind for row in report.layers] == ["conv2d", "batchnorm", "conv2d", "conv2d", "dense"]
    assert report.layers[3].candidate_name.endswith("#2") and report.layers[3].reference_name == "shared#2"
    assert report.layers[0].candidate_name.startswith(inner.name + "/")
    assert report.training.meaningful and report.training.ok and "dropout" in report.training.note
    assert [entry.get("skipped") for entry in report.training.layers][-1] == "after a dropout"


def test_keras_flatten_order_is_followed_through_permute():
    """A Keras port that permutes to channels-first before Flatten flattens in PyTorch's order:
    its dense rows need no permutation, and the copy must not apply one."""
    nn, L = torch.nn, keras.layers
    reference = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = inputs = keras.Input((8, 8, 1))
    x = L.Flatten()(L.Permute((3, 1, 2))(L.Conv2D(4, 3, activation="relu")(x)))
    candidate = keras.Model(inputs, L.Dense(5)(x))
    layers = trace(candidate, np.zeros((1, 1, 8, 8), np.float32))
    assert layers[1].flatten_source is None
    report = verify_port(reference, candidate)
    assert report.equivalent, report.summary()


# ---------------------------------------------------------------------------------------
# a Keras port that takes NCHW input and permutes it (as ports from PyTorch often do)
# ---------------------------------------------------------------------------------------

def _torch_small():
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5)).eval()


def _keras_nchw_input(flatten_channels_first=False, nested=False):
    """Input (2, 6, 6), NCHW like the PyTorch model; Permute((2, 3, 1)) makes it channels_last."""
    L = keras.layers
    body = [L.Conv2D(4, 3, padding="same"), L.BatchNormalization(epsilon=1e-5, momentum=0.9), L.ReLU()]
    x = inputs = keras.Input((2, 6, 6))
    if nested:
        x = keras.Sequential([L.Permute((2, 3, 1)), *body])(L.Rescaling(1.0)(x))
    else:
        x = L.Permute((2, 3, 1))(x)
        for layer in body:
            x = layer(x)
    if flatten_channels_first:
        x = L.Permute((3, 1, 2))(x)  # back to (C, H, W): flattens in PyTorch's order
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(5)(x))


def test_keras_nchw_input_through_permute_is_followed():
    for variant in ({}, {"flatten_channels_first": True}, {"nested": True}):
        candidate = _keras_nchw_input(**variant)
        assert declared_input_shape(candidate) == (2, 6, 6)
        layers = trace(candidate, np.zeros((1, 2, 6, 6), np.float32))
        assert layers[0].output.shape == (1, 4, 6, 6) and layers[-1].output.shape == (1, 5)
        report = verify_port(_torch_small(), candidate)  # the input shape read from the Keras model
        assert report.equivalent and report.input_shape == [2, 6, 6], (variant, report.summary())
        assert report.training is not None and report.training.ok
    # an unbuilt Sequential that starts with the Permute: built for NCHW input
    L = keras.layers
    sequential = keras.Sequential([L.Permute((2, 3, 1)), L.Conv2D(4, 3, padding="same"),
                                   L.BatchNormalization(epsilon=1e-5, momentum=0.9), L.ReLU(), L.Flatten(),
                                   L.Dense(5)])
    report = verify_port(_torch_small(), sequential, input_shape=(2, 6, 6))
    assert report.equivalent and tuple(sequential.inputs[0].shape[1:]) == (2, 6, 6), report.summary()
    # and as the reference, into a Gluon port
    gluon = mx.gluon.nn.HybridSequential()
    gluon.add(mx.gluon.nn.Conv2D(4, 3, padding=1, in_channels=2), mx.gluon.nn.BatchNorm(in_channels=4),
              mx.gluon.nn.Activation("relu"), mx.gluon.nn.Dense(5, in_units=4 * 6 * 6))
    gluon.initialize()
    report = verify_port(_keras_nchw_input(), gluon)
    assert report.equivalent, report.summary()


def test_keras_input_permutes_netparity_cannot_follow_are_refused_clearly(tmp_path, capsys):
    L = keras.layers
    x = inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 1)(L.Permute((3, 1, 2))(x))  # (W, C, H) into a channels_last conv: no image layout
    odd = keras.Model(inputs, x)
    with pytest.raises(NotSupported, match=r"Permute\(3, 1, 2\).*axes as NWCH.*NCHW or NHWC inputs only"):
        verify_port(_torch_small(), odd, input_shape=(2, 6, 6))
    x = inputs = keras.Input((2, 6, 6))
    both = keras.Model(inputs, L.Add()([L.Conv2D(2, 1)(L.Permute((2, 3, 1))(x)),
                                        L.Permute((2, 3, 1))(L.Conv2D(2, 1, data_format="channels_first")(x))]))
    with pytest.raises(NotSupported, match="on one path and into other layers on another"):
        trace(both, np.zeros((1, 2, 6, 6), np.float32))
    module = tmp_path / "odd.py"
    module.write_text("import keras\n\ndef build():\n    L = keras.layers\n    x = inputs = keras.Input((6, 6, 2))\n"
                      "    return keras.Model(inputs, L.Conv2D(4, 1)(L.Permute((3, 1, 2))(x)))\n")
    assert verify_command(f"{module}:build", f"{module}:build", 6, None) == 2
    out = capsys.readouterr().out
    assert "NCHW or NHWC inputs only" in out and "Traceback" not in out
