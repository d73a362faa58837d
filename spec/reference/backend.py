"""The reference as a backend: the functions of netparity.backends' modules, computed in float64.

``build`` gives a ``ReferenceModel`` holding float64 weights; ``forward``, ``forward_layers``
and ``input_gradient`` run it; ``train_step`` takes one step of PyTorch's SGD on the mean
softmax cross-entropy. Weights and inputs arrive as every backend takes them (float32, the
canonical layout) and are computed on in float64, so the reference is the float32 network
without float32's rounding. Outputs come back in float64.

The checks of inputs, weights, labels, masks and SGD settings are the backends' own
(netparity.backends.common and .training, which import no framework), imported inside the
functions that need them: the reference refuses bad input with the same words and the same
BackendError as the framework backends, while importing netparity.spec still imports nothing
from netparity.backends (which imports netparity.spec).
"""

from __future__ import annotations

import numpy as np

from ..weights import init_weights
from . import autodiff as ad
from .forward import Pass

NAME = "reference"
FRAMEWORK = "NumPy reference (float64)"
EXECUTIONS = {"plain": "NumPy in float64 with reverse-mode autodiff"}
PRECISIONS = {"float32": "float32 weights and inputs, as every backend takes them, computed in float64"}
STATE_FORM = "buf"  # the SGD momentum state as PyTorch keeps it: p -= lr * buf

_seed = 0  # seed_everything's: initial weights and drawn dropout masks of models built after it


def version() -> str:
    return np.__version__


def _common():
    from ...backends import common  # noqa: see the module docstring (framework-free, lazy on purpose)
    return common


def _training():
    from ...backends import training  # noqa: see the module docstring
    return training


def _error(message: str) -> Exception:
    return _common().BackendError(f"{NAME}: {message}")


class ReferenceModel:
    """What ``build`` returns. It also stands as its own build record (``spec``,
    ``inference``, ``extra``) for the backends' shared checks."""

    def __init__(self, spec, inference, lockstep_dropout: bool, seed: int):
        self.spec = spec
        self.inference = inference
        self.device = "cpu"
        self.extra = {"lockstep_dropout": bool(lockstep_dropout), "execution": "plain", "precision": "float32"}
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._weights: dict[str, np.ndarray] | None = None
        # The last eval-mode forward_layers' graph, (batch, input tensor, output tensor): an
        # input_gradient on the same batch runs only the backward pass (a third of the check's time).
        self.graph = None

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """Canonical key -> float64 array; drawn on first use, as most callers set their own."""
        if self._weights is None:
            drawn = init_weights(self.inference, self.seed, nontrivial=False)
            self._weights = {key: value.astype(np.float64) for key, value in drawn.items()}
        return self._weights

    @weights.setter
    def weights(self, value: dict[str, np.ndarray]) -> None:
        self._weights = value
        self.graph = None

    @property
    def _netparity_record(self):
        return self

    def __repr__(self) -> str:
        return f"ReferenceModel({self.spec.name!r}, input {self.inference.input_shape})"


def _model(model) -> ReferenceModel:
    if not isinstance(model, ReferenceModel):
        raise _error(f"expected a model from netparity.spec.reference.build, got {type(model).__name__}")
    return model


def build(spec, device: str = "cpu", lockstep_dropout: bool = False, execution: str = "plain",
          precision: str = "float32") -> ReferenceModel:
    """A model of ``spec`` with the start weights of training (``init_weights(nontrivial=False)``,
    seeded by ``seed_everything``). The reference runs on the CPU only."""
    common = _common()
    common.check_device(device, NAME)
    if device != "cpu":
        raise _error(f"runs on the CPU only (NumPy); device {device!r} was asked for")
    common.check_run_options(execution, precision, EXECUTIONS, PRECISIONS, NAME)
    return ReferenceModel(spec, spec.infer(), lockstep_dropout, _seed)


def get_weights(model) -> dict[str, np.ndarray]:
    """Canonical weights and running statistics, float64 copies."""
    model = _model(model)
    return {key: model.weights[key].copy() for key in model.inference.weight_layout()}


def set_weights(model, weights: dict[str, np.ndarray]) -> None:
    model = _model(model)
    _common().check_weights(weights, model, NAME)
    model.weights = {key: np.array(weights[key], dtype=np.float64) for key in model.inference.weight_layout()}


def _batch(model: ReferenceModel, x) -> np.ndarray:
    _common().as_input(x, model, NAME)  # the backends' shape check and message
    return np.array(x, dtype=np.float64)


def _pass(model: ReferenceModel, batch: int, training: bool, dropout_masks, **options) -> Pass:
    """A Pass over ``model``: masks checked when given, required in training for a lockstep
    model (as the backends' masked dropout requires them), drawn from the model's RNG otherwise."""
    masks = {}
    if training:
        model.graph = None  # running statistics move: a kept eval-mode graph is stale
    if training and dropout_masks is not None:
        masks = _training().check_dropout_masks(model.inference, dropout_masks, batch, True, NAME,
                                                _common().BackendError)
    elif training and model.extra["lockstep_dropout"] and _training().dropout_rows(model.inference):
        raise _error("the model was built with lockstep_dropout=True and ran in training mode without "
                     "dropout_masks")
    draw = (lambda layer, size, shape: layer.draw_mask(model.rng, size, shape))
    return Pass(model.inference, model.weights, training,
                masks={path: mask.astype(np.float64) for path, mask in masks.items()}, draw=draw, **options)


