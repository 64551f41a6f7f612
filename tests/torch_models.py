"""Tiny PyTorch fixture models for the PyTorch → TFLite tests, trained on synthetic data.

Why trained: an untrained model's argmax is noise, and "int8 agrees with float" means nothing
on noise. Each model learns a task it can solve in a few hundred Adam steps (well under a
second each): where a bright blob is, which frequency a signal has, a weighted sum. Everything
is seeded, so the .pt2 files are the same on every run.

Shapes are PyTorch's (NCHW / NCL); each model is saved twice with ``torch.export.save``: with a
static batch of 1 (what most people export) and with a dynamic batch (``Dim``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEED = 0


@dataclass(frozen=True)
class Fixture:
    """One trained model: its data in model layout (the calibration slice, with its labels,
    doubles as QAT's training data), and the two saved programs."""

    name: str
    module: nn.Module
    calibration: list[np.ndarray]
    calibration_y: np.ndarray
    eval_x: list[np.ndarray]
    eval_y: np.ndarray
    classify: bool
    static_pt2: Path
    dynamic_pt2: Path


# ----------------------------------------------------------------------------- models
class Cnn(nn.Module):
    """Conv/ReLU/MaxPool twice, then a dense layer; ``bn`` adds BatchNorm (QAT's conv+BN
    annotator is the one that needs the WrapperModule workaround)."""

    def __init__(self, channels: int, classes: int = 4, bn: bool = False) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8) if bn else nn.Identity()
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 3 * 3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.relu(self.bn(self.c1(x))))
        y = self.pool(self.relu(self.c2(y)))
        return self.fc(torch.flatten(y, 1))


class DepthwiseResidual(nn.Module):
    """Pointwise → depthwise 3x3 → pointwise with a residual add, global average pool."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, stride=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.relu = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.stem(x))
        y = y + self.relu(self.pw(self.relu(self.dw(y))))
        return self.fc(torch.flatten(self.gap(y), 1))


class Conv1dNet(nn.Module):
    """Two strided Conv1d layers on a 2-channel signal (NCL), then a dense layer."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(2, 8, 5, stride=2, padding=2)
        self.c2 = nn.Conv1d(8, 8, 5, stride=2, padding=2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8 * 8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.c2(self.relu(self.c1(x))))
        return self.fc(torch.flatten(y, 1))


