"""MXNet checkpoints without MXNet: the ``.params`` NDArray file (params.py), the symbol JSON
(symbol.py) and Gluon blocks (gluon.py, which needs MXNet). Importing this package imports no
framework."""

from .params import CheckpointError, read_ndarray_file, read_params, split_prefixes, write_params


def import_model(model, input_shape=None, name: str | None = None, source: str | None = None):
    """``ImportedModel`` (backends/importing.py) of a Gluon ``HybridBlock`` taking (N, C, H, W)
    batches of ``input_shape`` (C, H, W), through the symbol graph it exports (gluon.py; needs
    MXNet). A checkpoint on disk is read without MXNet by ``symbol.import_symbol``."""
    from .gluon import import_block
    from .symbol import SymbolError

    if input_shape is None:
        raise SymbolError("input_shape (C, H, W) is required to import a Gluon block: it declares none")
    imported = import_block(model, input_shape, name=name)
    if source is not None:
        imported.source = source
    return imported


__all__ = ["CheckpointError", "import_model", "read_ndarray_file", "read_params", "split_prefixes", "write_params"]
