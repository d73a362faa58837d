"""A catalogue of small hand-written native models: correct ports and wrong ports with one classic mistake.

Every network is described once as a short list of ops (an *architecture*), and built natively in
PyTorch (an ``nn.Module`` whose ``forward`` runs its submodules and functional ops in order), MXNet
Gluon (a ``HybridBlock``) and Keras 3 (a functional, channels_last ``keras.Model`` that pads
explicitly). A wrong port is the same op list with exactly ONE op changed (see ``MISTAKES``), so it
differs from its reference in exactly one place; a correct port is the unchanged op list in another
framework.

Conventions the correct ports rely on (and that a weight copy must apply):

- canonical weights are PyTorch's layout, keyed ``<layer>.<param>``: conv OIHW, dense (out, in),
  BatchNorm ``weight``/``bias``/``running_mean``/``running_var``;
- Keras: HWIO kernels, (in, out) dense kernels, and for a dense layer fed by a Flatten the rows are
  permuted from CHW to HWC order (Keras flattens channels_last);
- BatchNorm momentum is given in PyTorch's convention (weight of the new batch statistic): MXNet and
  Keras get ``1 - momentum``.

Native layer names are the same in all three frameworks (``conv1``, ``bn1``, ``fc1``...): PyTorch
attribute names, Gluon child attribute names (``_collect_params_with_prefix`` keys ``conv1.weight``) and
Keras layer names.

``Entry.wrong_layer_hint`` is the first *parameterised* layer (conv, dense, batchnorm) whose output
should diverge; ``Entry.culprit`` names the op that is actually wrong when it is not parameterised
(a pool, a flatten, an activation, a dropout). ``Entry.training_only`` marks mistakes that only show
after a training-mode step (BatchNorm momentum).

Every factory takes no arguments and returns a model initialised with seeded random weights (BatchNorm
running statistics far from 0/1 and non-zero biases, so that every mistake is visible numerically).
The helpers at the bottom (``canonical_weights``, ``random_canonical``, ``set_canonical``, ``forward``,
``train_forward``, ``running_means``) are what tests/test_diagnosis.py uses to check the catalogue
without verify_port.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

FRAMEWORKS = ("torch", "mxnet", "keras")

MISTAKE_CODES = (
    "same_padding",
    "batchnorm_eps",
    "batchnorm_momentum",
    "flatten_order",
    "dense_not_transposed",
    "kernel_flipped",
    "kernel_transposed",
    "ceil_mode",
    "count_include_pad",
    "maxpool_zero_padding",
    "missing_relu",
    "activation_order",
    "dropout_training",
    "missing_bias",
)


# ----------------------------------------------------------------------------------------- ops
# Each op is a dict; parameterised ops carry a "name". Flags on an op describe a mistake.

def conv(name, cin, cout, k=3, s=1, p=1, bias=True):
    return {"op": "conv", "name": name, "cin": cin, "cout": cout, "k": k, "s": s, "p": p, "bias": bias}


def bn(name, c, eps=1e-5, momentum=0.1):
    return {"op": "bn", "name": name, "c": c, "eps": eps, "momentum": momentum}


def dense(name, cin, cout):
    return {"op": "dense", "name": name, "cin": cin, "cout": cout}


def act(kind="relu"):
    return {"op": "act", "kind": kind}


def maxpool(k, s, p=0, ceil=False):
    return {"op": "maxpool", "k": k, "s": s, "p": p, "ceil": ceil}


def avgpool(k, s, p=0, include_pad=True):
    return {"op": "avgpool", "k": k, "s": s, "p": p, "include_pad": include_pad}


def flatten():
    return {"op": "flatten"}


def gap():
    return {"op": "gap"}


def dropout(p=0.5):
    return {"op": "dropout", "p": p}


def res_begin():
    return {"op": "res_begin"}


def res_add():
    return {"op": "res_add"}


ARCHS: dict[str, tuple[tuple[int, int, int], tuple[dict, ...]]] = {
    # conv s2 -> BN -> ReLU -> maxpool 3/2 p1 -> conv -> BN -> ReLU -> flatten -> fc1 -> ReLU -> dropout
    # -> fc2 (square, 32x32) -> ReLU -> fc3
    "cnn": ((1, 28, 28), (
        conv("conv1", 1, 8, 3, 2, 1), bn("bn1", 8), act(), maxpool(3, 2, 1),
        conv("conv2", 8, 16, 3, 1, 1), bn("bn2", 16), act(), flatten(),
        dense("fc1", 16 * 7 * 7, 32), act(), dropout(0.5), dense("fc2", 32, 32), act(), dense("fc3", 32, 10),
    )),
    # Caffe/GoogLeNet-style ceil-mode max pool: 14 -> 7 (floor mode gives 6); GAP keeps the head's shape.
    "ceil": ((1, 28, 28), (
        conv("conv1", 1, 8, 3, 2, 1), bn("bn1", 8), act(), maxpool(3, 2, 0, ceil=True),
        conv("conv2", 8, 16, 3, 1, 1), bn("bn2", 16), act(), gap(), flatten(), dense("fc", 16, 10),
    )),
    # Average pooling with padding (count_include_pad=True, PyTorch's and MXNet's default) on an odd
    # 15x15 map, where Keras' 'same' pads symmetrically (1, 1) but excludes the padding from the count.
    "avg": ((1, 30, 30), (
        conv("conv1", 1, 8, 3, 2, 1), bn("bn1", 8), act(), avgpool(3, 2, 1, include_pad=True),
        conv("conv2", 8, 16, 3, 1, 1), bn("bn2", 16), act(), flatten(), dense("fc", 16 * 8 * 8, 10),
    )),
    # A max-pool stem straight on the (possibly negative) input: its padding value matters.
    "poolstem": ((1, 28, 28), (
        maxpool(3, 2, 1), conv("conv1", 1, 8, 3, 1, 1), bn("bn1", 8), act(),
        conv("conv2", 8, 16, 3, 2, 1), bn("bn2", 16), act(), flatten(), dense("fc", 16 * 7 * 7, 10),
    )),
    # One basic residual block: relu(x + bn3(conv3(relu(bn2(conv2(x)))))).
    "res": ((1, 28, 28), (
        conv("conv1", 1, 8, 3, 2, 1), bn("bn1", 8), act(),
        res_begin(), conv("conv2", 8, 8), bn("bn2", 8), act(), conv("conv3", 8, 8), bn("bn3", 8), res_add(), act(),
        conv("conv4", 8, 16, 3, 2, 1), bn("bn4", 16), act(), gap(), flatten(), dense("fc", 16, 10),
    )),
}


def _index(ops, **match) -> int:
    for i, op in enumerate(ops):
        if all(op.get(k) == v for k, v in match.items()):
            return i
    raise KeyError(match)


def _replace(ops, i, **changes):
    ops = [dict(op) for op in ops]
    ops[i].update(changes)
    return tuple(ops)


def _remove(ops, i):
    return tuple(dict(op) for j, op in enumerate(ops) if j != i)


def _swap(ops, i, j):
    ops = [dict(op) for op in ops]
    ops[i], ops[j] = ops[j], ops[i]
    return tuple(ops)


def _act_after_add(ops):
    return _index(ops, op="res_add") + 1


# mistake code -> (architecture, op list transform given the framework, wrong_layer_hint, culprit, note)
MISTAKES: dict[str, tuple[str, Callable, str, str, str]] = {
    "same_padding": ("cnn", lambda ops, fw: _replace(ops, _index(ops, name="conv1"), same=True), "conv1", "conv1",
                     "stride-2 3x3 conv padded (0, 1) like Keras padding='same' on an even input, not (1, 1)"),
    "batchnorm_eps": ("cnn", lambda ops, fw: _replace(ops, _index(ops, name="bn1"), eps=1e-3), "bn1", "bn1",
                      "BatchNorm epsilon 1e-3 (Keras' default) where the reference uses 1e-5"),
    "batchnorm_momentum": ("cnn", lambda ops, fw: _replace(ops, _index(ops, name="bn1"), momentum=0.9),
                           "bn1", "bn1",
                           "BatchNorm momentum in the wrong convention: PyTorch's 0.1 passed to MXNet/Keras "
                           "(which means 0.9 there), or 0.9 passed to PyTorch; differs only after a training step"),
    "flatten_order": ("cnn", lambda ops, fw: _replace(ops, _index(ops, op="flatten"), wrong_order=True), "fc1",
                      "flatten",
                      "flattens in the other order (HWC in PyTorch/MXNet via a permute, CHW in Keras via a "
                      "Permute) while the weights follow the framework's own flatten convention"),
    "dense_not_transposed": ("cnn", lambda ops, fw: _replace(ops, _index(ops, name="fc2"), not_transposed=True),
                             "fc2", "fc2", "square dense layer computing x @ W instead of x @ W.T"),
    "kernel_flipped": ("cnn", lambda ops, fw: _replace(ops, _index(ops, name="conv2"), flipped=True), "conv2",
                       "conv2", "conv kernel flipped in H and W (true convolution instead of correlation)"),
    "kernel_transposed": ("cnn", lambda ops, fw: _replace(ops, _index(ops, name="conv2"), transposed=True),
                          "conv2", "conv2", "conv kernel with H and W swapped"),
    "missing_bias": ("cnn", lambda ops, fw: _replace(ops, _index(ops, name="conv2"), bias=False), "conv2", "conv2",
                     "conv2 has no bias where the reference has one (its parameter list is one shorter)"),
    "dropout_training": ("cnn", lambda ops, fw: _replace(ops, _index(ops, op="dropout"), always=True), "fc2",
                         "dropout", "dropout applied even in eval mode (F.dropout(x, training=True))"),
    "ceil_mode": ("ceil", lambda ops, fw: _replace(ops, _index(ops, op="maxpool"), ceil=False), "conv2", "maxpool",
                  "max pool in floor mode where the reference uses ceil_mode=True: 6x6 instead of 7x7"),
    "count_include_pad": ("avg", lambda ops, fw: _replace(ops, _index(ops, op="avgpool"), include_pad=False),
                          "conv2", "avgpool",
                          "average pool excludes the padding from the count (count_include_pad=False, or Keras "
                          "padding='same') where the reference includes it"),
    "activation_order": ("avg", lambda ops, fw: _swap(ops, _index(ops, op="act"), _index(ops, op="avgpool")),
                         "conv2", "avgpool",
                         "ReLU applied after the average pool instead of before it"),
    "maxpool_zero_padding": ("poolstem", lambda ops, fw: _replace(ops, _index(ops, op="maxpool"), zero_pad=True),
                             "conv1", "maxpool",
                             "max pool padded with zeros (ZeroPadding2D + MaxPooling2D) instead of -inf: wrong "
                             "where a border window holds only negative values"),
    "missing_relu": ("res", lambda ops, fw: _remove(ops, _act_after_add(ops)), "conv4", "res_add",
                     "no ReLU after the residual add"),
}


@dataclass(frozen=True)
class Entry:
    name: str
    framework: str
    factory: Callable
    mistake_code: str | None
    wrong_layer_hint: str | None
    input_shape: tuple[int, int, int]
    reference_factory: Callable
    reference_framework: str = "torch"
    arch: str = ""
    culprit: str | None = None
    training_only: bool = False
    note: str = ""
    ops: tuple = field(default=(), repr=False)
    reference_ops: tuple = field(default=(), repr=False)


# ------------------------------------------------------------------------------- shape inference

def infer_shapes(ops, input_shape):
    """Per op, the (C, H, W) or (F,) shape of its output; and, per dense fed by a flatten, the CHW."""
    shape = tuple(input_shape)
    shapes, flatten_chw, saved, last_flatten = [], {}, None, None
    for op in ops:
        kind = op["op"]
        if kind == "conv":
            c, h, w = shape
            if op.get("same"):
                h, w = -(-h // op["s"]), -(-w // op["s"])
            else:
                h = (h + 2 * op["p"] - op["k"]) // op["s"] + 1
                w = (w + 2 * op["p"] - op["k"]) // op["s"] + 1
            shape = (op["cout"], h, w)
        elif kind in ("maxpool", "avgpool"):
            c, h, w = shape
            size = []
            for n in (h, w):
                span = n + 2 * op["p"] - op["k"]
                out = (-(-span // op["s"]) if op.get("ceil") else span // op["s"]) + 1
                if op.get("ceil") and (out - 1) * op["s"] >= n + op["p"]:
                    out -= 1
                size.append(out)
            shape = (c, *size)
        elif kind == "gap":
            shape = (shape[0], 1, 1)
        elif kind == "flatten":
            last_flatten = shape
            shape = (int(np.prod(shape)),)
        elif kind == "dense":
            if last_flatten is not None and last_flatten[1:] != (1, 1):
                flatten_chw[op["name"]] = last_flatten
            last_flatten = None
            shape = (op["cout"],)
        elif kind == "res_begin":
            saved = shape
        elif kind == "res_add":
            assert saved == shape, (saved, shape)
        shapes.append(shape)
    return shapes, flatten_chw


def param_ops(ops):
    return [op for op in ops if op["op"] in ("conv", "bn", "dense")]


# ------------------------------------------------------------------------------------ PyTorch

@functools.cache
def _torch_classes():
    from netparity.backends.frameworks import import_torch

    torch = import_torch()
    nn, F = torch.nn, torch.nn.functional

    class FlippedConv2d(nn.Conv2d):
        """A 'port' that convolves with the kernel flipped in H and W."""

        def forward(self, x):
            return self._conv_forward(x, self.weight.flip(-1, -2), self.bias)

    class TransposedConv2d(nn.Conv2d):
        """A 'port' that swaps the kernel's H and W axes."""

        def forward(self, x):
            return self._conv_forward(x, self.weight.transpose(-1, -2), self.bias)

    class TFSameConv2d(nn.Conv2d):
        """Imitates Keras/TF padding='same' at stride 2: pads (0, 1) instead of (1, 1)."""

        def forward(self, x):
            return self._conv_forward(F.pad(x, (0, 1, 0, 1)), self.weight, self.bias)

    class UntransposedLinear(nn.Linear):
        """x @ W instead of x @ W.T (only runs when in == out)."""

        def forward(self, x):
            return F.linear(x, self.weight.t(), self.bias)

    class AlwaysDropout(nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, x):
            return F.dropout(x, self.p, training=True)

    class Net(nn.Module):
        def __init__(self, ops):
            super().__init__()
            self.ops = ops
            self.steps = []
            for i, op in enumerate(ops):
                kind, module = op["op"], None
                if kind == "conv":
                    cls = (FlippedConv2d if op.get("flipped") else TransposedConv2d if op.get("transposed")
                           else TFSameConv2d if op.get("same") else nn.Conv2d)
                    padding = 0 if op.get("same") else op["p"]
                    module = cls(op["cin"], op["cout"], op["k"], op["s"], padding, bias=op["bias"])
                elif kind == "bn":
                    module = nn.BatchNorm2d(op["c"], eps=op["eps"], momentum=op["momentum"])
                elif kind == "dense":
                    cls = UntransposedLinear if op.get("not_transposed") else nn.Linear
                    module = cls(op["cin"], op["cout"])
                elif kind == "dropout":
                    module = AlwaysDropout(op["p"]) if op.get("always") else nn.Dropout(op["p"])
                if module is not None:
                    name = op.get("name", f"drop{i}")
                    setattr(self, name, module)
                    self.steps.append((kind, op, name))
                else:
                    self.steps.append((kind, op, None))

        def forward(self, x):
            saved = None
            for kind, op, name in self.steps:
                if name is not None:
                    x = getattr(self, name)(x)
                elif kind == "act":
                    x = torch.relu(x) if op["kind"] == "relu" else torch.tanh(x)
                elif kind == "maxpool":
                    if op.get("zero_pad"):
                        x = F.max_pool2d(F.pad(x, (op["p"],) * 4), op["k"], op["s"], 0)
                    else:
                        x = F.max_pool2d(x, op["k"], op["s"], op["p"], ceil_mode=op["ceil"])
                elif kind == "avgpool":
                    x = F.avg_pool2d(x, op["k"], op["s"], op["p"], count_include_pad=op["include_pad"])
                elif kind == "gap":
                    x = F.adaptive_avg_pool2d(x, 1)
                elif kind == "flatten":
                    x = (x.permute(0, 2, 3, 1) if op.get("wrong_order") else x).flatten(1)
                elif kind == "res_begin":
                    saved = x
                elif kind == "res_add":
                    x = x + saved
            return x

    return Net


