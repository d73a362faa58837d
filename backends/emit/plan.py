"""The shape of emitted code, shared by every framework's emitter (framework-free).

A spec is a tree of layers. Emitted code is a set of classes (PyTorch, Gluon) or functions
(Keras), one per *structure*: blocks that differ only in their sizes (channels, strides, ...)
are one class with those sizes as constructor arguments, instantiated several times, the way
torchvision writes ``BasicBlock`` once for the eight blocks of ResNet-18.

Each framework's emitter supplies a lowering with two methods, ``leaf(path, layer, row)`` and
``block(path, layer, row)``, each returning ``(key, facts)``: the key is what changes the shape
of the code (a Keras conv with padding is two layers, one without is one), the facts are the
values the code uses, ``{name: (category, value)}``. Two blocks are one class when they have
the same kind and name and their children the same keys and names; a fact equal in every
instance is written as a literal, the others become constructor parameters, one per distinct
vector of values (so a conv's out_channels and the BatchNorm after it share one parameter).

A residual block with a projection shortcut and one without are one class when their bodies
are (torchvision's ``downsample=None``): a boolean parameter says whether there is a shortcut.

Roles of a spec block in the code:
- a class (sequences, residuals, branches): instantiated where it is used;
- inline: a sequence of leaves that is a branch or a shortcut, written where it is used as
  ``nn.Sequential(...)`` (statements in Keras);
- a residual's body, when unnamed: its layers are the residual class's own attributes;
- dense: a ``dense_concat`` block, a list of units (each a class) that the emitted file's small
  ``DenseConcat`` container runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Hashable

from ...spec import Spec
from ...spec.layers import Block, Branches, ConcatBranches, DenseConcat, Layer, Residual, Row, Sequence
from .naming import EmitError, identifier, name_base, unique

MISSING = object()

# Fact categories: only facts of the same category may share a parameter.
CATEGORIES = ("channels", "stride", "kernel", "padding", "dilation", "size", "flag", "float", "other")
# Hints of channel facts that say nothing beyond "a channel count".
_CHANNEL_HINTS = frozenset({"in_channels", "out_channels", "num_features", "in_features", "out_features",
                            "normalized_shape", "num_parameters", "filters", "units", "channels", "in_units"})

# Attribute bases of leaves that have no spec name.
LEAF_BASES = {
    "conv2d": "conv", "pad2d": "pad", "crop2d": "crop", "batchnorm": "bn", "layernorm": "norm", "prelu": "prelu",
    "channel_scale": "layer_scale", "normalize": "normalize", "maxpool2d": "maxpool", "avgpool2d": "avgpool",
    "adaptive_avgpool2d": "avgpool", "global_avgpool": "avgpool", "global_maxpool": "maxpool",
    "flatten": "flatten", "dense": "fc", "dropout": "dropout", "drop_path": "drop_path", "identity": "identity",
    "channel_shuffle": "shuffle", "channel_slice": "split",
}


def join(path: str, relative: str) -> str:
    return f"{path}.{relative}" if path else relative


@dataclass(frozen=True)
class Slot:
    """A value in a template: a literal (``param`` None), or the class parameter holding it."""

    value: Any = None
    param: str | None = None


@dataclass
class Param:
    name: str
    category: str


@dataclass
class Child:
    """One child of a class template.

    ``role``: "leaf" (a layer), "call" (an instance of ``cls`` with ``args``), "inline" (a
    sequence of leaves, ``children``), "dense" (a dense_concat of ``children`` units).
    ``rel``: its spec path relative to the class (or to the inline / dense node holding it).
    """

    role: str
    attr: str
    rel: str
    kind: str
    key: Hashable = None
    facts: dict[str, Slot] = field(default_factory=dict)
    cls: "ClassPlan | None" = None
    args: dict[str, Slot] = field(default_factory=dict)
    children: list["Child"] = field(default_factory=list)


@dataclass
class ClassPlan:
    """One class (PyTorch, Gluon) or function (Keras) of the emitted code.

    ``kind``: "model" (the spec's top level), "sequence", "residual" or "branches" (with
    ``merge``). For a residual, ``children`` is the body and ``shortcut`` the projection, which
    only the instances whose ``shortcut_flag`` parameter is true have (None: all or none have it,
    as ``shortcut`` says). ``paths`` and ``args``: each instance's spec path and arguments.
    """

    name: str
    kind: str
    merge: str
    key: Hashable
    facts: dict[str, Slot]
    params: list[Param]
    children: list[Child]
    shortcut: Child | None
    shortcut_flag: str | None
    paths: list[str]
    args: list[dict[str, Any]]
    rows: list[Row | None]


@dataclass
class Plan:
    spec: Spec
    rows: dict[str, Row]
    model: ClassPlan
    classes: list[ClassPlan]  # children before the classes that use them; the model last

    def class_of(self, path: str) -> tuple[ClassPlan, int]:
        """The class instantiated at spec ``path`` and the instance's index."""
        for cls in self.classes:
            if path in cls.paths:
                return cls, cls.paths.index(path)
        raise KeyError(path)


