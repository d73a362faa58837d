"""Run the imported PyTorch model itself, for ``netparity import``'s self-check."""

from __future__ import annotations

import numpy as np

from .values import CHANNELS_LAST


class TorchRunner:
    """``forward(x)``: the module's eval-mode output; ``layers(x)``: the output of every imported
    graph node (keyed by its name, which is the spec layer's name) in the spec's NCHW layout."""

    def __init__(self, module, graph_module, mapper):
        self.module = module
        self.graph_module = graph_module
        self.wanted = {}  # fx node -> [(graph node name, layout, spec shape)]
        for name, node in mapper.producer.items():
            self.wanted.setdefault(node, []).append((name, mapper.layouts.get(name), mapper.shapes.get(name)))

    @property
    def framework(self) -> str:
        """What runs the source, as reports name it (the Keras and MXNet runners say the same)."""
        import torch

        return f"PyTorch {torch.__version__}"

    def _tensor(self, x):
        import torch
        first = next(iter(self.module.parameters()), None)
        tensor = torch.from_numpy(np.asarray(x, dtype=np.float32))
        return tensor.to(first.dtype).to(first.device) if first is not None else tensor

    def _eval(self):
        was = self.module.training
        self.module.eval()
        return was

    def forward(self, x) -> np.ndarray:
        import torch
        was = self._eval()
        try:
            with torch.no_grad():
                return self.module(self._tensor(x)).float().cpu().numpy()
        finally:
            self.module.train(was)

    def layers(self, x) -> dict[str, np.ndarray]:
        import torch
        from torch.fx import Interpreter

        outputs: dict[str, np.ndarray] = {}
        wanted = self.wanted

        class Capture(Interpreter):
            def run_node(self, n):
                result = super().run_node(n)
                for name, layout, shape in wanted.get(n, ()):
                    value = result.permute(0, 3, 1, 2) if layout == CHANNELS_LAST else result
                    # a copy: an in-place operation later in the graph (ReLU(inplace=True)) would change it
                    value = value.detach().float().cpu().numpy().copy()
                    # a layer restated on (C, 1, 1) pixels (squeeze-and-excitation) is flat in the source
                    outputs[name] = value.reshape(value.shape[0], *shape) if shape else value
                return result

        was = self._eval()
        try:
            with torch.no_grad():
                Capture(self.graph_module).run(self._tensor(x))
        finally:
            self.module.train(was)
        return outputs
