"""The one exception a bad spec raises: it says where (the layer path) and why."""


class SpecError(ValueError):
    """A spec that cannot describe a network.

    ``path`` names the offending layer the way a user would write it in Python
    (``blocks[3].layers[1]``); ``reason`` says what is wrong with it.
    """

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)
