"""Names in emitted code: identifiers from spec names, class and function names, literals.

Framework-free. Every name is a pure function of the spec, so the same spec always gives the
same source.
"""

from __future__ import annotations

import keyword
import re

from ...spec.errors import NetparityError


class EmitError(NetparityError, ValueError):
    """A spec that cannot be written as source, or a formatter that is missing."""


# Module and helper names an emitted file uses; a generated class, function or attribute that
# would shadow one of them gets a suffix instead.
RESERVED = frozenset({
    "F", "nn", "torch", "mx", "np", "keras", "layers", "ops", "math", "x", "out", "inputs", "name", "self",
    "build_model", "shortcut", "super", "input", "unit", "range", "len", "list", "tuple", "float", "int", "print", "sum",
    # nn.Module / gluon.Block / keras.Layer attributes a child attribute must not overwrite
    "forward", "hybrid_forward", "training", "train", "eval", "params", "prefix", "modules", "children",
    "parameters", "buffers", "state_dict", "to", "apply", "cuda", "cpu", "type", "half", "float", "double",
    "add", "register_child", "collect_params", "initialize", "hybridize", "cast", "zero_grad", "weight",
    "bias", "summary", "export", "load_parameters", "save_parameters", "call", "build", "weights",
    "trainable", "dtype", "get_config",
})


def identifier(text: str) -> str:
    """A lower-case Python identifier from a spec name (``conv_6dw7_7``, ``Stage 1`` -> ``stage_1``)."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if not name:
        return ""
    if name[0].isdigit():
        name = "layer_" + name
    if keyword.iskeyword(name) or name in RESERVED:
        name += "_"
    return name


def name_base(text: str) -> str:
    """A spec name without its trailing number: ``stage3`` -> ``stage``, ``block_12`` -> ``block``."""
    base = re.sub(r"[_\d]+$", "", identifier(text).rstrip("_"))
    return base or identifier(text)


# Words spelled as PyTorch spells them in class names.
_WORDS = {"bn": "BN", "relu": "ReLU", "relu6": "ReLU6", "silu": "SiLU", "gelu": "GELU", "prelu": "PReLU",
          "elu": "ELU", "se": "SE", "fc": "FC", "maxpool": "MaxPool", "avgpool": "AvgPool",
          "layer_scale": "LayerScale", "hardswish": "Hardswish", "hardsigmoid": "Hardsigmoid"}


def camel(text: str) -> str:
    """``stage`` -> ``Stage``, ``dense_layer`` -> ``DenseLayer``, ``conv_bn_relu`` ->
    ``ConvBNReLU``, ``se`` -> ``SE`` (a short single word is an acronym)."""
    parts = [p for p in re.split(r"[^0-9a-zA-Z]+", text) if p]
    if len(parts) == 1 and len(parts[0]) <= 3 and parts[0].isalpha():
        return parts[0].upper()
    name = "".join(_WORDS.get(p.lower(), p[:1].upper() + p[1:]) for p in parts)
    if name and name[0].isdigit():
        name = "Net" + name
    return name or "Block"


def snake(text: str) -> str:
    """``DenseLayer`` -> ``dense_layer``, ``SE`` -> ``se``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text).lower()


def unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name2``, ``name3``... the first one not in ``taken`` (which it joins)."""
    candidate, number = name, 2
    while candidate in taken or candidate in RESERVED or keyword.iskeyword(candidate):
        candidate, number = f"{name}{number}", number + 1
    taken.add(candidate)
    return candidate


def literal(value) -> str:
    """Python source for a fact's value: ints, floats (shortest round-trip repr), bools, None,
    strings and tuples of them."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        if value == float("inf"):
            return 'float("inf")'
        if value == float("-inf"):
            return '-float("inf")'
        return repr(value)
    if isinstance(value, (int, str)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    raise TypeError(f"no literal for {value!r}")


def pair_value(value) -> int | tuple:
    """A (h, w) pair as one int when both are equal, as every framework accepts."""
    value = tuple(int(v) for v in value)
    return value[0] if len(value) == 2 and value[0] == value[1] else value
