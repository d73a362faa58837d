"""Writing emitted source: lines, comments said once per file, helpers, and the formatter.

Framework-free; black is imported only when a file is formatted.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from .naming import EmitError, literal
from .plan import Slot

LINE_LENGTH = 100


@dataclass
class Writer:
    """Lines of one file. ``note(text)`` writes a comment the first time that text is noted in
    the file (a framework difference explained once, where the reader first meets it);
    ``helpers`` collects the names of the small helper classes the file needs."""

    lines: list[str] = field(default_factory=list)
    depth: int = 0
    noted: set[str] = field(default_factory=set)
    helpers: list[str] = field(default_factory=list)

    def line(self, text: str = "") -> None:
        self.lines.append(("    " * self.depth + text) if text else "")

    def note(self, text: str) -> None:
        if text and text not in self.noted:
            self.noted.add(text)
            for part in wrap_comment(text, LINE_LENGTH - 4 * self.depth - 2):
                self.line("# " + part)

    def helper(self, name: str) -> None:
        if name not in self.helpers:
            self.helpers.append(name)

    @contextmanager
    def indented(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def wrap_comment(text: str, width: int) -> list[str]:
    """Words of ``text`` in lines of at most ``width`` characters."""
    lines, current = [], ""
    for word in re.findall(r"\S*\([^()]{0,20}\)\S*|\S+", text):  # "(0, 1)" stays on one line
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


def expr(slot: Slot) -> str:
    """The source of a template value: its parameter's name, or the literal."""
    return slot.param if slot.param is not None else literal(slot.value)


def arguments(facts: dict[str, Slot], positional=(), keywords=(), extra: list[str] | None = None) -> str:
    """``a, b, stride=2, bias=False`` from facts: ``positional`` fact names, then ``keywords``
    as (keyword, fact name, default): a literal equal to its default is left out."""
    parts = [expr(facts[name]) for name in positional]
    for keyword, name, default in keywords:
        slot = facts[name]
        if slot.param is None and default is not _REQUIRED and slot.value == default:
            continue
        parts.append(f"{keyword}={expr(slot)}")
    return ", ".join(parts + list(extra or []))


_REQUIRED = object()
REQUIRED = _REQUIRED  # a keyword always written


def format_source(source: str) -> str:
    """``source`` formatted by black at 100 columns; every line must then fit in 100."""
    try:
        import black
    except ImportError as error:
        raise EmitError("netparity emit formats its output with black, which is not installed: "
                        "pip install 'black>=26.1,<27'") from error
    formatted = black.format_str(source, mode=black.Mode(line_length=LINE_LENGTH))
    long = [i + 1 for i, line in enumerate(formatted.splitlines()) if len(line) > LINE_LENGTH]
    if long:
        raise EmitError(f"emitted line(s) {long[:5]} are longer than {LINE_LENGTH} characters")
    return formatted


def class_doc(cls, residual: str) -> list[str]:
    """The docstring lines of an emitted class or function: what it is, and where the spec
    uses it (a reader can find it with ``netparity show MODEL --all``)."""
    what = {"model": "The network.", "sequence": "Layers in sequence.",
            "residual": residual + ("." if cls.shortcut is not None else "") if cls.shortcut is not None
            else residual.split(" + ")[0] + " + x.",
            "branches": {"concat": "Branches on one input, concatenated on channels.",
                         "add": "Branches on one input, summed.",
                         "mul": "Branches on one input, multiplied."}.get(cls.merge, "Branches.")}[cls.kind]
    if cls.kind == "residual" and cls.shortcut_flag:
        what = what[:-1] + f", with a shortcut only when {cls.shortcut_flag}."
    if cls.kind != "model":
        first = cls.paths[0]
        more = len(cls.paths) - 1
        what += f" Spec path {first}" + (f" and {more} more." if more else ".")
    lines = wrap_comment(what, LINE_LENGTH - 12)
    lines[0] = '"""' + lines[0]
    lines[-1] += '"""'
    return lines


def load_module(source: str, name: str = "emitted_model"):
    """The emitted file run as a module in this process (its classes and ``build_model``)."""
    import types

    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def call_arguments(cls, args: dict) -> list[str]:
    """A class's constructor (or Keras function's) arguments: channel counts that lead the
    parameter list positionally, as torchvision writes ``BasicBlock(64, 128, stride=2)``; the
    rest by keyword."""
    parts, positional = [], True
    for param in cls.params:
        positional = positional and param.category == "channels"
        value = expr(args[param.name])
        parts.append(value if positional else f"{param.name}={value}")
    return parts
