"""netparity.compare: everything that runs several frameworks and compares them."""

from .parity import DEFAULT_RTOL, ParityResult, check_parity, relative_error

__all__ = ["check_parity", "ParityResult", "relative_error", "DEFAULT_RTOL"]
