"""The parity harness: is one spec the same function in every framework?

Three checks, each reported per layer so that a failure says where:
shapes (every layer's output against the spec's inference), parameters
(per-layer counts against the spec's, trainable apart from running
statistics), and numbers (the same canonical weights and inputs in every
framework; outputs of every layer and input gradients compared pairwise).

The float64 NumPy reference (netparity.spec.reference) takes part like a
framework and is always available: every framework is compared with it
("torch vs reference"), besides the framework pairs, so a check with one
installed framework still compares something, and three frameworks that share
a mistake do not agree with the reference.
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
REFERENCE = "reference"  # the float64 NumPy participant's name in runs and pairs


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
    gradient_l2_rel: float = 0.0  # ||a - b|| / ||b||
    gradient_redraw_rel: list[float] = field(default_factory=list)
    gradient_sensitivity: float | None = None  # L2 move of a framework's own gradient under a tiny input nudge
    gradient_verdict: str = "agree"  # agree | kinks | differ
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
    reference: bool = False  # whether the float64 reference was asked to take part

    @property
    def frameworks(self) -> list[str]:
        """The frameworks that ran (the reference, also in ``runs``, is not one)."""
        return [r.framework for r in self.runs if r.framework != REFERENCE]

    @property
    def compared(self) -> bool:
        """Whether anything was compared: at least one pair of participants ran."""
        return bool(self.pairs)

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
        """Everything agrees, and something was compared: a check of one participant is not ok."""
        return self.compared and self.shape_parity and self.parameter_parity and self.numerical_parity

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(ok=self.ok, shape_parity=self.shape_parity, parameter_parity=self.parameter_parity,
                    numerical_parity=self.numerical_parity, compared=self.compared)
        return data

    def to_json(self, indent: int = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=float)


def _spec_with_input(spec: Spec, input_shape) -> Spec:
    if input_shape is None:
        return spec
    if isinstance(input_shape, int):
        return spec.with_input(size=input_shape)
    return Spec(spec.name, tuple(input_shape), spec.blocks, spec.description)


# Input gradients are discontinuous where a ReLU input or a max-pool runner-up sits
# within float32 rounding of the winner: two correct frameworks then take different
# branches. Measured here: VGG-16 at 224 px, every layer's output equal to 1e-6, yet
# PyTorch's and Keras' input gradients differ by L2 2.7e-2; nudging the input by
# 1e-5 of itself moves PyTorch's own gradient by 2.3e-2 and Keras' by 1.6e-2, while
# on LeNet (no such kinks) the same nudge moves it by 1.5e-6. So when only the
# gradient disagrees: compare again on fresh inputs (kinks are rare on small nets);
# if it still disagrees, accept it as kinks only when the difference is within
# KINK_FACTOR times what the input nudge does to each framework's own gradient.
GRADIENT_REDRAWS = 2
NUDGE = 1e-5
KINK_FACTOR = 2.0


def judge_gradients(l2_rel: float, redraw_rels: list[float], sensitivity: float | None,
                    rtol: float) -> tuple[str, str]:
    """(verdict, note) for a pair whose outputs agree but whose first-draw gradients do not."""
    if redraw_rels and all(rel <= rtol for rel in redraw_rels):
        return "kinks", (f"input gradients disagreed on the first draw only, agreed on {len(redraw_rels)} "
                         "fresh draws: a ReLU/max-pool kink that float32 rounding sent different ways")
    if sensitivity is not None and l2_rel <= KINK_FACTOR * sensitivity:
        return "kinks", (f"input gradients differ by L2 {l2_rel:.1e} while every layer's output agrees; a "
                         f"{NUDGE:g} relative nudge of the input moves a framework's own gradient by L2 "
                         f"{sensitivity:.1e}: max-pool/ReLU near-ties that float32 rounding sends different ways")
    return "differ", (f"input gradients differ on every draw (L2 {l2_rel:.1e}) beyond what kinks explain "
                      f"(own-gradient sensitivity {sensitivity if sensitivity is not None else float('nan'):.1e})")


@dataclass
class _Draws:
    """The random inputs and upstream gradients: draw 0 first, more on demand."""

    rng: np.random.Generator
    batch: int
    input_shape: tuple
    output_shape: tuple
    items: list = field(default_factory=list)
    nudge: tuple | None = None

    def __getitem__(self, index: int):
        while len(self.items) <= index:
            x = self.rng.standard_normal((self.batch, *self.input_shape)).astype(np.float32)
            upstream = self.rng.standard_normal((self.batch, *self.output_shape)).astype(np.float32)
            self.items.append((x, upstream))
        return self.items[index]

    def nudged(self):
        """Draw 0 with its input moved by NUDGE of itself, drawn once for every pair."""
        if self.nudge is None:
            x, upstream = self[0]
            self.nudge = (x + (NUDGE * np.abs(x) * self.rng.standard_normal(x.shape)).astype(np.float32), upstream)
        return self.nudge


def _backend(name: str):
    """A framework's backend module, or the reference (which has the same functions)."""
    if name == REFERENCE:
        from ..spec import reference
        return reference
    return get_backend(name)


