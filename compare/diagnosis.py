"""Name the likely cause of a port's divergence from the numbers: pure NumPy pattern detectors.

``diagnose(evidence) -> (code, message) | None``. ``evidence`` is a dict:

- ``first_divergence``: index (into the aligned layer lists) of the first parameterised layer whose output
  diverges, or None;
- ``reference_layers`` / ``candidate_layers``: aligned lists of objects (or dicts) with ``.name``,
  ``.kind`` ("conv2d" | "dense" | "batchnorm" | "prelu" | "layernorm"), ``.config`` (dict: kernel, stride,
  padding, dilation, groups, eps, momentum, scale, center, channels, ceil_mode, count_include_pad,
  bias/use_bias ...; any subset) and ``.output`` (NumPy, NCHW or (N, F),
  in the reference's layout; a channels_last candidate's arrays converted). Optional, and used when present:
  ``.input`` (the tensor the layer received, same layout rules) and ``.weights`` (dict in PyTorch's
  layout: ``weight`` OIHW or (out, in/groups, kh, kw), ``bias``, ``running_mean``, ``running_var``). With
  ``.input`` and ``.weights`` the layer is re-run in NumPy under alternative hypotheses (asymmetric padding,
  flipped or transposed kernel, untransposed dense, no bias, another epsilon): the strongest numerical
  evidence;
- ``mismatch``: when the alignment stopped at two layers of one kind with other shapes, that pair
  ({"reference": layer, "candidate": layer}): a PReLU with one shared slope against one per channel (or
  Keras' default of one per element), a full conv where the reference is depthwise or grouped;
- ``reference_output`` / ``candidate_output``: the final outputs;
- ``inputs``: {kind: array} of the input batches ("random", "negative", "constant", "large"...) and
  ``diverging_inputs``: {layer index: [input kinds on which that layer diverges]};
- ``training_only``: True when the outputs agree in eval mode and differ only after a training step;
- optional: ``nondeterministic`` (the candidate's eval output changes between two identical calls),
  ``rtol`` (the comparison tolerance, default 1e-4, as max|a-b| / max|b|), ``reference_framework`` /
  ``candidate_framework`` (used to put BatchNorm momentum into PyTorch's convention: MXNet and Keras
  momentum m means PyTorch 1 - m; without them momentum is taken as already in PyTorch's convention).

Codes: same_padding, batchnorm_eps, batchnorm_momentum, flatten_order, dense_not_transposed,
kernel_flipped, kernel_transposed, ceil_mode, count_include_pad, maxpool_zero_padding, missing_relu,
activation_order, dropout_training, missing_bias, batchnorm_frozen (a BatchNorm that normalises with its
running statistics while training: Keras trainable=False, Gluon use_global_stats=True); for the modern
kinds layernorm_eps, prelu_shared,
prelu_per_element, conv_groups, norm_affine (a BatchNorm/LayerNorm without the learned scale or center
the reference has); plus pooling_padding (border-only differences that could be either padding value or
count_include_pad), training_mode and config_mismatch.
Explicit configuration differences are checked first (the strongest evidence), then the layer itself is
re-run under hypotheses, then the inputs the layer received are compared, then the outputs' patterns.
Each detector is a plain function on arrays, usable (and tested) on its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import BACKEND_NAMES, get_layout

DEFAULT_RTOL = 1e-4
FRAMEWORK_ALIASES = {"gluon": "mxnet", "pytorch": "torch"}


# --------------------------------------------------------------------------------------- helpers

def _get(obj: Any, attr: str, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(attr, default)
    return getattr(obj, attr, default)


def _arr(value) -> np.ndarray | None:
    if value is None:
        return None
    try:
        return np.asarray(value, dtype=np.float64)
    except Exception:
        return None


def rel_error(a, b) -> float:
    """max|a-b| / max|b| (inf when the shapes differ)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-12)
    return float(np.abs(a - b).max()) / scale if a.size else 0.0


def close(a, b, rtol: float = DEFAULT_RTOL) -> bool:
    return rel_error(a, b) <= rtol


def _pair(value, default=(1, 1)) -> tuple:
    if value is None:
        return default
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    if isinstance(value, str):
        return value
    return tuple(value)


def _pads(padding) -> tuple[tuple[int, int], tuple[int, int]] | str | None:
    """((top, bottom), (left, right)) from an int, (ph, pw), ((t, b), (l, r)) or a string."""
    if padding is None:
        return None
    if isinstance(padding, str):
        return padding.lower()
    if isinstance(padding, (int, np.integer)):
        return ((int(padding),) * 2, (int(padding),) * 2)
    padding = tuple(padding)
    if len(padding) == 2 and all(isinstance(p, (int, np.integer)) for p in padding):
        return ((int(padding[0]),) * 2, (int(padding[1]),) * 2)
    if len(padding) == 2:
        return tuple(tuple(int(v) for v in p) for p in padding)
    if len(padding) == 4:  # (top, bottom, left, right)
        return ((int(padding[0]), int(padding[1])), (int(padding[2]), int(padding[3])))
    return None


def _spatial(shape) -> tuple | None:
    return tuple(shape[2:]) if len(shape) == 4 else None


# --------------------------------------------------------------------------------- NumPy layers

