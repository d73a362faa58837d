"""netparity.spec.reference: every layer kind in float64 NumPy, the oracle the frameworks meet.

Following ONNX (an operator is its schema, its shape inference and a reference
implementation), each kind of spec/layers.py has a float64 implementation here
(``REFERENCE``, kinds.py), written with a small reverse-mode autodiff (autodiff.py; its
convolution and pooling operations in windows.py; erf.py for exact GELU) so that input and
weight gradients come from the same code as the forward pass; forward.py walks a spec. This package
is also a backend in its own right, with the functions of netparity.backends' modules
(backend.py): ``check_parity`` runs it beside the frameworks and compares each of them
with it. NumPy only, like the rest of netparity.spec.
"""

from .backend import (EXECUTIONS, FRAMEWORK, NAME, PRECISIONS, ReferenceModel, ReferenceOptimizer, build,
                      cross_entropy, forward, forward_layers, get_weights, gradients, input_gradient, load_checkpoint,
                      make_optimizer, parameter_counts, save_checkpoint, seed_everything, set_learning_rate,
                      set_weights, train_step, trainable_keys, version)
from .kinds import REFERENCE

LAYER_BUILDERS = REFERENCE  # the name a backend's kind table has (tests check every kind is mapped)

__all__ = ["NAME", "FRAMEWORK", "EXECUTIONS", "PRECISIONS", "REFERENCE", "LAYER_BUILDERS", "ReferenceModel",
           "ReferenceOptimizer", "build", "cross_entropy", "forward", "forward_layers", "get_weights", "gradients",
           "input_gradient", "load_checkpoint", "make_optimizer", "parameter_counts", "save_checkpoint",
           "seed_everything", "set_learning_rate", "set_weights", "train_step", "trainable_keys", "version"]