# ---------------------------------------------------------------------------------------
# The raw tree: the spec as classes and children, with concrete facts
# ---------------------------------------------------------------------------------------

@dataclass
class _Raw:
    role: str
    rel: str
    path: str
    layer: Layer
    context: str
    attr: str = ""
    key: Hashable = None
    facts: dict = field(default_factory=dict)
    node: "_RawClass | None" = None
    children: list["_Raw"] = field(default_factory=list)


@dataclass
class _RawClass:
    path: str
    layer: Layer | None
    row: Row | None
    kind: str
    merge: str
    key: Hashable
    facts: dict
    children: list[_Raw]
    shortcut: _Raw | None
    base: str
    height: int = 0
    sig: Hashable = None
    group: int = -1
    plan: ClassPlan | None = None
    instance: int = -1


def _is_leaf(layer: Layer) -> bool:
    return not isinstance(layer, Block)


class _Builder:
    def __init__(self, spec: Spec, lowering):
        self.spec = spec
        self.lowering = lowering
        self.rows = {r.path: r for r in spec.infer().rows}
        self.nodes: list[_RawClass] = []  # post-order: children before parents

    # -- tree ---------------------------------------------------------------------------
    def root(self) -> _RawClass:
        children = [self.child("", f"blocks[{i}]", block, "seq") for i, block in enumerate(self.spec.blocks)]
        node = _RawClass("", None, None, "model", "", (), {}, children, None, self.spec.name)
        _name_children(node)
        self.nodes.append(node)
        return node

    def child(self, parent: str, rel: str, layer: Layer, context: str) -> _Raw:
        path = join(parent, rel)
        if _is_leaf(layer):
            key, facts = self.lowering.leaf(path, layer, self.rows[path])
            return _Raw("leaf", rel, path, layer, context, key=key, facts=facts)
        if isinstance(layer, DenseConcat):
            units = [self.child(path, r, unit, "dense_unit") for r, unit in layer.children()]
            return _Raw("dense", rel, path, layer, context, children=units)
        if (isinstance(layer, Sequence) and context in ("branch", "shortcut") and not layer.name
                and all(_is_leaf(item) for item in layer.layers)):
            leaves = [self.child(path, r, item, "inline") for r, item in layer.children()]
            return _Raw("inline", rel, path, layer, context, children=leaves)
        return _Raw("call", rel, path, layer, context, node=self.block(path, layer, context))

    def block(self, path: str, layer: Block, context: str) -> _RawClass:
        row = self.rows[path]
        key, facts = self.lowering.block(path, layer, row)
        shortcut = None
        merge = ""
        if isinstance(layer, Sequence):
            kind = "sequence"
            children = [self.child(path, r, item, "seq") for r, item in layer.children()]
        elif isinstance(layer, Residual):
            kind = "residual"
            body = layer.body
            if body.name:
                children = [self.child(path, "body", body, "body")]
            else:
                children = [self.child(path, join("body", r), item, "seq") for r, item in body.children()]
            if layer.shortcut is not None:
                shortcut = self.child(path, "shortcut", layer.shortcut, "shortcut")
        elif isinstance(layer, (Branches, ConcatBranches)):
            kind = "branches"
            merge = getattr(layer, "merge", "concat")
            children = [self.child(path, r, branch, "branch") for r, branch in layer.children()]
        else:
            raise EmitError(f"{path}: no emitted form for block kind {layer.kind!r}")
        node = _RawClass(path, layer, row, kind, merge, key, facts, children, shortcut,
                         _class_base(layer, kind, merge, context))
        _name_children(node)
        self.nodes.append(node)
        return node