def build_torch(ops):
    model = _torch_classes()(ops)
    return model.eval()


# -------------------------------------------------------------------------------------- MXNet

@functools.cache
def _mxnet_classes():
    from netparity.backends.frameworks import import_mxnet

    mx = import_mxnet()
    nn = mx.gluon.nn

    class FlippedConv2D(nn.Conv2D):
        def hybrid_forward(self, F, x, weight, bias=None):
            return super().hybrid_forward(F, x, F.flip(F.flip(weight, axis=2), axis=3), bias)

    class TransposedConv2D(nn.Conv2D):
        def hybrid_forward(self, F, x, weight, bias=None):
            return super().hybrid_forward(F, x, F.transpose(weight, axes=(0, 1, 3, 2)), bias)

    class TFSameConv2D(nn.Conv2D):
        def hybrid_forward(self, F, x, weight, bias=None):
            x = F.pad(x, mode="constant", pad_width=(0, 0, 0, 0, 0, 1, 0, 1), constant_value=0)
            return super().hybrid_forward(F, x, weight, bias)

    class UntransposedDense(nn.Dense):
        def hybrid_forward(self, F, x, weight, bias=None):
            return super().hybrid_forward(F, x, F.transpose(weight), bias)

    class AlwaysDropout(nn.HybridBlock):
        def __init__(self, p, **kwargs):
            super().__init__(**kwargs)
            self.p = p

        def hybrid_forward(self, F, x):
            return F.Dropout(x, p=self.p, mode="always")

    class Net(nn.HybridBlock):
        def __init__(self, ops, **kwargs):
            super().__init__(**kwargs)
            self.steps = []
            with self.name_scope():
                for i, op in enumerate(ops):
                    kind, block = op["op"], None
                    if kind == "conv":
                        cls = (FlippedConv2D if op.get("flipped") else TransposedConv2D if op.get("transposed")
                               else TFSameConv2D if op.get("same") else nn.Conv2D)
                        padding = 0 if op.get("same") else op["p"]
                        block = cls(op["cout"], op["k"], strides=op["s"], padding=padding, use_bias=op["bias"],
                                    in_channels=op["cin"])
                    elif kind == "bn":
                        block = nn.BatchNorm(epsilon=op["eps"], momentum=1 - op["momentum"], in_channels=op["c"])
                    elif kind == "dense":
                        cls = UntransposedDense if op.get("not_transposed") else nn.Dense
                        block = cls(op["cout"], in_units=op["cin"])
                    elif kind == "dropout":
                        block = AlwaysDropout(op["p"]) if op.get("always") else nn.Dropout(op["p"])
                    elif kind == "maxpool" and not op.get("zero_pad"):
                        block = nn.MaxPool2D(op["k"], op["s"], op["p"], ceil_mode=op["ceil"])
                    elif kind == "maxpool":
                        block = nn.MaxPool2D(op["k"], op["s"], 0)
                    elif kind == "avgpool":
                        block = nn.AvgPool2D(op["k"], op["s"], op["p"], count_include_pad=op["include_pad"])
                    elif kind == "gap":
                        block = nn.GlobalAvgPool2D()
                    if block is not None:
                        name = op.get("name", f"{kind}{i}")
                        setattr(self, name, block)
                        self.steps.append((kind, op, name))
                    else:
                        self.steps.append((kind, op, None))

        def hybrid_forward(self, F, x):
            saved = None
            for kind, op, name in self.steps:
                if kind == "maxpool" and op.get("zero_pad"):
                    p = op["p"]
                    x = F.pad(x, mode="constant", pad_width=(0, 0, 0, 0, p, p, p, p), constant_value=0)
                if name is not None:
                    x = getattr(self, name)(x)
                elif kind == "act":
                    x = F.relu(x) if op["kind"] == "relu" else F.tanh(x)
                elif kind == "flatten":
                    x = F.flatten(F.transpose(x, axes=(0, 2, 3, 1)) if op.get("wrong_order") else x)
                elif kind == "res_begin":
                    saved = x
                elif kind == "res_add":
                    x = x + saved
            return x

    return Net


