"""netparity.spec: framework-free network specs, shape inference and the zoo.

Nothing here imports a deep-learning framework; this package is the oracle
every backend is checked against.
"""

from . import zoo
from .errors import NetparityError, SpecError
from .layers import (BLOCK_KINDS, LAYER_KINDS, Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Block,
                     Branches, ChannelScale, ChannelShuffle, ChannelSlice, ConcatBranches, Conv2d, Crop2d, Dense,
                     DenseConcat, DropPath, Dropout, Flatten, GlobalAvgPool, GlobalMaxPool, Identity, Layer,
                     LayerNorm, MaxPool2d, Normalize, Pad2d, PReLU, Residual, Row, Sequence, show_shape)
from .model import Inference, Spec
from .weights import init_weights


def load(model: "str | Spec") -> Spec:
    """A Spec from a zoo name, a JSON file path, or a Spec (returned as is)."""
    if isinstance(model, Spec):
        return model
    if str(model).endswith(".json"):
        return Spec.load(model)
    return zoo.get(model)


__all__ = ["Spec", "Inference", "SpecError", "NetparityError", "LAYER_KINDS", "BLOCK_KINDS", "zoo", "init_weights", "load",
           "Layer", "Block", "Row", "Conv2d", "BatchNorm", "Activation", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "GlobalAvgPool", "Flatten", "Dense", "Dropout", "Sequence", "ConcatBranches",
           "Residual", "DenseConcat", "show_shape", "Pad2d", "LayerNorm", "PReLU", "ChannelScale", "Normalize",
           "GlobalMaxPool", "DropPath", "Identity", "ChannelShuffle", "ChannelSlice", "Branches",
           "Crop2d"]