def _class_base(layer: Layer, kind: str, merge: str, context: str) -> str:
    if layer.name:
        return name_base(layer.name)
    if kind == "residual":
        return "residual_block"
    if kind == "branches":
        return {"concat": "concat_block", "add": "sum_block", "mul": "product_block"}[merge]
    named = {"dense_unit": "dense_layer", "branch": "branch", "shortcut": "shortcut", "body": "body"}
    if context in named:
        return named[context]
    if isinstance(layer, Sequence) and 1 < len(layer.layers) <= 3 and all(_is_leaf(item) for item in layer.layers):
        # a short run of layers is named by its content: conv_bn_relu
        return "_".join(_attr_base(_Raw("leaf", "", "", item, "seq")) for item in layer.layers)
    return "block"


def _attr_base(child: _Raw) -> str:
    if child.context == "branch":
        return "branch"
    if child.role == "leaf":
        layer = child.layer
        if layer.kind == "activation":
            return layer.function
        return LEAF_BASES[layer.kind]
    if child.context in ("branch", "shortcut"):
        return child.context
    if child.role == "dense":
        return "dense_block"
    return "block"


def _name_children(node: _RawClass) -> None:
    """Attribute names: the spec's names where given, else the kind's base, numbered when the
    base occurs more than once (``conv1``, ``conv2``, ``relu``). A residual's shortcut is
    ``shortcut``; branches are ``branch1``... ``branchN``."""
    children = list(node.children)
    taken: set[str] = {"shortcut"} if node.kind == "residual" else set()
    named = [c for c in children if c.layer.name and identifier(c.layer.name)]
    for child in named:
        child.attr = unique(identifier(child.layer.name), taken)
    rest = [c for c in children if not c.attr]
    counts: dict[str, int] = {}
    for child in rest:
        counts[_attr_base(child)] = counts.get(_attr_base(child), 0) + 1
    numbers: dict[str, int] = {}
    for child in rest:
        base = _attr_base(child)
        if counts[base] == 1 and base != "branch":
            child.attr = unique(base, taken)
        else:
            numbers[base] = numbers.get(base, 0) + 1
            child.attr = unique(f"{base}{numbers[base]}", taken)
    if node.shortcut is not None:
        node.shortcut.attr = "shortcut"
    for child in children + ([node.shortcut] if node.shortcut is not None else []):
        for j, item in enumerate(child.children):  # inline leaves and dense units: by position
            item.attr = str(j)


# ---------------------------------------------------------------------------------------
# Grouping: which blocks are one class
# ---------------------------------------------------------------------------------------

def _height(node: _RawClass) -> int:
    def of(child: _Raw) -> int:
        if child.role == "call":
            return child.node.height
        return max((of(c) for c in child.children), default=0)

    parts = node.children + ([node.shortcut] if node.shortcut is not None else [])
    return 1 + max((of(c) for c in parts), default=0)


def _child_sig(child: _Raw) -> Hashable:
    if child.role == "leaf":
        return ("leaf", child.attr, child.layer.kind, child.key)
    if child.role == "call":
        return ("call", child.attr, child.node.group)
    return (child.role, child.attr, tuple(_child_sig(c) for c in child.children))


def _group(nodes: list[_RawClass]) -> list[list[_RawClass]]:
    """Nodes (post-order) grouped into classes, level by level from the leaves up, since a
    parent's structure names its children's classes."""
    for node in nodes:
        node.height = _height(node)
    ids: dict[Hashable, int] = {}
    for height in sorted({n.height for n in nodes}):
        level = [n for n in nodes if n.height == height]
        bodies: dict[Hashable, set] = {}
        for node in level:
            body = (node.kind, node.merge, node.key, node.base, tuple(_child_sig(c) for c in node.children))
            shortcut = None if node.shortcut is None else _child_sig(node.shortcut)
            node.sig = (body, shortcut)
            if shortcut is not None:
                bodies.setdefault(body, set()).add(shortcut)
        for node in level:
            body, shortcut = node.sig
            if node.kind == "residual" and shortcut is None and len(bodies.get(body, ())) == 1:
                node.sig = (body, next(iter(bodies[body])))  # the same class, without its shortcut
            node.group = ids.setdefault(node.sig, len(ids))
    groups: dict[int, list[_RawClass]] = {}
    for node in nodes:  # post-order: a class comes after every class it uses
        groups.setdefault(node.group, []).append(node)
    return list(groups.values())


