"""A whole network as data: ``Spec``, its shape inference and its JSON form."""

from __future__ import annotations

import json
import numbers
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from .errors import SpecError
from .layers import LAYER_KINDS, Block, Layer, Row, Shape, is_int, show_shape

FORMAT = "netparity.spec/1"
# Deeper specs are refused with a SpecError instead of exhausting Python's recursion limit;
# the deepest zoo model nests 5 levels.
MAX_NESTING = 64


@dataclass(frozen=True)
class Inference:
    """Shapes and parameter counts of every layer and block, in execution order."""

    input_shape: Shape
    rows: tuple[Row, ...]

    @property
    def output_shape(self) -> Shape:
        return self.top_level()[-1].output_shape

    @property
    def parameters(self) -> int:
        return sum(r.parameters for r in self.top_level())

    @property
    def running_stats(self) -> int:
        return sum(r.running_stats for r in self.top_level())

    def top_level(self) -> list[Row]:
        return [r for r in self.rows if r.depth == 0]

    def leaves(self) -> list[Row]:
        return [r for r in self.rows if not isinstance(r.layer, Block)]

    def execution_order(self) -> list[Row]:
        """Rows in the order their outputs are computed: a block after everything inside it."""
        ordered: list[Row] = []
        open_blocks: list[Row] = []
        for r in self.rows:
            while open_blocks and not r.path.startswith(open_blocks[-1].path + "."):
                ordered.append(open_blocks.pop())
            if isinstance(r.layer, Block):
                open_blocks.append(r)
            else:
                ordered.append(r)
        ordered.extend(reversed(open_blocks))
        return ordered

    def weight_leaves(self) -> list[Row]:
        """Leaf rows in canonical weight order: execution order, except inside a sequence
        with a ``parameter_order`` (torchvision registers some weights before the layers they
        follow in execution)."""
        by_path = {r.path: r for r in self.rows}
        ordered: list[Row] = []

        def walk(row: Row) -> None:
            layer = row.layer
            if not isinstance(layer, Block):
                ordered.append(row)
                return
            children = layer.weight_children() if hasattr(layer, "weight_children") else layer.children()
            for relative, _ in children:
                walk(by_path[f"{row.path}.{relative}"])

        for row in self.top_level():
            walk(row)
        return ordered

    def row(self, path: str) -> Row:
        for r in self.rows:
            if r.path == path:
                return r
        raise KeyError(path)

    def weight_layout(self, running_stats: bool = True) -> dict[str, Shape]:
        """Canonical weight keys and shapes: ``<layer path>.<name>`` in execution
        order, each layer's trainable parameters before its running statistics
        (the order of a PyTorch state_dict)."""
        layout: dict[str, Shape] = {}
        for r in self.weight_leaves():
            named = dict(r.layer.parameter_shapes(r.input_shape))
            if running_stats:
                named.update(r.layer.running_stat_shapes(r.input_shape))
            for name, shape in named.items():
                layout[f"{r.path}.{name}"] = shape
        return layout


