"""netparity: one CNN spec, three frameworks, proven equal.

Importing netparity imports no deep-learning framework. The public API:

- ``netparity.spec``: ``Spec``, the layer kinds, ``zoo``, ``init_weights``, ``SpecError``
- ``netparity.backends``: ``get_backend("torch" | "mxnet" | "keras")``
- ``netparity.compare``: ``check_parity``
"""

from netparity.spec import NetparityError, Spec, SpecError, init_weights, load, zoo

__version__ = "0.1.0"


def get_backend(name: str):
    from netparity.backends import get_backend as _get_backend

    return _get_backend(name)


def check_parity(*args, **kwargs):
    from netparity.compare import check_parity as _check_parity

    return _check_parity(*args, **kwargs)


__all__ = ["Spec", "SpecError", "NetparityError", "zoo", "load", "init_weights", "get_backend", "check_parity", "__version__"]
