"""MXNet checkpoints without MXNet: the ``.params`` NDArray file (params.py), the symbol JSON
(symbol.py) and Gluon blocks (gluon.py, which needs MXNet). Importing this package imports no
framework."""

from .params import CheckpointError, read_ndarray_file, read_params, split_prefixes, write_params

__all__ = ["CheckpointError", "read_ndarray_file", "read_params", "split_prefixes", "write_params"]