def build_mxnet(ops):
    net = _mxnet_classes()(ops)
    import mxnet as mx

    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    return net


# -------------------------------------------------------------------------------------- Keras

@functools.cache
def _keras_classes():
    from netparity.backends.frameworks import import_keras

    keras = import_keras()
    ops_ = keras.ops

    class NegInfPad2D(keras.layers.Layer):
        """Constant padding with -inf (PyTorch's implicit max-pool padding), channels_last."""

        def __init__(self, pads, **kwargs):
            super().__init__(**kwargs)
            self.pads = tuple(int(p) for p in pads)  # top, bottom, left, right

        def call(self, x):
            t, b, l, r = self.pads
            return ops_.pad(x, [[0, 0], [t, b], [l, r], [0, 0]], mode="constant", constant_values=float("-inf"))

        def compute_output_shape(self, s):
            t, b, l, r = self.pads
            return (s[0], None if s[1] is None else s[1] + t + b, None if s[2] is None else s[2] + l + r, s[3])

        def get_config(self):
            return {**super().get_config(), "pads": self.pads}

    class FlippedConv2D(keras.layers.Conv2D):
        def convolution_op(self, inputs, kernel):
            return super().convolution_op(inputs, ops_.flip(ops_.flip(kernel, axis=0), axis=1))

    class TransposedConv2D(keras.layers.Conv2D):
        def convolution_op(self, inputs, kernel):
            return super().convolution_op(inputs, ops_.transpose(kernel, (1, 0, 2, 3)))

    class UntransposedDense(keras.layers.Dense):
        def call(self, inputs, training=None):
            x = ops_.matmul(inputs, ops_.transpose(self.kernel))
            return x if self.bias is None else ops_.add(x, self.bias)

    class AlwaysDropout(keras.layers.Dropout):
        def call(self, inputs, training=None):
            return super().call(inputs, training=True)

    return keras, NegInfPad2D, FlippedConv2D, TransposedConv2D, UntransposedDense, AlwaysDropout


