"""The parity harness: is one spec the same function in every framework?

Three checks, each reported per layer so that a failure says where:
shapes (every layer's output against the spec's inference), parameters
(per-layer counts against the spec's, trainable apart from running
statistics), and numbers (the same canonical weights and inputs in every
framework; outputs of every layer and input gradients compared pairwise).
"""

from __future__ import annotations

import itertools
import json
import time
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np

from ..backends import BACKEND_NAMES, BackendError, FrameworkMissing, get_backend
from ..spec import Spec, SpecError, init_weights, load

DEFAULT_RTOL = 1e-4


def relative_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |b|): normwise, so near-zero entries do not blow up."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return diff, diff / max(scale, np.finfo(np.float32).tiny)


@dataclass
class ShapeMismatch:
    framework: str
    path: str
    expected: list[int]
    got: list[int] | None


@dataclass
class CountMismatch:
    framework: str
    path: str
    expected: list[int]  # [trainable, running stats]
    got: list[int] | None


@dataclass
class PairReport:
    """How far framework ``a`` is from framework ``b`` (the reference)."""

    a: str
    b: str
    output_max_abs: float
    output_max_rel: float
    gradient_max_abs: float
    gradient_max_rel: float
    first_divergence: str | None  # the first layer path beyond tolerance, in execution order
    first_divergence_rel: float | None
    worst_layer: str | None
    worst_layer_rel: float
    ok: bool
    # Input gradients are discontinuous at ReLU and max-pool kinks: a pre-activation
    # within float32 rounding of zero can take different branches in two frameworks
    # (seen on VGG at 32 px: one value -8.9e-8 in PyTorch, +4.5e-8 in MXNet). When only
    # the gradient disagrees, it is compared again on fresh inputs; a real bug
    # disagrees on every draw, a kink does not.
    gradient_redraw_rel: list[float] = field(default_factory=list)
    note: str = ""


@dataclass
class FrameworkRun:
    framework: str
    version: str
    seconds: float
    trainable: int
    running_stats: int


@dataclass
class ParityResult:
    model: str
    input_shape: list[int]
    batch: int
    seed: int
    device: str
    rtol: float
    spec_parameters: int
    spec_running_stats: int
    runs: list[FrameworkRun] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # framework -> why (not installed)
    errors: dict[str, str] = field(default_factory=dict)  # framework -> what failed
    shape_mismatches: list[ShapeMismatch] = field(default_factory=list)
    count_mismatches: list[CountMismatch] = field(default_factory=list)
    pairs: list[PairReport] = field(default_factory=list)

    @property
    def frameworks(self) -> list[str]:
        return [r.framework for r in self.runs]

    @property
    def shape_parity(self) -> bool:
        return not self.shape_mismatches and not self.errors

    @property
    def parameter_parity(self) -> bool:
        return not self.count_mismatches and not self.errors

    @property
    def numerical_parity(self) -> bool:
        return all(p.ok for p in self.pairs) and not self.errors

    @property
    def ok(self) -> bool:
        return bool(self.runs) and self.shape_parity and self.parameter_parity and self.numerical_parity

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(ok=self.ok, shape_parity=self.shape_parity, parameter_parity=self.parameter_parity,
                    numerical_parity=self.numerical_parity)
        return data

    def to_json(self, indent: int = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=float)


def _spec_with_input(spec: Spec, input_shape) -> Spec:
    if input_shape is None:
        return spec
    if isinstance(input_shape, int):
        return spec.with_input(size=input_shape)
    return Spec(spec.name, tuple(input_shape), spec.blocks, spec.description)


GRADIENT_REDRAWS = 2


@dataclass
class _Draws:
    """The random inputs and upstream gradients: draw 0 first, more on demand."""

    rng: np.random.Generator
    batch: int
    input_shape: tuple
    output_shape: tuple
    items: list = field(default_factory=list)

    def __getitem__(self, index: int):
        while len(self.items) <= index:
            x = self.rng.standard_normal((self.batch, *self.input_shape)).astype(np.float32)
            upstream = self.rng.standard_normal((self.batch, *self.output_shape)).astype(np.float32)
            self.items.append((x, upstream))
        return self.items[index]


def _run_framework(name: str, spec: Spec, weights, draws: _Draws, device: str):
    backend = get_backend(name)
    start = time.perf_counter()
    model = backend.build(spec, device=device)
    backend.set_weights(model, weights)
    x, upstream = draws[0]
    layers = backend.forward_layers(model, x)
    gradient = backend.input_gradient(model, x, upstream)
    counts = backend.parameter_counts(model)
    return backend, model, layers, gradient, counts, time.perf_counter() - start


