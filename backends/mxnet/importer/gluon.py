"""A Gluon ``HybridBlock`` (MXNet installed) as a netparity spec with canonical weights.

The block is hybridized, run once on zeros of the input shape (which also finishes Gluon's
deferred initialisation) and exported with ``HybridBlock.export`` into a temporary directory;
the symbol and params it writes then go through ``import_symbol``, the same reader that takes
checkpoint files, so a Gluon model and its exported files import identically.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ....spec.errors import NetparityError
from ...frameworks import import_mxnet
from .params import read_params
from .symbol import SymbolError, import_symbol


def import_block(block, input_shape, output=None, name=None):
    """``ImportedModel`` of a Gluon HybridBlock taking (N, *input_shape) NCHW batches.

    Side effects on ``block``: it is hybridized (``block.hybridize()``) and has run once in
    inference mode, which changes no parameter or running statistic."""
    mx = import_mxnet()
    if not isinstance(block, mx.gluon.HybridBlock):
        raise SymbolError(f"expected a Gluon HybridBlock, got {type(block).__name__}: only a HybridBlock can be "
                          "exported to a symbol graph")
    shape = tuple(input_shape)
    if len(shape) != 3 or any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in shape):
        raise SymbolError(f"input_shape must be three positive integers (C, H, W), got {input_shape!r}")
    block.hybridize()
    try:
        block(mx.nd.zeros((1, *shape)))
    except Exception as error:  # MXNet raises MXNetError, RuntimeError or ValueError here
        if isinstance(error, NetparityError):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SymbolError(f"running {type(block).__name__} on a (1, {', '.join(map(str, shape))}) input failed "
                          f"({type(error).__name__}: {first_line}); is it initialized, and does it take this input "
                          "size?") from None
    with tempfile.TemporaryDirectory(prefix="netparity-gluon-") as folder:
        prefix = Path(folder) / "model"
        block.export(str(prefix), epoch=0)
        symbol = json.loads(Path(f"{prefix}-symbol.json").read_text(encoding="utf-8"))
        params = read_params(f"{prefix}-0000.params")
    return import_symbol(symbol, params, input_shape=shape, output=output,
                         name=name or type(block).__name__.lower(), source=f"Gluon {type(block).__name__}")


__all__ = ["import_block"]