def conv2d(x, weight, bias=None, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups: int = 1):
    """Cross-correlation, NCHW x OIHW with O = groups * (O / groups) and I = C / groups (output channel
    o reads input group o // (O / groups)), explicit (top, bottom), (left, right) zero padding."""
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    (t, b), (l, r) = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    kh, kw = weight.shape[2:]
    dh, dw = dilation
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    windows = np.lib.stride_tricks.sliding_window_view(xp, span, axis=(2, 3))
    windows = windows[:, :, ::stride[0], ::stride[1], ::dh, ::dw]
    n, c, oh, ow = windows.shape[:4]
    grouped = windows.reshape(n, groups, c // groups, oh, ow, kh, kw)
    kernels = weight.reshape(groups, weight.shape[0] // groups, *weight.shape[1:])
    out = np.einsum("ngchwij,gocij->ngohw", grouped, kernels, optimize=True).reshape(n, -1, oh, ow)
    if bias is not None:
        out = out + np.asarray(bias, np.float64).reshape(1, -1, 1, 1)
    return out


def batchnorm(x, gamma, beta, mean, var, eps) -> np.ndarray:
    shape = (1, -1) + (1,) * (np.ndim(x) - 2)
    r = lambda v: np.asarray(v, np.float64).reshape(shape)
    return r(gamma) * (np.asarray(x, np.float64) - r(mean)) / np.sqrt(r(var) + eps) + r(beta)


def layernorm(x, gamma, beta, eps) -> np.ndarray:
    """LayerNorm over axis 1 (the channels of each pixel of NCHW, or the features of (N, F)), biased
    variance; a missing gamma is 1 and a missing beta 0."""
    x = np.asarray(x, np.float64)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(1, keepdims=True)
    y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(1, keepdims=True) + eps)
    if gamma is not None:
        y = y * np.asarray(gamma, np.float64).reshape(shape)
    return y if beta is None else y + np.asarray(beta, np.float64).reshape(shape)


# ------------------------------------------------------------------------------------ detectors
# Each returns a dict of findings (truthy) or None.

def detect_pixel_shift(reference, candidate, rtol: float = 1e-3, max_shift: int = 1):
    """The candidate equals the reference shifted by up to one pixel in H and/or W (on the overlap)."""
    ref, cand = _arr(reference), _arr(candidate)
    if ref is None or cand is None or ref.shape != cand.shape or ref.ndim != 4 or close(cand, ref, rtol):
        return None
    H, W = ref.shape[2:]
    best = None
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            if (dy, dx) == (0, 0) or H - abs(dy) < 2 or W - abs(dx) < 2:
                continue
            c = cand[:, :, max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)]
            r = ref[:, :, max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
            # the overlap minus the outer ring, where padding differs
            c, r = c[:, :, 1:-1, 1:-1], r[:, :, 1:-1, 1:-1]
            if c.size and close(c, r, rtol):
                err = rel_error(c, r)
                if best is None or err < best["error"]:
                    best = {"shift": (dy, dx), "error": err}
    return best


def detect_channel_scale(reference, candidate, rtol: float = 1e-3, running_var=None, eps_ref=None):
    """cand = s_c * ref + t_c per channel with s_c near but not equal to 1 (a BatchNorm epsilon or variance).

    With ``running_var`` and ``eps_ref`` the candidate's epsilon is estimated from
    s_c = sqrt((var + eps_ref) / (var + eps_cand))."""
    ref, cand = _arr(reference), _arr(candidate)
    if ref is None or cand is None or ref.shape != cand.shape or ref.ndim < 2 or close(cand, ref, rtol * 0.1):
        return None
    C = ref.shape[1]
    r = np.moveaxis(ref, 1, 0).reshape(C, -1)
    c = np.moveaxis(cand, 1, 0).reshape(C, -1)
    if r.shape[1] < 3:
        return None
    scales, residual = np.ones(C), 0.0
    for i in range(C):
        A = np.stack([r[i], np.ones_like(r[i])], 1)
        coef, *_ = np.linalg.lstsq(A, c[i], rcond=None)
        scales[i] = coef[0]
        residual = max(residual, float(np.abs(A @ coef - c[i]).max()))
    if residual > rtol * max(float(np.abs(c).max()), 1e-12):
        return None
    if np.abs(scales - 1).max() < 1e-6 or np.any(scales <= 0.2) or np.any(scales >= 5):
        return None  # only an offset (a bias), or not a plausible normalisation change
    found = {"scales": scales, "residual": residual}
    if running_var is not None and eps_ref is not None:
        var = np.asarray(running_var, np.float64)
        estimates = (var + eps_ref) / scales ** 2 - var
        found["eps_estimate"] = float(np.median(estimates))
    return found


def detect_channel_offset(reference, candidate, rtol: float = 1e-4):
    """cand - ref is one constant per channel (a missing or extra bias)."""
    ref, cand = _arr(reference), _arr(candidate)
    if ref is None or cand is None or ref.shape != cand.shape or ref.ndim < 2 or close(cand, ref, rtol):
        return None
    diff = np.moveaxis(cand - ref, 1, 0).reshape(ref.shape[1], -1)
    if diff.shape[1] < 2:
        return None
    offset = diff.mean(1)
    if np.abs(diff - offset[:, None]).max() > rtol * max(float(np.abs(ref).max()), 1e-12):
        return None
    return {"offset": offset}


def detect_border_only(reference, candidate, rtol: float = 1e-4, max_ring: int | None = None):
    """Differences confined to a ring of width r at the spatial border; the interior agrees."""
    ref, cand = _arr(reference), _arr(candidate)
    if ref is None or cand is None or ref.shape != cand.shape or ref.ndim != 4 or close(cand, ref, rtol):
        return None
    H, W = ref.shape[2:]
    tol = rtol * max(float(np.abs(ref).max()), 1e-12)
    bad = (np.abs(cand - ref) > tol).any(axis=(0, 1))
    limit = max_ring if max_ring is not None else max(1, min(H, W) // 4)
    for ring in range(1, limit + 1):
        if H - 2 * ring < 1 or W - 2 * ring < 1:
            break
        if not bad[ring:H - ring, ring:W - ring].any():
            return {"ring": ring, "fraction": float(bad.mean())}
    return None


def detect_relu_relation(reference, candidate, rtol: float = 1e-4):
    """'missing' when ref == relu(cand) (the candidate lacks a ReLU); 'extra' when cand == relu(ref)."""
    ref, cand = _arr(reference), _arr(candidate)
    if ref is None or cand is None or ref.shape != cand.shape or close(cand, ref, rtol):
        return None
    tol = rtol * max(float(np.abs(ref).max()), float(np.abs(cand).max()), 1e-12)
    if ref.min() >= -tol and cand.min() < -tol and np.abs(np.maximum(cand, 0) - ref).max() <= tol:
        return {"relation": "missing"}
    if cand.min() >= -tol and ref.min() < -tol and np.abs(np.maximum(ref, 0) - cand).max() <= tol:
        return {"relation": "extra"}
    return None


def detect_flatten_permutation(reference, candidate, chw_candidates=(), rtol: float = 1e-4):
    """Flat vectors equal up to the CHW <-> HWC permutation of some (C, H, W)."""
    ref, cand = _arr(reference), _arr(candidate)
    if ref is None or cand is None or ref.shape != cand.shape or ref.ndim != 2 or close(cand, ref, rtol):
        return None
    F = ref.shape[1]
    shapes = [tuple(s) for s in chw_candidates if len(s) == 3 and int(np.prod(s)) == F]
    for c in range(1, F + 1):  # every (C, H, H), then the given shapes first
        if F % c == 0:
            h = int(round(np.sqrt(F // c)))
            if h * h == F // c and h > 1 and (c, h, h) not in shapes:
                shapes.append((c, h, h))
    for c, h, w in shapes:
        chw_to_hwc = np.arange(F).reshape(c, h, w).transpose(1, 2, 0).ravel()
        if close(cand, ref[:, chw_to_hwc], rtol):
            return {"shape": (c, h, w), "candidate_order": "HWC"}
        if close(cand[:, chw_to_hwc], ref, rtol):
            return {"shape": (c, h, w), "candidate_order": "CHW"}  # reference HWC, candidate CHW
    return None


def detect_dropout_mask(reference, candidate, rtol: float = 1e-4):
    """The candidate is the reference with entries zeroed and the rest scaled by 1/(1-p)."""
    ref, cand = _arr(reference), _arr(candidate)
    if ref is None or cand is None or ref.shape != cand.shape or close(cand, ref, rtol):
        return None
    tol = rtol * max(float(np.abs(ref).max()), 1e-12)
    live = np.abs(ref) > tol
    if live.sum() < 8:
        return None
    kept = live & (np.abs(cand) > tol)
    dropped = live & (np.abs(cand) <= tol)
    if kept.sum() < 2 or dropped.sum() < 2:
        return None
    ratios = cand[kept] / ref[kept]
    scale = float(np.median(ratios))
    if scale <= 1 or np.abs(ratios - scale).max() > 10 * rtol * scale:
        return None
    if np.abs(cand[~live]).max(initial=0) > tol:
        return None
    return {"p": 1 - 1 / scale, "dropped_fraction": float(dropped.sum() / live.sum())}


def detect_one_sided(reference, candidate, rtol: float = 1e-4):
    """Both non-negative and one dominates the other everywhere (relu(pool(x)) <= pool(relu(x)))."""
    ref, cand = _arr(reference), _arr(candidate)
    if ref is None or cand is None or ref.shape != cand.shape or close(cand, ref, rtol):
        return None
    tol = rtol * max(float(np.abs(ref).max()), 1e-12)
    if ref.min() < -tol or cand.min() < -tol:
        return None
    if (cand <= ref + tol).all():
        return {"candidate": "smaller"}
    if (cand >= ref - tol).all():
        return {"candidate": "larger"}
    return None


def detect_shape_off_by_one(reference_shape, candidate_shape):
    """Spatial shapes that differ by one in H and/or W (pooling ceil mode / padding)."""
    a, b = _spatial(tuple(reference_shape)), _spatial(tuple(candidate_shape))
    if a is None or b is None or a == b or tuple(reference_shape)[:2] != tuple(candidate_shape)[:2]:
        return None
    if all(abs(x - y) <= 1 for x, y in zip(a, b)):
        return {"reference": a, "candidate": b}
    return None


def detect_negative_only(diverging_kinds, inputs):
    """The layer diverges on inputs with negative values only, never on non-negative ones."""
    if not diverging_kinds or not inputs:
        return None
    signs = {k: float(np.min(v)) < 0 for k, v in inputs.items() if v is not None and np.size(v)}
    nonneg = [k for k, neg in signs.items() if not neg]
    if not nonneg or any(k in diverging_kinds for k in nonneg):
        return None
    if all(signs.get(k, True) for k in diverging_kinds):
        return {"diverging": list(diverging_kinds), "agreeing": nonneg}
    return None


def conv_hypotheses(x, weights, config, observed, rtol: float = 1e-4):
    """Re-run a conv under hypotheses; the name of the one that reproduces ``observed``, or None.

    The reference hypothesis (as configured) must NOT reproduce it."""
    w, b = weights.get("weight"), weights.get("bias")
    if w is None or x is None or np.ndim(x) != 4:
        return None
    w = np.asarray(w, np.float64)
    stride = _pair(config.get("stride"))
    pads = _pads(config.get("padding", 0))
    dilation, groups = _pair(config.get("dilation")), int(config.get("groups") or 1)
    if isinstance(pads, str) or pads is None or isinstance(stride, str) or np.shape(x)[1] != w.shape[1] * groups:
        return None
    observed = _arr(observed)

    def run(weight=w, bias=b, padding=pads):
        return conv2d(x, weight, bias, stride, padding, dilation, groups)

    if observed is None or close(run(), observed, rtol):
        return None
    (t, bt), (l, r) = pads
    hyps = [
        ("same_padding", lambda: run(padding=((t - 1, bt), (l - 1, r))) if t and l else None),
        ("same_padding", lambda: run(padding=((t - 1, bt + 1), (l - 1, r + 1))) if t and l else None),
        ("kernel_flipped", lambda: run(weight=w[:, :, ::-1, ::-1])),
        ("kernel_transposed", lambda: run(weight=w.transpose(0, 1, 3, 2))),
        ("missing_bias", lambda: run(bias=None) if b is not None else None),
    ]
    for code, make in hyps:
        try:
            y = make()
        except Exception:
            y = None
        if y is not None and close(y, observed, rtol):
            return code
    return None


def dense_hypotheses(x, weights, observed, rtol: float = 1e-4):
    w, b = weights.get("weight"), weights.get("bias")
    if w is None or x is None:
        return None
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    w = np.asarray(w, np.float64)
    bias = 0 if b is None else np.asarray(b, np.float64)
    observed = _arr(observed)
    if observed is None or x.shape[1] != w.shape[1] or close(x @ w.T + bias, observed, rtol):
        return None
    if w.shape[0] == w.shape[1] and close(x @ w + bias, observed, rtol):
        return "dense_not_transposed"
    if b is not None and close(x @ w.T, observed, rtol):
        return "missing_bias"
    return None


def batchnorm_eps_hypothesis(x, weights, eps_ref, observed, rtol: float = 1e-4):
    """The epsilon (from the usual defaults) that reproduces ``observed``, or None."""
    keys = ("weight", "bias", "running_mean", "running_var")
    if x is None or any(weights.get(k) is None for k in keys):
        return None
    g, beta, mean, var = (weights[k] for k in keys)
    observed = _arr(observed)
    if observed is None or close(batchnorm(x, g, beta, mean, var, eps_ref), observed, rtol):
        return None
    for eps in (1e-3, 1e-5, 2e-5, 1e-4, 1e-2, 1e-1, 0.0):
        if eps != eps_ref and close(batchnorm(x, g, beta, mean, var, eps), observed, rtol):
            return eps
    return None


def layernorm_eps_hypothesis(x, weights, eps_ref, observed, rtol: float = 1e-4):
    """The epsilon (from the usual defaults: Keras 1e-3, PyTorch/MXNet 1e-5, ConvNeXt 1e-6) that
    reproduces ``observed`` for a LayerNorm over axis 1, or None."""
    gamma, beta = weights.get("weight"), weights.get("bias")
    observed = _arr(observed)
    if x is None or observed is None or np.shape(x) != observed.shape or close(
            layernorm(x, gamma, beta, eps_ref), observed, rtol):
        return None
    for eps in (1e-3, 1e-5, 1e-6, 1e-12, 1e-4, 1e-2, 0.0):
        if eps != eps_ref and close(layernorm(x, gamma, beta, eps), observed, rtol):
            return eps
    return None


# ------------------------------------------------------------------------------------- diagnose

def _momentum(config: dict, framework: str | None):
    m = config.get("momentum")
    if m is None:
        return None
    name = (framework or "").lower()
    name = FRAMEWORK_ALIASES.get(name, name)
    return get_layout(name).momentum_to_canonical(m) if name in BACKEND_NAMES else float(m)


def _bias_flag(config: dict):
    for key in ("bias", "use_bias", "has_bias"):
        if key in config:
            return bool(config[key])
    return None


def _hidden_padding(reference_input, candidate_input) -> tuple[int, int] | None:
    """How much larger (H, W) the candidate layer's input is than the reference's, when it is."""
    if reference_input is None or candidate_input is None:
        return None
    ref, cand = np.shape(reference_input), np.shape(candidate_input)
    if len(ref) != 4 or len(cand) != 4:
        return None
    grown = (cand[2] - ref[2], cand[3] - ref[3])
    return grown if all(g >= 0 for g in grown) and any(grown) else None


def _implied_padding(layer) -> tuple[int, int] | None:
    """Total (H, W) padding a conv must have applied inside itself to give its output size,
    when that is more than its config declares (a pad op hidden in a custom layer)."""
    config, x, y = _get(layer, "config") or {}, _get(layer, "input"), _get(layer, "output")
    if x is None or y is None or np.ndim(x) != 4 or np.ndim(y) != 4 or "kernel" not in config:
        return None
    kernel, stride, dilation = _pair(config["kernel"]), _pair(config.get("stride", 1)), _pair(config.get("dilation"))
    declared = _pads(config.get("padding", 0))
    if declared is None or isinstance(declared, str):
        return None
    span = tuple((kernel[i] - 1) * dilation[i] + 1 for i in range(2))
    totals = tuple((np.shape(y)[2 + i] - 1) * stride[i] + span[i] - np.shape(x)[2 + i] for i in range(2))
    extra = tuple(t - sum(declared[i]) for i, t in enumerate(totals))
    return totals if all(e >= 0 for e in extra) and any(extra) else None


def _config_differences(evidence, upto: int | None):
    ref_layers, cand_layers = evidence.get("reference_layers") or [], evidence.get("candidate_layers") or []
    ref_fw, cand_fw = evidence.get("reference_framework"), evidence.get("candidate_framework")
    end = len(ref_layers) if upto is None else min(upto + 1, len(ref_layers))
    momentum_finding = None
    for i in range(min(end, len(cand_layers))):
        r, c = ref_layers[i], cand_layers[i]
        rc, cc = _get(r, "config") or {}, _get(c, "config") or {}
        name, kind = _get(c, "name") or _get(r, "name"), _get(r, "kind")
        if rc.get("eps") is not None and cc.get("eps") is not None and not np.isclose(rc["eps"], cc["eps"],
                                                                                      rtol=1e-3, atol=0):
            if kind == "layernorm":
                return ("layernorm_eps",
                        f"LayerNorm '{name}' has eps {cc['eps']:g} where the reference has {rc['eps']:g}: each "
                        f"pixel's channels (or each sample's features) are divided by sqrt(var+{cc['eps']:g}) "
                        f"instead of sqrt(var+{rc['eps']:g}) — set epsilon={rc['eps']:g} (Keras "
                        f"LayerNormalization's default is 1e-3, PyTorch's and MXNet's 1e-5, ConvNeXt's 1e-6)")
            return ("batchnorm_eps",
                    f"BatchNorm '{name}' has eps {cc['eps']:g} where the reference has {rc['eps']:g}: every value "
                    f"is scaled by sqrt((var+{rc['eps']:g})/(var+{cc['eps']:g})) per channel — set eps="
                    f"{rc['eps']:g} (Keras' default is 1e-3, PyTorch's and MXNet's 1e-5)")
        if i == upto and kind in ("batchnorm", "layernorm"):
            for key, what, native in (("scale", "learned scale (gamma)", "scale"), ("center", "learned shift (beta)",
                                                                                     "center")):
                if key in rc and key in cc and bool(rc[key]) != bool(cc[key]):
                    label = "BatchNorm" if kind == "batchnorm" else "LayerNorm"
                    has = "has no" if rc[key] else "has a"
                    return ("norm_affine",
                            f"{label} '{name}' {has} {what} where the reference {'has one' if rc[key] else 'has none'}: "
                            f"use {native}={bool(rc[key])} (PyTorch affine / elementwise_affine; MXNet "
                            f"scale=False is fix_gamma: gamma taken as 1)")
        mr, mc = _momentum(rc, ref_fw), _momentum(cc, cand_fw)
        if mr is not None and mc is not None and not np.isclose(mr, mc) and momentum_finding is None:
            momentum_finding = (
                "batchnorm_momentum",
                f"BatchNorm '{name}' has momentum {cc['momentum']:g} ({mc:g} in PyTorch's convention) where the "
                f"reference has {rc['momentum']:g} ({mr:g}): running statistics update differently, visible "
                f"only after a training step — MXNet/Keras momentum = 1 - PyTorch momentum")
        pr, pc = _pads(rc.get("padding")), _pads(cc.get("padding"))
        stride = _pair(cc.get("stride", rc.get("stride")))
        if pr is not None and pc is not None and pr != pc:
            if pc == "same" or (not isinstance(pc, str) and any(a != b for a, b in pc)):
                return ("same_padding",
                        f"{kind or 'layer'} '{name}' (stride {stride}) pads {pc} where the reference pads {pr}: "
                        f"Keras/TF 'same' padding is asymmetric (0, 1) at stride 2 on even inputs — use "
                        f"ZeroPadding2D({pr[0][0] if not isinstance(pr, str) else 1}) + padding='valid'")
            grown = _hidden_padding(_get(r, "input"), _get(c, "input")) or _implied_padding(c)
            if grown is not None and max(stride) > 1 and any(g % 2 for g in grown):
                # padding applied before the layer (F.pad, a pad op) by an odd total: asymmetric, 'same'-style
                return ("same_padding",
                        f"{kind or 'layer'} '{name}' (stride {stride}) receives an input padded by {grown} outside "
                        f"the layer where the reference pads {pr} symmetrically: asymmetric 'same'-style padding "
                        f"(0, 1) — pad symmetrically ({pr[0][0] if not isinstance(pr, str) else 1} on every side)")
            return ("config_mismatch", f"{kind or 'layer'} '{name}' pads {pc} where the reference pads {pr}")
        for key, code in (("ceil_mode", "ceil_mode"), ("count_include_pad", "count_include_pad")):
            if key in rc and key in cc and bool(rc[key]) != bool(cc[key]):
                return (code, f"'{name}' has {key}={cc[key]} where the reference has {rc[key]}")
        br, bc = _bias_flag(rc), _bias_flag(cc)
        if br is not None and bc is not None and br != bc:
            return ("missing_bias",
                    f"{kind or 'layer'} '{name}' has {'no ' if br else 'a '}bias where the reference has "
                    f"{'one' if br else 'none'}: use bias={br} (its parameter list differs from the reference's)")
        for key in ("kernel", "stride", "groups", "dilation"):
            if key in rc and key in cc and _pair(rc[key]) != _pair(cc[key]):
                return ("config_mismatch", f"{kind or 'layer'} '{name}' has {key} {cc[key]} where the reference "
                                           f"has {rc[key]}")
    return momentum_finding


def _frozen(config: dict) -> str | None:
    if config.get("use_global_stats"):
        return "use_global_stats=True"
    if config.get("trainable") is False:
        return "trainable=False"
    return None


def _frozen_batchnorm(ref_layers, cand_layers, upto):
    """A BatchNorm that uses its running statistics in training mode on one side only."""
    end = len(ref_layers) if upto is None else min(upto + 1, len(ref_layers))
    for r, c in zip(ref_layers[:end], cand_layers[:end]):
        if _get(r, "kind") != "batchnorm":
            continue
        rf, cf = _frozen(_get(r, "config") or {}), _frozen(_get(c, "config") or {})
        if bool(rf) != bool(cf):
            side, how = ("the candidate", cf) if cf else ("the reference", rf)
            return ("batchnorm_frozen",
                    f"BatchNorm '{_get(c, 'name') or _get(r, 'name')}': {side} has {how}, so it normalises with its "
                    f"running statistics in training mode where the other side uses the batch's (Keras runs a "
                    f"BatchNormalization with trainable=False in inference mode; Gluon's use_global_stats=True "
                    f"likewise) — the outputs agree in eval mode and differ while training")
    return None


def _layer_summary(layer) -> str:
    return f"{_get(layer, 'kind') or 'layer'} '{_get(layer, 'name')}'"


def _previous_shapes(layers, index):
    shapes = []
    for layer in reversed(layers[:index]):
        out = _get(layer, "output")
        if out is not None and np.ndim(out) == 4:
            shapes.append(tuple(np.shape(out)[1:]))
    return shapes


def diagnose_mismatch(reference, candidate) -> tuple[str, str] | None:
    """Two layers of one kind whose weights have other shapes (the alignment stops there): the
    PReLU slope granularity, a full conv where the reference is depthwise or grouped."""
    kind, name = _get(reference, "kind"), _get(candidate, "name") or _get(reference, "name")
    rc, cc = _get(reference, "config") or {}, _get(candidate, "config") or {}
    if kind == "prelu":
        if cc.get("per_element") or rc.get("per_element"):
            side = "the candidate" if cc.get("per_element") else "the reference"
            return ("prelu_per_element",
                    f"PReLU '{name}': {side} learns one slope per element (Keras' PReLU() default, alpha of shape "
                    f"{(cc if cc.get('per_element') else rc).get('alpha_shape')}) where the other has "
                    f"{_slopes(rc if cc.get('per_element') else cc)} — use keras.layers.PReLU(shared_axes=[1, 2]) "
                    f"for one slope per channel (PyTorch nn.PReLU(C), Gluon PReLU(in_channels=C))")
        rn, cn = rc.get("channels"), cc.get("channels")
        if rn is not None and cn is not None and rn != cn and 1 in (rn, cn):
            return ("prelu_shared",
                    f"PReLU '{name}' has {_slopes(cc)} where the reference has {_slopes(rc)}: PyTorch's nn.PReLU() "
                    f"and Gluon's PReLU() default to one shared slope — use nn.PReLU({max(rn, cn)}) / Gluon "
                    f"PReLU(in_channels={max(rn, cn)}) / Keras PReLU(shared_axes=[1, 2]) for one per channel, or "
                    "nn.PReLU() / PReLU(shared_axes=[1, 2, 3]) for one shared slope")
    if kind == "conv2d":
        rg, cg = int(rc.get("groups") or 1), int(cc.get("groups") or 1)
        if rg != cg:
            def what(groups, config):
                if groups > 1 and groups == config.get("in_channels"):
                    return f"depthwise (groups {groups} = its input channels)"
                return "a full convolution (groups 1)" if groups == 1 else f"grouped (groups {groups})"

            return ("conv_groups",
                    f"conv '{name}' is {what(cg, cc)} where the reference is {what(rg, rc)}: use groups={rg} "
                    f"(Keras: DepthwiseConv2D for groups = channels, Conv2D(groups=...) otherwise)")
    return None


def _slopes(config) -> str:
    channels = config.get("channels")
    return "one shared slope" if channels == 1 else f"one slope per channel ({channels})"


def diagnose(evidence: dict) -> tuple[str, str] | None:
    """(code, message) for a recognisable divergence pattern, or None."""
    mismatch = evidence.get("mismatch")
    if mismatch:
        found = diagnose_mismatch(mismatch.get("reference"), mismatch.get("candidate"))
        if found is not None:
            return found
    rtol = float(evidence.get("rtol", DEFAULT_RTOL) or DEFAULT_RTOL)
    loose = max(10 * rtol, 1e-3)
    fd = evidence.get("first_divergence")
    ref_layers = evidence.get("reference_layers") or []
    cand_layers = evidence.get("candidate_layers") or []

    # 1. explicit configuration differences
    config = _config_differences(evidence, fd)
    if config is not None and (config[0] != "batchnorm_momentum" or evidence.get("training_only")):
        return config

    if evidence.get("nondeterministic"):
        return ("dropout_training",
                "the candidate's eval-mode output changes between two identical calls: a dropout (or other random "
                "op) is active at inference — use nn.Dropout/model.eval(), not F.dropout(x, training=True)")

    if evidence.get("training_only"):
        frozen = _frozen_batchnorm(ref_layers, cand_layers, fd)
        if frozen is not None:
            return frozen
        bns = [layer for layer in ref_layers[: (fd + 1 if fd is not None else None)]
               if _get(layer, "kind") == "batchnorm"]
        if bns:
            where = _layer_summary(ref_layers[fd]) if fd is not None and fd < len(ref_layers) else "the BatchNorms"
            return ("batchnorm_momentum",
                    f"outputs agree in eval mode and differ only after a training step (first at {where}): "
                    f"BatchNorm momentum convention (MXNet/Keras momentum = 1 - PyTorch momentum) or BatchNorm mode")
        return ("training_mode", "outputs differ only in training mode: a dropout or BatchNorm mode difference")

    if fd is None or fd >= len(ref_layers) or fd >= len(cand_layers):
        return config  # a momentum difference, if any, is still worth saying
    ref, cand = ref_layers[fd], cand_layers[fd]
    name, kind = _get(cand, "name") or _get(ref, "name"), _get(ref, "kind")
    cfg = _get(ref, "config") or {}
    rout, cout = _arr(_get(ref, "output")), _arr(_get(cand, "output"))
    rin, cin = _arr(_get(ref, "input")), _arr(_get(cand, "input"))
    weights = _get(ref, "weights") or _get(cand, "weights") or {}
    stride = _pair(cfg.get("stride"))

    # 2. shapes off by one: ceil mode (or padding) of a pool between the layers
    for a, b, where in ((rin, cin, "entering"), (rout, cout, "after")):
        if a is not None and b is not None:
            found = detect_shape_off_by_one(a.shape, b.shape)
            if found:
                return ("ceil_mode",
                        f"feature map {where} {kind} '{name}' is {found['candidate']} in the candidate but "
                        f"{found['reference']} in the reference: pooling ceil_mode differs (or its padding) — "
                        f"match ceil_mode (PyTorch ceil_mode=True keeps a last partial window; Keras needs extra "
                        f"bottom/right -inf padding)")

    # 3. the layer itself, re-run under hypotheses (needs its input and weights)
    inputs_agree = rin is not None and cin is not None and close(cin, rin, rtol)
    layer_input = cin if inputs_agree else None
    if layer_input is None and fd == 0 and weights:
        # the first layer's input is the network input: find which batch produced the output
        for x in (evidence.get("inputs") or {}).values():
            x = _arr(x)
            if x is not None and rout is not None and x.shape[0] == rout.shape[0]:
                if kind == "conv2d" and not isinstance(_pads(cfg.get("padding", 0)), str) and x.shape[1] == \
                        np.shape(weights["weight"])[1] * int(cfg.get("groups") or 1) and close(
                        conv2d(x, weights["weight"], weights.get("bias"), stride, _pads(cfg.get("padding", 0)),
                               _pair(cfg.get("dilation")), int(cfg.get("groups") or 1)), rout, loose):
                    layer_input = x
                    break
    if layer_input is not None and weights:
        code = None
        if kind == "conv2d":
            code = conv_hypotheses(layer_input, weights, cfg, cout, loose)
        elif kind == "dense":
            code = dense_hypotheses(layer_input, weights, cout, loose)
        elif kind == "layernorm" and cfg.get("eps") is not None:
            eps = layernorm_eps_hypothesis(layer_input, weights, float(cfg["eps"]), cout, loose)
            if eps is not None:
                return ("layernorm_eps",
                        f"LayerNorm '{name}' behaves as eps={eps:g} where the reference has {cfg['eps']:g}: set "
                        f"epsilon explicitly (Keras LayerNormalization's default is 1e-3)")
        elif kind == "batchnorm" and cfg.get("eps") is not None:
            eps = batchnorm_eps_hypothesis(layer_input, weights, float(cfg["eps"]), cout, loose)
            if eps is not None:
                return ("batchnorm_eps",
                        f"BatchNorm '{name}' behaves as eps={eps:g} where the reference has {cfg['eps']:g}: set "
                        f"eps/epsilon explicitly (Keras' default is 1e-3)")
        messages = {
            "same_padding": f"conv '{name}' (stride {stride}) matches the reference with padding (0, 1) instead of "
                            f"(1, 1): asymmetric 'same' padding — use ZeroPadding2D(1) + padding='valid' (or "
                            f"symmetric padding)",
            "kernel_flipped": f"conv '{name}' matches the reference with its kernel flipped in H and W: the port "
                              f"convolves instead of cross-correlating (or flips the weights when copying)",
            "kernel_transposed": f"conv '{name}' matches the reference with kernel H and W swapped: transpose the "
                                 f"kernel's spatial axes back when copying (OIHW vs OIWH / HWIO vs WHIO)",
            "missing_bias": f"{kind} '{name}' matches the reference without its bias: the port has bias=False "
                            f"(or dropped the bias when copying)",
            "dense_not_transposed": f"dense '{name}' computes x @ W where the reference computes x @ W.T: the "
                                    f"weight is not transposed ((out, in) vs (in, out))",
        }
        if code:
            return (code, messages[code])

    # 4. the layer's input already differs: the mistake is in an unparameterised op before it
    if rin is not None and cin is not None and not inputs_agree:
        border = detect_border_only(rin, cin, rtol)
        if border:
            return _border_diagnosis(evidence, fd, name, kind, border)
        found = detect_relu_relation(rin, cin, rtol)
        if found:
            what = "lacks a ReLU" if found["relation"] == "missing" else "has an extra ReLU"
            return ("missing_relu", f"the input of {kind} '{name}' is the reference's without ReLU clipping: the "
                                    f"candidate {what} before it (e.g. after a residual add)")
        found = detect_flatten_permutation(rin, cin, _previous_shapes(ref_layers, fd), rtol)
        if found:
            c, h, w = found["shape"]
            return ("flatten_order",
                    f"the input of dense '{name}' is the reference's permuted from CHW to HWC order (C={c}, H={h}, "
                    f"W={w}): NCHW vs NHWC flatten order — permute the dense rows "
                    f"(W.reshape(O,{c},{h},{w}).transpose(0,2,3,1)) or flatten in the same order")
        found = detect_dropout_mask(rin, cin, rtol)
        if found:
            return ("dropout_training",
                    f"the input of {kind} '{name}' is the reference's with {found['dropped_fraction']:.0%} of values "
                    f"zeroed and the rest scaled by 1/(1-{found['p']:.2f}): dropout left in training mode — use "
                    f"nn.Dropout (respects eval()) instead of F.dropout(x, training=True)")
        found = detect_one_sided(rin, cin, rtol)
        if found:
            return ("activation_order",
                    f"the input of {kind} '{name}' is everywhere {found['candidate']} than the reference's, both "
                    f"non-negative: the activation is applied on the other side of a pooling layer "
                    f"(relu(avgpool(x)) <= avgpool(relu(x))) — keep the reference's order")

    # 5. patterns in the outputs alone
    if rout is None or cout is None:
        return config
    if kind == "batchnorm":
        found = detect_channel_scale(rout, cout, loose, weights.get("running_var"), cfg.get("eps"))
        if found:
            eps = f" (the candidate behaves as eps about {found['eps_estimate']:.2g})" if "eps_estimate" in found \
                else ""
            return ("batchnorm_eps",
                    f"BatchNorm '{name}' output is the reference's scaled per channel by "
                    f"{found['scales'].min():.4f}..{found['scales'].max():.4f}, consistent with "
                    f"sqrt((var+eps1)/(var+eps2)): BatchNorm epsilon differs{eps} — set eps=1e-5 "
                    f"(Keras BatchNormalization(epsilon=1e-5))")
    if kind in ("conv2d", "dense"):
        found = detect_channel_offset(rout, cout, rtol)
        if found:
            return ("missing_bias",
                    f"{kind} '{name}' differs from the reference by one constant per channel: a bias is missing "
                    f"(bias=False / use_bias=False) or was not copied")
    found = detect_relu_relation(rout, cout, rtol)
    if found:
        what = "lacks a ReLU" if found["relation"] == "missing" else "has an extra ReLU"
        return ("missing_relu", f"the output of {kind} '{name}' equals the reference's up to ReLU clipping: the "
                                f"candidate {what}")
    shift = detect_pixel_shift(rout, cout, loose)
    if shift:
        return ("same_padding",
                f"outputs shifted by {shift['shift']} pixel(s) after {kind} '{name}' (stride {stride}): asymmetric "
                f"'same' padding — use ZeroPadding2D(1) + padding='valid'")
    border = detect_border_only(rout, cout, rtol)
    if border:
        return _border_diagnosis(evidence, fd, name, kind, border)
    found = detect_negative_only((evidence.get("diverging_inputs") or {}).get(fd), evidence.get("inputs"))
    if found:
        return ("maxpool_zero_padding",
                f"{kind} '{name}' diverges only on inputs with negative values ({', '.join(found['diverging'])}): "
                f"max pooling padded with zeros instead of -inf — pad with -inf (keras.ops.pad) + 'valid'")
    return config


def _border_diagnosis(evidence, fd, name, kind, border):
    negative = detect_negative_only((evidence.get("diverging_inputs") or {}).get(fd), evidence.get("inputs"))
    if negative:
        return ("maxpool_zero_padding",
                f"{kind} '{name}' differs only where windows touch the border, and only on inputs with negative "
                f"values: max pooling padded with zeros (ZeroPadding2D + MaxPooling2D) instead of -inf — pad with "
                f"-inf (keras.ops.pad(..., constant_values=-inf)) + 'valid'")
    inputs = evidence.get("inputs") or {}
    diverging = (evidence.get("diverging_inputs") or {}).get(fd) or []
    nonneg_diverging = [k for k in diverging if k in inputs and float(np.min(inputs[k])) >= 0]
    if nonneg_diverging:
        return ("count_include_pad",
                f"{kind} '{name}' differs only in a {border['ring']}-pixel ring at the border, also on non-negative "
                f"inputs ({', '.join(nonneg_diverging)}): average pooling counts the padding differently "
                f"(count_include_pad; Keras 'same' excludes it) — use ZeroPadding2D + 'valid' to include it")
    return ("pooling_padding",
            f"{kind} '{name}' differs only in a {border['ring']}-pixel ring at the border: a pooling padding value "
            f"(zeros vs -inf for max pooling) or count_include_pad (average pooling) differs before it")


__all__ = [
    "batchnorm",
    "batchnorm_eps_hypothesis",
    "close",
    "conv2d",
    "conv_hypotheses",
    "dense_hypotheses",
    "detect_border_only",
    "detect_channel_offset",
    "detect_channel_scale",
    "detect_dropout_mask",
    "detect_flatten_permutation",
    "detect_negative_only",
    "detect_one_sided",
    "detect_pixel_shift",
    "detect_relu_relation",
    "detect_shape_off_by_one",
    "diagnose",
    "diagnose_mismatch",
    "layernorm",
    "layernorm_eps_hypothesis",
    "rel_error",
]
