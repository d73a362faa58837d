"""netparity's PyTorch backend: what netparity knows about PyTorch, in modules with the same names
and function signatures in every backend package (``tests/test_backend_consistency.py``):

- ``core``: build a spec as a native model; canonical weights in and out; forward, per-layer
  outputs, input gradients; SGD training and checkpoints (the module ``get_backend`` returns);
- ``layout``: the weight-layout facts (kernel axes, the flatten order, BatchNorm's momentum
  convention, native parameter names), written once, in NumPy alone;
- ``tracing``: the parameterised layers of a hand-written native model, for ``verify``;
- ``importer``: a native model (or file) as a spec with canonical weights;
- ``emitter``: standalone source code and the framework's own weight file.

Importing this package imports no framework; ``core`` and ``tracing`` import it.
"""

NAME = "torch"