# ---------------------------------------------------------------------------------------
# Unification: literals and parameters
# ---------------------------------------------------------------------------------------

def _slots(node: _RawClass) -> dict[tuple, tuple]:
    """{slot id: (category, value, hint)} of one instance, in code order."""
    out: dict[tuple, tuple] = {}
    for name, (category, value) in node.facts.items():
        out[("b", name)] = (category, value, name)

    def visit(prefix: tuple, child: _Raw) -> None:
        if child.role == "leaf":
            for name, (category, value) in child.facts.items():
                out[prefix + ("f", name)] = (category, value, name)
        elif child.role == "call":
            plan, args = child.node.plan, child.node.plan.args[child.node.instance]
            for param in plan.params:
                out[prefix + ("a", param.name)] = (param.category, args[param.name], param.name)
        else:
            for j, item in enumerate(child.children):
                visit(prefix + ("i", j), item)

    for i, child in enumerate(node.children):
        visit(("c", i), child)
    if node.kind == "residual":
        out[("shortcut",)] = ("flag", node.shortcut is not None, "project")
        if node.shortcut is not None:
            visit(("s",), node.shortcut)
    return out


def _compatible(a: list, b: list) -> bool:
    return all(x is MISSING or y is MISSING or x == y for x, y in zip(a, b))


def _filled(a: list, b: list) -> list:
    return [y if x is MISSING else x for x, y in zip(a, b)]


def _channels(node: _RawClass, which: int):
    if node.row is None:
        return MISSING
    shape = node.row.input_shape if which == 0 else node.row.output_shape
    return shape[0]


def _unify(name: str, group: list[_RawClass]) -> ClassPlan:
    instances = [_slots(node) for node in group]
    order: list[tuple] = []
    seen: set[tuple] = set()
    for slots in instances:
        for sid in slots:
            if sid not in seen:
                seen.add(sid)
                order.append(sid)
    vectors = {sid: [s[sid][1] if sid in s else MISSING for s in instances] for sid in order}
    category = {sid: next(s[sid][0] for s in instances if sid in s) for sid in order}
    hint = {sid: next(s[sid][2] for s in instances if sid in s) for sid in order}

    slot_of: dict[tuple, Slot] = {}
    groups: list[list] = []  # [category, vector, [slot ids]]

    def join_group(sid) -> bool:
        for entry in groups:
            if entry[0] == category[sid] and _compatible(entry[1], vectors[sid]):
                entry[1] = _filled(entry[1], vectors[sid])
                entry[2].append(sid)
                return True
        return False

    # Slots every instance has first; then those of an optional shortcut, which join a
    # parameter they agree with where defined (its stride is the body's ``stride``) before
    # becoming literals.
    partial = [sid for sid in order if MISSING in vectors[sid]]
    for sid in [s for s in order if s not in partial] + partial:
        defined = [v for v in vectors[sid] if v is not MISSING]
        constant = all(v == defined[0] for v in defined)
        if constant and (sid not in partial or not join_group(sid)):
            slot_of[sid] = Slot(defined[0])
        elif not constant and not join_group(sid):
            groups.append([category[sid], list(vectors[sid]), [sid]])

    inputs = [_channels(n, 0) for n in group]
    outputs = [_channels(n, 1) for n in group]
    named: list[tuple[str, list]] = []
    taken: set[str] = set()
    for cat, vector, sids in groups:
        base = hint[sids[0]]
        if cat == "channels":
            if _compatible(vector, inputs) and "in_channels" not in taken:
                base = "in_channels"
            elif _compatible(vector, outputs) and "out_channels" not in taken:
                base = "out_channels"
            elif base in _CHANNEL_HINTS:
                base = "channels"
        pname = unique(re.sub(r"(?<=[a-z_])\d+$", "", identifier(base)) or "value", taken)
        named.append((pname, cat, vector, sids))
    priority = {"in_channels": 0, "out_channels": 1}
    named.sort(key=lambda item: priority.get(item[0], 2))  # stable: first use order otherwise
    params = [Param(pname, cat) for pname, cat, _, _ in named]
    for pname, _, _, sids in named:
        for sid in sids:
            slot_of[sid] = Slot(param=pname)
    args = [{pname: (None if vector[k] is MISSING else vector[k]) for pname, _, vector, _ in named}
            for k in range(len(group))]

    template = next((n for n in group if n.shortcut is not None), group[0])

    def build(prefix: tuple, raw: _Raw) -> Child:
        child = Child(raw.role, raw.attr, raw.rel, raw.layer.kind, key=raw.key)
        if raw.role == "leaf":
            child.facts = {fname: slot_of[prefix + ("f", fname)] for fname in raw.facts}
        elif raw.role == "call":
            child.cls = raw.node.plan
            child.args = {p.name: slot_of[prefix + ("a", p.name)] for p in child.cls.params}
        else:
            child.children = [build(prefix + ("i", j), item) for j, item in enumerate(raw.children)]
        return child

    children = [build(("c", i), raw) for i, raw in enumerate(template.children)]
    shortcut = None if template.shortcut is None else build(("s",), template.shortcut)
    flag = slot_of.get(("shortcut",))
    plan = ClassPlan(name, template.kind, template.merge, template.key,
                     {fname: slot_of[("b", fname)] for fname in template.facts}, params, children, shortcut,
                     flag.param if flag is not None else None, [n.path for n in group], args,
                     [n.row for n in group])
    for k, node in enumerate(group):
        node.plan, node.instance = plan, k
    return plan