def build_keras(ops, input_shape):
    keras, NegInfPad2D, FlippedConv2D, TransposedConv2D, UntransposedDense, AlwaysDropout = _keras_classes()
    L = keras.layers
    c, h, w = input_shape
    inputs = keras.Input((h, w, c))
    x, saved = inputs, None
    shapes, _ = infer_shapes(ops, input_shape)
    prev_shape = tuple(input_shape)
    for i, op in enumerate(ops):
        kind = op["op"]
        if kind == "conv":
            if op.get("same"):
                x = L.Conv2D(op["cout"], op["k"], strides=op["s"], padding="same", use_bias=op["bias"],
                             name=op["name"])(x)
            else:
                if op["p"]:
                    x = L.ZeroPadding2D(op["p"])(x)
                cls = FlippedConv2D if op.get("flipped") else TransposedConv2D if op.get("transposed") else L.Conv2D
                x = cls(op["cout"], op["k"], strides=op["s"], padding="valid", use_bias=op["bias"],
                        name=op["name"])(x)
        elif kind == "bn":
            x = L.BatchNormalization(epsilon=op["eps"], momentum=1 - op["momentum"], name=op["name"])(x)
        elif kind == "act":
            x = L.Activation(op["kind"])(x)
        elif kind == "maxpool":
            p, (_, hin, win) = op["p"], prev_shape
            out_h, out_w = shapes[i][1:]
            extra_h = max(0, (out_h - 1) * op["s"] + op["k"] - (hin + 2 * p))
            extra_w = max(0, (out_w - 1) * op["s"] + op["k"] - (win + 2 * p))
            if op.get("zero_pad"):
                x = L.ZeroPadding2D(p)(x) if p else x
            elif p or extra_h or extra_w:
                x = NegInfPad2D((p, p + extra_h, p, p + extra_w))(x)
            x = L.MaxPooling2D(op["k"], op["s"], padding="valid")(x)
        elif kind == "avgpool":
            if op["include_pad"]:
                x = L.ZeroPadding2D(op["p"])(x) if op["p"] else x
                x = L.AveragePooling2D(op["k"], op["s"], padding="valid")(x)
            else:
                # Keras 'same' excludes the padding; it is symmetric (p, p) only on these sizes.
                _, hin, win = prev_shape
                for n in (hin, win):
                    out = -(-n // op["s"])
                    assert max(0, (out - 1) * op["s"] + op["k"] - n) == 2 * op["p"], "asymmetric 'same'"
                x = L.AveragePooling2D(op["k"], op["s"], padding="same")(x)
        elif kind == "gap":
            x = L.GlobalAveragePooling2D(keepdims=True)(x)
        elif kind == "flatten":
            if op.get("wrong_order"):
                x = L.Permute((3, 1, 2))(x)
            x = L.Flatten(name="flatten")(x)
        elif kind == "dense":
            cls = UntransposedDense if op.get("not_transposed") else L.Dense
            x = cls(op["cout"], name=op["name"])(x)
        elif kind == "dropout":
            x = (AlwaysDropout if op.get("always") else L.Dropout)(op["p"])(x)
        elif kind == "res_begin":
            saved = x
        elif kind == "res_add":
            x = L.Add()([x, saved])
        prev_shape = shapes[i]
    return keras.Model(inputs, x)


# ------------------------------------------------------------------------------- weights, runs

def random_canonical(ops, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded canonical weights (PyTorch layout) with visible biases and BatchNorm statistics."""
    rng = np.random.default_rng(seed)
    out = {}
    for op in param_ops(ops):
        n = op["name"]
        if op["op"] == "conv":
            fan_in = op["cin"] * op["k"] ** 2
            out[f"{n}.weight"] = rng.normal(0, 1.5 / np.sqrt(fan_in), (op["cout"], op["cin"], op["k"], op["k"]))
            out[f"{n}.bias"] = rng.normal(0, 0.5, op["cout"])
        elif op["op"] == "dense":
            out[f"{n}.weight"] = rng.normal(0, 1.5 / np.sqrt(op["cin"]), (op["cout"], op["cin"]))
            out[f"{n}.bias"] = rng.normal(0, 0.5, op["cout"])
        else:
            c = op["c"]
            out[f"{n}.weight"] = rng.uniform(0.5, 1.5, c)
            out[f"{n}.bias"] = rng.normal(0, 0.3, c)
            out[f"{n}.running_mean"] = rng.normal(0, 0.3, c)
            out[f"{n}.running_var"] = rng.uniform(0.05, 0.3, c)
    return {k: v.astype(np.float32) for k, v in out.items()}


def set_canonical(model, framework: str, weights: dict, ops, input_shape) -> None:
    """Load canonical weights into a catalogue model, by the framework conventions of this module.

    A parameter the model does not have (a missing bias) is skipped. The Keras flatten permutation is
    the standard one (CHW rows -> HWC rows) whatever the model does, which is what makes
    ``flatten_order`` a mistake."""
    _, flatten_chw = infer_shapes(ops, input_shape)
    for op in param_ops(ops):
        n = op["name"]
        if framework == "torch":
            import torch

            module = getattr(model, n)
            with torch.no_grad():
                for key, tensor in [*module.named_parameters(), *module.named_buffers()]:
                    if f"{n}.{key}" in weights:
                        tensor.copy_(torch.from_numpy(weights[f"{n}.{key}"]))
        elif framework == "mxnet":
            import mxnet as mx

            block = getattr(model, n)
            names = {"weight": "weight", "bias": "bias"} if op["op"] != "bn" else {
                "gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"}
            for key, param in block._collect_params_with_prefix().items():
                source = weights.get(f"{n}.{names[key]}")
                if source is not None:
                    param.set_data(mx.nd.array(source))
        else:
            layer = model.get_layer(n)
            if op["op"] == "conv":
                values = [weights[f"{n}.weight"].transpose(2, 3, 1, 0)]
                if op["bias"] and f"{n}.bias" in weights:
                    values.append(weights[f"{n}.bias"])
            elif op["op"] == "dense":
                w = weights[f"{n}.weight"]
                if n in flatten_chw:
                    c, h, ww = flatten_chw[n]
                    kernel = w.reshape(-1, c, h, ww).transpose(2, 3, 1, 0).reshape(h * ww * c, -1)
                else:
                    kernel = w.T
                values = [kernel, weights[f"{n}.bias"]]
            else:
                values = [weights[f"{n}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
            layer.set_weights([np.ascontiguousarray(v) for v in values])


def running_means(model, framework: str, ops) -> dict[str, np.ndarray]:
    out = {}
    for op in param_ops(ops):
        if op["op"] != "bn":
            continue
        n = op["name"]
        if framework == "torch":
            out[n] = getattr(model, n).running_mean.detach().numpy().copy()
        elif framework == "mxnet":
            out[n] = getattr(model, n).running_mean.data().asnumpy().copy()
        else:
            out[n] = np.asarray(model.get_layer(n).moving_mean).copy()
    return out


def forward(model, framework: str, x: np.ndarray) -> np.ndarray:
    """Eval-mode forward pass on an NCHW float32 batch; the output as NumPy."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if framework == "torch":
        import torch

        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    if framework == "mxnet":
        import mxnet as mx

        return model(mx.nd.array(x)).asnumpy()
    return np.asarray(model(x.transpose(0, 2, 3, 1), training=False)).reshape(len(x), -1)


def train_forward(model, framework: str, x: np.ndarray) -> None:
    """One training-mode pass (forward, plus backward for MXNet, which updates BN stats only there)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if framework == "torch":
        import torch

        model.train()
        model(torch.from_numpy(x)).sum().backward()
        model.eval()
    elif framework == "mxnet":
        import mxnet as mx

        data = mx.nd.array(x)
        with mx.autograd.record(train_mode=True):
            y = model(data).sum()
        y.backward()
    else:
        model(x.transpose(0, 2, 3, 1), training=True)


def build(ops, framework: str, input_shape, seed: int = 0):
    if framework == "torch":
        model = build_torch(ops)
    elif framework == "mxnet":
        model = build_mxnet(ops)
    elif framework == "keras":
        model = build_keras(ops, input_shape)
    else:
        raise ValueError(framework)
    set_canonical(model, framework, random_canonical(ops, seed), ops, input_shape)
    return model


# ------------------------------------------------------------------------------------ catalogue

def _factory(ops, framework, input_shape, seed):
    def factory():
        return build(ops, framework, input_shape, seed)

    factory.__name__ = f"build_{framework}"
    factory.__qualname__ = factory.__name__
    return factory


# the reference framework of a candidate: the next framework in turn, so every ordered pair occurs
_REFERENCE_OF = {"torch": "mxnet", "mxnet": "keras", "keras": "torch"}


def _make_catalogue() -> tuple[Entry, ...]:
    entries = []
    seeds = {name: 10 + i for i, name in enumerate(ARCHS)}
    for arch, (input_shape, ops) in ARCHS.items():
        for framework in FRAMEWORKS:
            ref_fw = _REFERENCE_OF[framework]
            entries.append(Entry(
                name=f"{arch}-ok-{framework}", framework=framework,
                factory=_factory(ops, framework, input_shape, seeds[arch] + 1),
                mistake_code=None, wrong_layer_hint=None, input_shape=input_shape,
                reference_factory=_factory(ops, ref_fw, input_shape, seeds[arch]), reference_framework=ref_fw,
                arch=arch, note="correct port", ops=ops, reference_ops=ops))
    for code, (arch, transform, hint, culprit, note) in MISTAKES.items():
        input_shape, ref_ops = ARCHS[arch]
        for framework in FRAMEWORKS:
            ref_fw = _REFERENCE_OF[framework]
            wrong = transform(ref_ops, framework)
            entries.append(Entry(
                name=f"{arch}-{code}-{framework}", framework=framework,
                factory=_factory(wrong, framework, input_shape, seeds[arch] + 1),
                mistake_code=code, wrong_layer_hint=hint, input_shape=input_shape,
                reference_factory=_factory(ref_ops, ref_fw, input_shape, seeds[arch]), reference_framework=ref_fw,
                arch=arch, culprit=culprit, training_only=(code == "batchnorm_momentum"), note=note,
                ops=wrong, reference_ops=ref_ops))
    return tuple(entries)


CATALOGUE: tuple[Entry, ...] = _make_catalogue()
CORRECT = tuple(e for e in CATALOGUE if e.mistake_code is None)
WRONG = tuple(e for e in CATALOGUE if e.mistake_code is not None)


def get(name: str) -> Entry:
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    raise KeyError(name)


def ops_differences(a, b) -> int:
    """How many places two op lists differ (an insertion/removal or swap counts once)."""
    if len(a) != len(b):
        return abs(len(a) - len(b))
    diffs = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(diffs) == 2 and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]]:
        return 1
    return len(diffs)


__all__ = [
    "ARCHS",
    "CATALOGUE",
    "CORRECT",
    "MISTAKES",
    "MISTAKE_CODES",
    "WRONG",
    "Entry",
    "build",
    "forward",
    "get",
    "infer_shapes",
    "random_canonical",
    "running_means",
    "set_canonical",
    "train_forward",
]