def check_parity(spec, frameworks=BACKEND_NAMES, input_shape=None, batch: int = 2, seed: int = 0,
                 device: str = "cpu", rtol: float = DEFAULT_RTOL) -> ParityResult:
    """Build ``spec`` in each framework with the same weights and compare.

    ``spec`` is a Spec, a zoo name or a JSON path; ``input_shape`` is (C, H, W) or
    a square size. Frameworks that are not installed are skipped with a note.
    Raises SpecError for an invalid spec (before any framework is touched).
    """
    spec = _spec_with_input(load(spec), input_shape)
    inference = spec.infer()
    weights = init_weights(inference, seed)
    draws = _Draws(np.random.default_rng(seed), batch, inference.input_shape, inference.output_shape)
    result = ParityResult(spec.name, list(inference.input_shape), batch, seed, device, rtol,
                          inference.parameters, inference.running_stats)

    outputs: dict[str, dict[str, np.ndarray]] = {}
    gradients: dict[str, np.ndarray] = {}
    models = {}
    for name in frameworks:
        try:
            backend, model, layers, gradient, counts, seconds = _run_framework(name, spec, weights, draws, device)
        except FrameworkMissing as missing:
            result.skipped[name] = str(missing)
            continue
        except (BackendError, SpecError) as error:
            result.errors[name] = str(error)
            continue
        except Exception as error:  # keep the other frameworks' results; say what broke and where
            where = traceback.extract_tb(error.__traceback__)[-1]
            result.errors[name] = f"{type(error).__name__}: {error} (at {where.filename}:{where.lineno})"
            continue
        outputs[name], gradients[name], models[name] = layers, gradient, (backend, model)
        result.runs.append(FrameworkRun(name, backend.version(), round(seconds, 3),
                                        sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())))
        _check_shapes(result, name, inference, layers, batch)
        _check_counts(result, name, inference, counts)

    last = inference.top_level()[-1].path
    for a, b in itertools.combinations(outputs, 2):
        pair = _compare_pair(a, b, inference, outputs, gradients, last, rtol)
        if not pair.ok and pair.first_divergence is None and pair.output_max_rel <= rtol:
            _redraw_gradients(pair, models, draws, rtol)
        result.pairs.append(pair)
    return result


def _redraw_gradients(pair: PairReport, models, draws: _Draws, rtol: float) -> None:
    cache = {}

    def gradient(name, index):
        if (name, index) not in cache:
            backend, model = models[name]
            cache[name, index] = backend.input_gradient(model, *draws[index])
        return cache[name, index]

    for index in range(1, GRADIENT_REDRAWS + 1):
        _, rel = relative_error(gradient(pair.a, index), gradient(pair.b, index))
        pair.gradient_redraw_rel.append(rel)
        if rel > rtol:
            pair.note = f"input gradients disagree on {index + 1} input draws: not a kink"
            return
    pair.ok = True
    pair.note = (f"input gradients disagreed on the first draw only (rel {pair.gradient_max_rel:.1e}), agreed "
                 f"on {GRADIENT_REDRAWS} fresh draws: a ReLU/max-pool kink that float32 rounding "
                 "sent different ways")


def _check_shapes(result, name, inference, layers, batch):
    for row in inference.rows:
        expected = [batch, *row.output_shape]
        got = layers.get(row.path)
        if got is None or list(got.shape) != expected:
            result.shape_mismatches.append(
                ShapeMismatch(name, row.path, expected, None if got is None else list(got.shape)))


def _check_counts(result, name, inference, counts):
    for row in inference.leaves():
        expected = [row.parameters, row.running_stats]
        if expected == [0, 0] and row.path not in counts:
            continue
        got = counts.get(row.path)
        if got is None or list(got) != expected:
            result.count_mismatches.append(CountMismatch(name, row.path, expected, None if got is None else list(got)))


def _compare_pair(a, b, inference, outputs, gradients, last, rtol) -> PairReport:
    first = first_rel = worst = None
    worst_rel = 0.0
    for row in inference.execution_order():
        if row.path not in outputs[a] or row.path not in outputs[b]:
            continue
        _, rel = relative_error(outputs[a][row.path], outputs[b][row.path])
        if rel > worst_rel:
            worst, worst_rel = row.path, rel
        if first is None and rel > rtol:
            first, first_rel = row.path, rel
    out_abs, out_rel = relative_error(outputs[a].get(last, np.array([])), outputs[b].get(last, np.array([])))
    grad_abs, grad_rel = relative_error(gradients[a], gradients[b])
    ok = first is None and out_rel <= rtol and grad_rel <= rtol
    return PairReport(a, b, out_abs, out_rel, grad_abs, grad_rel, first, first_rel, worst, worst_rel, ok)