@dataclass(frozen=True)
class Spec:
    """A CNN: a name, the per-example input shape (C, H, W) and top-level blocks."""

    name: str
    input_shape: Shape
    blocks: tuple[Layer, ...]
    description: str = field(default="", compare=False)

    def __post_init__(self):
        # NumPy integers become ints; anything else stays as given for infer() to refuse
        # (True and "28" are not sizes).
        object.__setattr__(self, "input_shape", tuple(
            int(s) if isinstance(s, numbers.Integral) and not isinstance(s, bool) else s
            for s in self.input_shape))
        object.__setattr__(self, "blocks", tuple(self.blocks))

    # -- inference --------------------------------------------------------------------
    def infer(self, input_shape: Shape | None = None) -> Inference:
        """Check the spec on an input shape and infer every layer's output shape and
        parameter count. Raises ``SpecError`` naming the first bad layer."""
        shape = tuple(input_shape) if input_shape is not None else self.input_shape
        if len(shape) != 3 or any(not is_int(s) or s <= 0 for s in shape):
            raise SpecError("input_shape", f"must be three positive integers (C, H, W), got {shape!r}")
        if not self.blocks:
            raise SpecError("blocks", "a spec needs at least one block")
        rows: list[Row] = []
        for i, block in enumerate(self.blocks):
            if not isinstance(block, Layer):
                raise SpecError(f"blocks[{i}]", f"expected a layer, got {type(block).__name__}")
            _check_nesting(block, f"blocks[{i}]")
            shape = block.trace(shape, f"blocks[{i}]", rows)
        return Inference(tuple(int(s) for s in (input_shape or self.input_shape)), tuple(rows))

    def validate(self) -> "Spec":
        self.infer()
        return self

    def with_input(self, size: int | None = None, channels: int | None = None) -> "Spec":
        """The same network on a different square input size or channel count."""
        c, h, w = self.input_shape
        return Spec(self.name, (channels or c, size or h, size or w), self.blocks, self.description)

    # -- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "name": self.name, "description": self.description,
                "input_shape": list(self.input_shape),
                "blocks": [layer_to_dict(b) for b in self.blocks]}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict, source: str = "spec") -> "Spec":
        if not isinstance(data, dict):
            raise SpecError(source, "a spec must be a JSON object")
        unknown = set(data) - {"format", "name", "description", "input_shape", "blocks"}
        if unknown:
            raise SpecError(source, f"unknown top-level keys: {', '.join(sorted(unknown))}")
        if data.get("format", FORMAT) != FORMAT:
            raise SpecError(source, f"format {data.get('format')!r} is not {FORMAT!r}")
        for key in ("input_shape", "blocks"):
            if key not in data:
                raise SpecError(source, f"missing {key!r}")
        if not isinstance(data["blocks"], list):
            raise SpecError("blocks", "must be a list of layers")
        if not isinstance(data["input_shape"], list):
            raise SpecError("input_shape", f"must be a list of three positive integers, got {data['input_shape']!r}")
        for key in ("name", "description"):
            if not isinstance(data.get(key, ""), str):
                raise SpecError(key, f"must be a string, got {data[key]!r}")
        blocks = tuple(layer_from_dict(b, f"blocks[{i}]") for i, b in enumerate(data["blocks"]))
        spec = cls(data.get("name", "spec"), tuple(data["input_shape"]), blocks, data.get("description", ""))
        if len(spec.input_shape) != 3 or any(not is_int(v) or v <= 0 for v in spec.input_shape):
            raise SpecError("input_shape", f"must be three positive integers (C, H, W), got {data['input_shape']!r}")
        return spec

    @classmethod
    def from_json(cls, text: str, source: str = "spec") -> "Spec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(source, f"not valid JSON: {error}") from None
        except RecursionError:
            raise SpecError(source, f"nested too deeply (netparity accepts {MAX_NESTING} levels of layers)") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> "Spec":
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise SpecError(str(path), f"cannot read the spec file: {error.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SpecError(str(path), f"not a UTF-8 text file (byte {error.start}: "
                                       f"{raw[error.start:error.start + 1]!r}); a spec is JSON in UTF-8") from None
        return cls.from_json(text, str(path))

    def save(self, path: str | Path) -> None:
        from .files import write_atomic
        write_atomic(Path(path), self.to_json() + "\n")


def _encode(value):
    if isinstance(value, Layer):
        return layer_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    return value


def _default(f):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def layer_to_dict(layer: Layer) -> dict:
    """The layer's JSON object: its kind and every field that differs from its default, so
    that a spec file stays short enough to read and edit by hand."""
    data = {"kind": layer.kind}
    for f in fields(layer):
        value = getattr(layer, f.name)
        default = _default(f)
        if default is not MISSING and _encode(value) == _encode(default):
            continue
        data[f.name] = _encode(value)
    return data


def _decode(value, path: str, depth: int = 0):
    if isinstance(value, dict):
        return layer_from_dict(value, path, depth + 1)
    if isinstance(value, list):
        if any(isinstance(v, dict) for v in value):
            return tuple(_decode(v, f"{path}[{i}]", depth) for i, v in enumerate(value))
        for v in value:
            if isinstance(v, list):
                raise SpecError(path, f"expected numbers or layers, got a nested list {value!r}")
        return tuple(value)
    return value


def _check_nesting(layer: Layer, path: str, depth: int = 0) -> None:
    if depth > MAX_NESTING:
        raise SpecError(path, f"nested too deeply: more than {MAX_NESTING} levels of layers")
    for relative, child in layer.children():
        _check_nesting(child, f"{path}.{relative}", depth + 1)


def layer_from_dict(data, path: str, depth: int = 0) -> Layer:
    if depth > MAX_NESTING:
        raise SpecError(path, f"nested too deeply: more than {MAX_NESTING} levels of layers")
    if not isinstance(data, dict) or "kind" not in data:
        raise SpecError(path, "a layer must be a JSON object with a 'kind'")
    kind = data["kind"]
    if not isinstance(kind, str):
        raise SpecError(path, f"a layer's kind must be a string, got {kind!r}")
    if not isinstance(data.get("name", ""), str):
        raise SpecError(path, f"a layer's name must be a string, got {data['name']!r}")
    cls = LAYER_KINDS.get(kind)
    if cls is None:
        raise SpecError(path, f"unknown layer kind {kind!r}; known kinds: {', '.join(LAYER_KINDS)}")
    allowed = {f.name for f in fields(cls)}
    unknown = set(data) - allowed - {"kind"}
    if unknown:
        raise SpecError(path, f"{kind} has no field(s) {', '.join(sorted(unknown))}; "
                              f"its fields: {', '.join(sorted(allowed))}")
    arguments = {k: _decode(v, f"{path}.{k}", depth) for k, v in data.items() if k != "kind"}
    try:
        layer = cls(**arguments)
    except (TypeError, ValueError) as error:
        raise SpecError(path, f"bad {kind} fields: {error}") from None
    layer.check(path)
    return layer



__all__ = ["Spec", "Inference", "layer_to_dict", "layer_from_dict", "show_shape"]