def _run(run: Pass, x: ad.Tensor) -> ad.Tensor:
    try:
        return run(x)
    except ValueError as failure:  # what a kind refuses (batchnorm on one value per channel)
        raise _error(str(failure)) from None


def forward(model, x, training: bool = False, dropout_masks=None) -> np.ndarray:
    """The output for an NCHW batch. In training mode BatchNorm uses batch statistics and
    updates its running ones; dropout multiplies by ``dropout_masks`` ({path: mask}) or, without
    them, by masks drawn from the model's RNG."""
    model = _model(model)
    batch = _batch(model, x)
    return _run(_pass(model, len(batch), training, dropout_masks), ad.constant(batch)).value.copy()


def _read_only(value: np.ndarray) -> np.ndarray:
    view = value.view()
    view.flags.writeable = False
    return view


def forward_layers(model, x, training: bool = False, dropout_masks=None) -> dict[str, np.ndarray]:
    """The output of every layer and block, by spec path, in NCHW (or (N, F)). Read-only
    arrays, some sharing memory (as PyTorch's captured outputs do): in eval mode the model
    keeps this pass's graph for an ``input_gradient`` on the same batch, which reads them."""
    model = _model(model)
    batch = _batch(model, x)
    run = _pass(model, len(batch), training, dropout_masks, capture=True)
    inputs = ad.constant(batch) if training else ad.variable(batch)
    out = _run(run, inputs)
    model.graph = None if training else (batch, inputs, out)
    return {path: _read_only(value) for path, value in run.outputs.items()}


def _upstream(model: ReferenceModel, batch: np.ndarray, upstream) -> np.ndarray:
    expected = (len(batch), *model.inference.output_shape)
    upstream = np.asarray(upstream, dtype=np.float64)
    if upstream.shape != expected:
        raise _error(f"upstream gradient of shape {upstream.shape} does not match the output shape {expected}")
    return upstream


def input_gradient(model, x, upstream, training: bool = False, dropout_masks=None) -> np.ndarray:
    """d(sum(model(x) * upstream)) / dx."""
    model = _model(model)
    batch = _batch(model, x)
    upstream = _upstream(model, batch, upstream)
    graph, model.graph = model.graph, None  # used once: the graph holds every intermediate array
    if not training and graph is not None and np.array_equal(graph[0], batch):
        _, inputs, out = graph
    else:
        inputs = ad.variable(batch)
        out = _run(_pass(model, len(batch), training, dropout_masks), inputs)
    return ad.gradients(out, upstream, [inputs])[0]