def _run_framework(name: str, spec: Spec, weights, draws: _Draws, device: str):
    backend = _backend(name)
    start = time.perf_counter()
    model = backend.build(spec, device="cpu" if name == REFERENCE else device)  # NumPy runs on the CPU
    backend.set_weights(model, weights)
    x, upstream = draws[0]
    layers = backend.forward_layers(model, x)
    gradient = backend.input_gradient(model, x, upstream)
    counts = backend.parameter_counts(model)
    return backend, model, layers, gradient, counts, time.perf_counter() - start


def check_parity(spec, frameworks=BACKEND_NAMES, input_shape=None, batch: int = 2, seed: int = 0,
                 device: str = "cpu", rtol: float = DEFAULT_RTOL, reference: bool = True,
                 weights: dict | None = None) -> ParityResult:
    """Build ``spec`` in each framework with the same weights and compare.

    ``spec`` is a Spec, a zoo name or a JSON path; ``input_shape`` is (C, H, W) or
    a square size. Frameworks that are not installed are skipped with a note.
    ``reference``: the float64 NumPy reference runs too (on the CPU, whatever the
    device), and every framework is compared with it; False leaves it out for speed
    (then only framework pairs are compared). Naming "reference" among ``frameworks``
    asks for it as well. The result is ok only when at least one pair was compared.
    ``weights``: canonical weights to use (an imported model's, keys and shapes of
    ``weight_layout()``) instead of the random ones drawn from ``seed``.
    Raises SpecError for an invalid spec (before any framework is touched).
    """
    spec = _spec_with_input(load(spec), input_shape)
    inference = spec.infer()
    weights = init_weights(inference, seed) if weights is None else weights
    draws = _Draws(np.random.default_rng(seed), batch, inference.input_shape, inference.output_shape)
    names = [name for name in frameworks if name != REFERENCE]
    reference = reference or REFERENCE in frameworks
    result = ParityResult(spec.name, list(inference.input_shape), batch, seed, device, rtol,
                          inference.parameters, inference.running_stats, reference=reference)

    outputs: dict[str, dict[str, np.ndarray]] = {}
    gradients: dict[str, np.ndarray] = {}
    models = {}
    for name in names + ([REFERENCE] if reference else []):
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
    # input gradients of the rechecks by (participant, draw): each is shared by all of its pairs
    rechecked = {(name, 0): gradient for name, gradient in gradients.items()}
    ran = [name for name in outputs if name != REFERENCE]
    pairs = list(itertools.combinations(ran, 2))
    if REFERENCE in outputs:
        pairs += [(name, REFERENCE) for name in ran]  # the reference is always the b side
    for a, b in pairs:
        pair = _compare_pair(a, b, inference, outputs, gradients, last, rtol)
        if not pair.ok and pair.first_divergence is None and pair.output_max_rel <= rtol:
            _recheck_gradients(pair, models, draws, rtol, rechecked)
        result.pairs.append(pair)
    return result


def _recheck_gradients(pair: PairReport, models, draws: _Draws, rtol: float, cache: dict) -> None:
    def gradient(name, index):  # index: a draw, or "nudged"
        if (name, index) not in cache:
            backend, model = models[name]
            cache[name, index] = backend.input_gradient(model, *(draws.nudged() if index == "nudged" else draws[index]))
        return cache[name, index]

    for index in range(1, GRADIENT_REDRAWS + 1):
        _, rel = relative_error(gradient(pair.a, index), gradient(pair.b, index))
        pair.gradient_redraw_rel.append(rel)
        if rel > rtol:
            break
    else:
        pair.gradient_verdict, pair.note = judge_gradients(pair.gradient_l2_rel, pair.gradient_redraw_rel, None, rtol)
        pair.ok = True
        return
    pair.gradient_sensitivity = max(_l2_rel(gradient(name, "nudged"), gradient(name, 0)) for name in (pair.a, pair.b))
    pair.gradient_verdict, pair.note = judge_gradients(pair.gradient_l2_rel, pair.gradient_redraw_rel,
                                                       pair.gradient_sensitivity, rtol)
    pair.ok = pair.gradient_verdict == "kinks"


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
    l2_rel = _l2_rel(gradients[a], gradients[b])
    ok = first is None and out_rel <= rtol and grad_rel <= rtol
    return PairReport(a, b, out_abs, out_rel, grad_abs, grad_rel, first, first_rel, worst, worst_rel, ok,
                      gradient_l2_rel=l2_rel,
                      gradient_verdict="agree" if grad_rel <= rtol else "differ")


def _l2_rel(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b||, in float64."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(np.float32).tiny))
