"""LeNet with BatchNorm and ResNet-18 in PyTorch, as "Dive into Deep Learning" writes them.

``nn.Sequential`` for the plain stacks, an ``nn.Module`` with its own ``forward`` for the
residual unit; PyTorch's BatchNorm defaults (eps 1e-5, momentum 0.1) are the zoo specs' own.
"""

from __future__ import annotations

import numpy as np

from ...backends.frameworks import import_torch
from . import IN_CHANNELS, NUM_CLASSES

torch = import_torch()
nn = torch.nn
F = torch.nn.functional


# -- LeNet with BatchNorm ---------------------------------------------------------------------

def lenet_bn() -> nn.Module:
    """LeNet-5 with a BatchNorm after every conv and hidden dense layer, for 1 x 28 x 28."""
    return nn.Sequential(
        nn.Conv2d(IN_CHANNELS, 6, kernel_size=5), nn.BatchNorm2d(6), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
        nn.Linear(84, NUM_CLASSES))


# -- ResNet-18 ------------------------------------------------------------------------------

class Residual(nn.Module):
    """d2l's residual unit: relu(bn2(conv2(relu(bn1(conv1(x))))) + [conv3](x))."""

    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X  # in place, as the book writes it
        return F.relu(Y)


def resnet_block(input_channels, num_channels, num_residuals, first_block=False):
    blk = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2))
        else:
            blk.append(Residual(num_channels, num_channels))
    return blk


def resnet18(input_size: int | None = None) -> nn.Module:
    """d2l's ResNet-18 for 1 input channel and 10 classes. ``input_size`` is not needed (the
    global average pool takes any size); it is accepted like the other frameworks' resnet18."""
    b1 = nn.Sequential(nn.Conv2d(IN_CHANNELS, 64, kernel_size=7, stride=2, padding=3),
                       nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(*resnet_block(64, 64, 2, first_block=True))
    b3 = nn.Sequential(*resnet_block(64, 128, 2))
    b4 = nn.Sequential(*resnet_block(128, 256, 2))
    b5 = nn.Sequential(*resnet_block(256, 512, 2))
    return nn.Sequential(b1, b2, b3, b4, b5,
                         nn.AdaptiveAvgPool2d((1, 1)),
                         nn.Flatten(), nn.Linear(512, NUM_CLASSES))


# -- Running them ---------------------------------------------------------------------------

def native_batch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def make_train_step(net: nn.Module, lr: float, momentum: float, weight_decay: float):
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def train_step(X: torch.Tensor, y: np.ndarray) -> float:
        net.train()
        optimizer.zero_grad()
        loss = F.cross_entropy(net(X), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        return loss.item()

    return train_step


def make_infer(net: nn.Module):
    def infer(X: torch.Tensor) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            return net(X).numpy()

    return infer