class TwoInputs(nn.Module):
    """An image branch and a vector branch, concatenated: a regression (one value)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.vec = nn.Linear(6, 8)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4 * 4 * 4 + 8, 1)

    def forward(self, image: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        a = torch.flatten(self.pool(self.relu(self.conv(image))), 1)
        b = self.relu(self.vec(vector))
        return self.head(torch.cat([a, b], dim=1))


# ----------------------------------------------------------------------------- data
def _blobs(rng: np.random.Generator, n: int, channels: int, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Noise plus a bright 4x4 blob in one of four quadrants; the label is the quadrant."""
    y = rng.integers(0, 4, n)
    x = rng.normal(0.0, 0.3, (n, channels, size, size)).astype(np.float32)
    half = size // 2
    for i, q in enumerate(y):
        r, c = (q // 2) * half + rng.integers(0, half - 3), (q % 2) * half + rng.integers(0, half - 3)
        x[i, :, r:r + 4, c:c + 4] += rng.uniform(0.8, 1.5, (channels, 1, 1)).astype(np.float32)
    return x, y


def _color_blobs(rng: np.random.Generator, n: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Noise on 3 channels plus a 5x5 blob anywhere on one channel; the label is the channel
    (a task a global average pool can still solve, unlike "which quadrant")."""
    y = rng.integers(0, 3, n)
    x = rng.normal(0.0, 0.3, (n, 3, size, size)).astype(np.float32)
    for i, ch in enumerate(y):
        r, c = rng.integers(0, size - 5, 2)
        x[i, ch, r:r + 5, c:c + 5] += rng.uniform(0.8, 1.5)
    return x, y


def _waves(rng: np.random.Generator, n: int, length: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A noisy 2-channel sine whose frequency (1, 3 or 6 cycles) is the label."""
    y = rng.integers(0, 3, n)
    t = np.arange(length) / length
    cycles = np.array([1.0, 3.0, 6.0])[y]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    base = np.sin(2 * np.pi * cycles[:, None] * t[None, :] + phase)
    x = np.stack([base, np.cos(2 * np.pi * cycles[:, None] * t[None, :] + phase)], axis=1)
    return (x + rng.normal(0, 0.2, x.shape)).astype(np.float32), y


def _pairs(rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Image brightness of the top half plus a weighted sum of the vector."""
    image = rng.normal(0, 0.5, (n, 1, 8, 8)).astype(np.float32)
    vector = rng.normal(0, 1.0, (n, 6)).astype(np.float32)
    y = image[:, 0, :4].mean(axis=(1, 2)) * 2 + vector @ np.array([0.5, -0.3, 0.2, 0.0, 0.4, -0.1], np.float32)
    return [image, vector], y.astype(np.float32)[:, None]


def _train(module: nn.Module, xs: list[np.ndarray], y: np.ndarray, classify: bool, steps: int = 300) -> None:
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    rng = np.random.default_rng(SEED + 1)
    tx, ty = [torch.from_numpy(x) for x in xs], torch.from_numpy(y)
    module.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(y), 32))
        out = module(*[t[idx] for t in tx])
        loss = nn.functional.cross_entropy(out, ty[idx].long()) if classify else nn.functional.mse_loss(out, ty[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()


def _save(module: nn.Module, xs: list[np.ndarray], root: Path, name: str) -> tuple[Path, Path]:
    """The two exports: batch 1 static, and a dynamic batch (traced at 2: export specializes 1)."""
    one = tuple(torch.from_numpy(x[:1]) for x in xs)
    two = tuple(torch.from_numpy(x[:2]) for x in xs)
    static, dynamic = root / f"{name}_b1.pt2", root / f"{name}_dyn.pt2"
    torch.export.save(torch.export.export(module, one), str(static))
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(module, two, dynamic_shapes=tuple({0: batch} for _ in two)), str(dynamic))
    return static, dynamic


_Maker = Callable[[np.random.Generator], tuple[nn.Module, list[np.ndarray], np.ndarray, bool]]
MAKERS: dict[str, _Maker] = {
    "cnn1": lambda rng: (Cnn(1), *(lambda x, y: ([x], y))(*_blobs(rng, 600, 1)), True),
    "cnn3": lambda rng: (Cnn(3, bn=True), *(lambda x, y: ([x], y))(*_blobs(rng, 600, 3)), True),
    "dwres": lambda rng: (DepthwiseResidual(3), *(lambda x, y: ([x], y))(*_color_blobs(rng, 600)), True),
    "conv1d": lambda rng: (Conv1dNet(), *(lambda x, y: ([x], y))(*_waves(rng, 600)), True),
    "two_inputs": lambda rng: (TwoInputs(), *_pairs(rng, 600), False),
}


def build(name: str, root: Path) -> Fixture:
    """Build, train and save fixture ``name`` under ``root``: 400 training samples, 100 for
    calibration, 100 held out for evaluation (all from one seeded generator)."""
    torch.set_num_threads(1)  # tiny models: threads only fight over the 2 cores (8x slower here)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    module, xs, y, classify = MAKERS[name](rng)
    train, calib, held = slice(0, 400), slice(400, 500), slice(500, 600)
    _train(module, [x[train] for x in xs], y[train], classify)
    static, dynamic = _save(module, xs, root, name)
    return Fixture(name, module, [x[calib] for x in xs], y[calib], [x[held] for x in xs], y[held], classify,
                   static, dynamic)


def bn_model() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A factory (``tests.torch_models:bn_model``): conv + BatchNorm, the QAT annotator's case."""
    torch.manual_seed(SEED)
    return Cnn(1, bn=True).eval(), (torch.zeros(1, 1, 12, 12),)