def build_plan(spec: Spec, lowering, class_name, reserved=()) -> Plan:
    """The classes of ``spec``'s code. ``class_name(base) -> str`` turns a name base
    (``stage``, ``residual_block``, or the spec's name for the model) into the framework's
    class or function name; names are made unique in order of first use and never one of
    ``reserved`` (the helpers the emitted file may define)."""
    builder = _Builder(spec, lowering)
    root = builder.root()
    taken: set[str] = set(reserved)
    classes = []
    groups = _group(builder.nodes)
    root_group = root.group
    # The model's name first, so that it keeps it; the rest in order of first use.
    model_name = unique(class_name(root.base), taken)
    for group in groups:
        if group[0].group == root_group:
            continue
        classes.append(_unify(unique(class_name(_common_base(group)), taken), group))
    model = _unify(model_name, [root])
    classes.append(model)
    return Plan(spec, builder.rows, model, classes)


def _common_base(group: list[_RawClass]) -> str:
    counts: dict[str, int] = {}
    for node in group:
        counts[node.base] = counts.get(node.base, 0) + 1
    return max(counts, key=lambda b: counts[b])  # first-seen wins ties (dicts keep order)


# ---------------------------------------------------------------------------------------
# Walking the plan: where each spec path lives in the emitted model
# ---------------------------------------------------------------------------------------

def native_paths(plan: Plan) -> dict[str, tuple]:
    """{spec path of every leaf: native segments}, the attribute chain from the model to the
    layer, e.g. ``('stage1', 'block1', 'conv1')``; inline and dense children are positions
    (``('branch2', '0')``). Each framework joins the segments its own way."""
    paths: dict[str, tuple] = {}

    def walk_class(cls: ClassPlan, index: int, path: str, prefix: tuple) -> None:
        has_shortcut = cls.shortcut is not None and (
            cls.shortcut_flag is None or bool(cls.args[index][cls.shortcut_flag]))
        parts = list(cls.children) + ([cls.shortcut] if has_shortcut else [])
        for child in parts:
            walk_child(child, path, prefix)

    def walk_child(child: Child, path: str, prefix: tuple) -> None:
        here = join(path, child.rel)
        segments = prefix + (child.attr,)
        if child.role == "leaf":
            paths[here] = segments
        elif child.role == "call":
            cls, index = plan.class_of(here)
            walk_class(cls, index, here, segments)
        else:
            for item in child.children:
                walk_child(item, here, segments)

    walk_class(plan.model, 0, "", ())
    return paths
