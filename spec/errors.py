"""netparity's exceptions. Every error netparity raises for bad input derives from
``NetparityError``, so a caller (and the CLI) can catch them all in one place."""


class NetparityError(Exception):
    """Base of every error netparity raises on purpose: bad specs, files, weights, models or
    options. The CLI prints its message on one line and exits with code 2; anything else
    that escapes is a bug and keeps its traceback."""


class SpecError(NetparityError, ValueError):
    """A spec that cannot describe a network.

    ``path`` names the offending layer the way a user would write it in Python
    (``blocks[3].layers[1]``); ``reason`` says what is wrong with it.
    """

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)