def gradients(model, x, upstream, training: bool = False,
              dropout_masks=None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """One pass and its backward: (output, d/dx, {canonical key: d/dweight}) of
    sum(model(x) * upstream), for every trainable weight. The reference's own extra: the
    framework backends expose weight gradients only through ``train_step``."""
    model = _model(model)
    batch = _batch(model, x)
    upstream = _upstream(model, batch, upstream)
    run = _pass(model, len(batch), training, dropout_masks, weight_gradients=True)
    inputs = ad.variable(batch)
    out = _run(run, inputs)
    keys = trainable_keys(model)
    found = ad.gradients(out, upstream, [inputs] + [run.variables.get(key, ad.constant(model.weights[key]))
                                                    for key in keys])
    return out.value.copy(), found[0], dict(zip(keys, found[1:]))


def trainable_keys(model) -> list[str]:
    """Canonical keys of the trainable weights, in canonical order."""
    inference = _model(model).inference
    return [f"{row.path}.{name}" for row in inference.weight_leaves()
            for name in row.layer.parameter_shapes(row.input_shape)]


def parameter_counts(model) -> dict[str, tuple[int, int]]:
    """Per layer that holds weights: (trainable, running statistics), from the arrays held."""
    model = _model(model)
    counts = {}
    for row in model.inference.weight_leaves():
        trainable = row.layer.parameter_shapes(row.input_shape)
        stats = row.layer.running_stat_shapes(row.input_shape)
        if trainable or stats:
            counts[row.path] = (sum(model.weights[f"{row.path}.{n}"].size for n in trainable),
                                sum(model.weights[f"{row.path}.{n}"].size for n in stats))
    return counts


def seed_everything(seed: int) -> str:
    """Seed the initial weights and drawn dropout masks of the models built after this call.
    Returns what stays non-deterministic: nothing."""
    global _seed
    _seed = int(seed)
    return ""


# ---------------------------------------------------------------------------------------
# Training: PyTorch's SGD and mean cross-entropy, in float64
# ---------------------------------------------------------------------------------------

class ReferenceOptimizer:
    """SGD state: ``buffers`` holds PyTorch's momentum buffer per canonical key."""

    backend = NAME

    def __init__(self, model: ReferenceModel, lr: float, momentum: float, weight_decay: float):
        self.model = model
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.keys = trainable_keys(model)
        self.buffers: dict[str, np.ndarray] = {}
        self.steps = 0


def make_optimizer(model, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> ReferenceOptimizer:
    """PyTorch's SGD: buf = momentum*buf + (g + wd*p) (first buf = g + wd*p); p -= lr*buf, on
    every trainable weight (coupled weight decay, biases and norms included)."""
    model = _model(model)
    lr, momentum, weight_decay = _training().check_sgd(lr, momentum, weight_decay, NAME, _common().BackendError)
    return ReferenceOptimizer(model, lr, momentum, weight_decay)


def set_learning_rate(optimizer: ReferenceOptimizer, lr: float) -> None:
    """PyTorch's meaning: the momentum buffers stay as they are."""
    optimizer.lr, _, _ = _training().check_sgd(lr, optimizer.momentum, optimizer.weight_decay, NAME,
                                               _common().BackendError)


def cross_entropy(logits: ad.Tensor, labels: np.ndarray) -> ad.Tensor:
    """Mean softmax cross-entropy of (N, K) logits against integer labels."""
    shift = np.max(logits.value, axis=1, keepdims=True)
    log_sum = ad.log(ad.sum_(ad.exp(logits - shift), 1)) + shift[:, 0]
    picked = ad.sum_(logits * np.eye(logits.shape[1])[labels], 1)
    return ad.mean(log_sum - picked, 0)


def train_step(model, optimizer: ReferenceOptimizer, x, y, dropout_masks=None) -> float:
    """One SGD step in training mode (batch-statistics BatchNorm, running statistics updated,
    dropout by the given masks for a lockstep model, drawn ones otherwise); returns the mean
    cross-entropy before the update."""
    model = _model(model)
    if not isinstance(optimizer, ReferenceOptimizer):
        raise _error(f"expected an optimizer from this module's make_optimizer, got {type(optimizer).__name__}")
    if optimizer.model is not model:
        raise _error("this optimizer was made for another model")
    training, error = _training(), _common().BackendError
    batch = _batch(model, x)
    if len(model.inference.output_shape) != 1:
        raise _error(f"training needs flat logits; spec {model.spec.name!r} outputs {model.inference.output_shape}")
    labels = training.check_labels(y, len(batch), model.inference.output_shape[0], NAME, error)
    masks = training.check_dropout_masks(model.inference, dropout_masks, len(batch),
                                         model.extra["lockstep_dropout"], NAME, error)
    run = _pass(model, len(batch), True, masks or None, weight_gradients=True)
    loss = cross_entropy(_run(run, ad.constant(batch)), labels)
    grads = ad.gradients(loss, 1.0, [run.variables[key] for key in optimizer.keys])
    lr, momentum, decay = optimizer.lr, optimizer.momentum, optimizer.weight_decay
    for key, grad in zip(optimizer.keys, grads):
        step = grad + decay * model.weights[key]
        if momentum:
            previous = optimizer.buffers.get(key)
            step = step if previous is None else momentum * previous + step
            optimizer.buffers[key] = step
        model.weights[key] = model.weights[key] - lr * step
    optimizer.steps += 1
    return float(loss.value)


def save_checkpoint(model, optimizer: ReferenceOptimizer, path) -> None:
    """Weights, momentum buffers (PyTorch's form) and lr in one .npz, written atomically."""
    model = _model(model)
    arrays = {f"weights/{key}": value for key, value in get_weights(model).items()}
    arrays.update({f"state/{key}": value for key, value in optimizer.buffers.items()})
    meta = {"framework": NAME, "spec": model.spec.name, "lr": optimizer.lr, "momentum": optimizer.momentum,
            "weight_decay": optimizer.weight_decay, "steps": optimizer.steps, "state_form": STATE_FORM,
            "lockstep_dropout": model.extra["lockstep_dropout"]}
    _training().write_checkpoint(path, meta, arrays)


def load_checkpoint(model, optimizer: ReferenceOptimizer, path) -> None:
    """Restore weights, momentum buffers (converted from another framework's form) and lr."""
    model = _model(model)
    training, error = _training(), _common().BackendError
    meta, arrays = training.read_checkpoint(path, NAME, error)
    training.check_resume(meta, optimizer.momentum, optimizer.weight_decay, NAME, error)
    set_weights(model, training.section(arrays, "weights"))
    lr = float(meta["lr"])
    optimizer.buffers = {key: (np.asarray(value, dtype=np.float64) if meta["state_form"] == STATE_FORM
                               else training.convert_state(value, meta["state_form"], STATE_FORM, lr).astype(np.float64))
                         for key, value in training.section(arrays, "state").items()}
    set_learning_rate(optimizer, lr)
    optimizer.steps = int(meta["steps"])
