"""Classes with ``__init__`` and a forward method: what the PyTorch and Gluon emitters share.

A ``Dialect`` says how one framework spells a module, a forward, a sequence of modules and a
merge; ``write_classes`` writes every class of a plan with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .plan import Child, ClassPlan, Plan
from .source import Writer, call_arguments, class_doc


@dataclass
class LeafCode:
    """``ctor``: the module kept as an attribute (None: the leaf needs none); ``call``: how the
    forward method applies it (``{m}`` the module, ``{x}`` the input); ``seq``: the modules that
    compute it inside a sequential container (default: ``[ctor]``); ``helpers``: helper
    definitions the code uses; ``note``: a comment said where the reader first meets it."""

    ctor: str | None
    call: str = "{m}({x})"
    seq: list[str] | None = None
    helpers: tuple[str, ...] = ()
    note: str = ""

    def sequential(self) -> list[str]:
        return self.seq if self.seq is not None else [self.ctor]


class Dialect:
    base = "nn.Module"
    forward = "def forward(self, x):"

    def leaf_code(self, child: Child) -> LeafCode:
        raise NotImplementedError

    def sequential(self, modules: list[str], out: Writer) -> str:
        raise NotImplementedError

    def dense(self, units: list[str], out: Writer) -> str:
        raise NotImplementedError

    def merge(self, merge: str, branches: list[str], out: Writer) -> str:
        raise NotImplementedError

    def add(self, value: str, shortcut: str, out: Writer) -> str:
        """A residual block's sum."""
        return f"{value} + {shortcut}"


def call_ctor(child: Child) -> str:
    """``ClassName(args)``: leading channel counts positional, the rest by keyword."""
    return f"{child.cls.name}({', '.join(call_arguments(child.cls, child.args))})"


def _leaf(dialect: Dialect, child: Child, out: Writer, as_module: bool) -> LeafCode:
    code = dialect.leaf_code(child)
    if code.ctor is not None or as_module:
        for name in code.helpers:
            out.helper(name)
    out.note(code.note)
    return code


def ctor(dialect: Dialect, child: Child, out: Writer) -> str | None:
    """The expression building ``child``'s module (None: a leaf computed in forward)."""
    if child.role == "leaf":
        return _leaf(dialect, child, out, as_module=False).ctor
    if child.role == "call":
        return call_ctor(child)
    if child.role == "inline":
        modules = []
        for leaf in child.children:
            modules += _leaf(dialect, leaf, out, as_module=True).sequential()
        return dialect.sequential(modules, out)
    return dialect.dense([call_ctor(unit) for unit in child.children], out)


def apply(dialect: Dialect, child: Child, x: str) -> str | None:
    """The forward expression of ``child`` on ``x`` (None: the identity)."""
    if child.role == "leaf":
        code = dialect.leaf_code(child)
        if code.ctor is None and code.call == "{x}":
            return None
        return code.call.format(m=f"self.{child.attr}", x=x)
    return f"self.{child.attr}({x})"


def write_class(dialect: Dialect, cls: ClassPlan, out: Writer) -> None:
    out.line(f"class {cls.name}({dialect.base}):")
    with out.indented():
        for line in class_doc(cls, "A residual block: body(x) + shortcut(x)"):
            out.line(line)
        out.line()
        out.line(f"def __init__(self{''.join(f', {p.name}' for p in cls.params)}):")
        with out.indented():
            out.line("super().__init__()")
            for child in cls.children:
                built = ctor(dialect, child, out)
                if built is not None:
                    out.line(f"self.{child.attr} = {built}")
            if cls.shortcut is not None:
                built = ctor(dialect, cls.shortcut, out)
                if cls.shortcut_flag:
                    out.line("self.shortcut = None")
                    out.line(f"if {cls.shortcut_flag}:")
                    with out.indented():
                        out.line(f"self.shortcut = {built}")
                else:
                    out.line(f"self.shortcut = {built}")
        out.line()
        out.line(dialect.forward)
        with out.indented():
            write_forward(dialect, cls, out)
    out.line()
    out.line()


def write_forward(dialect: Dialect, cls: ClassPlan, out: Writer) -> None:
    if cls.kind in ("model", "sequence"):
        for child in cls.children:
            step = apply(dialect, child, "x")
            if step is not None:
                out.line(f"x = {step}")
        out.line("return x")
    elif cls.kind == "residual":
        value = "x"
        for child in cls.children:
            step = apply(dialect, child, value)
            if step is not None:
                out.line(f"out = {step}")
                value = "out"
        if cls.shortcut is None:
            out.line(f"return {dialect.add(value, 'x', out)}")
        elif cls.shortcut_flag:
            out.line("shortcut = x if self.shortcut is None else self.shortcut(x)")
            out.line(f"return {dialect.add(value, 'shortcut', out)}")
        else:
            out.line(f"return {dialect.add(value, 'self.shortcut(x)', out)}")
    else:
        branches = [apply(dialect, child, "x") or "x" for child in cls.children]
        out.line(f"return {dialect.merge(cls.merge, branches, out)}")


def write_classes(dialect: Dialect, plan: Plan, out: Writer) -> None:
    for cls in plan.classes:
        write_class(dialect, cls, out)
