"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (nothing downloaded).

The official 60,000-image training file is split into train / validation with a fixed
seed; the 10,000-image test file is only for the final figures (``edgepilot split bench``).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path(os.environ.get("EDGEPILOT_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
VALIDATION_IMAGES = 5000
SPLIT_SEED = 20240


def _read_idx(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: install the Debian package dataset-fashion-mnist "
            "(scripts/bootstrap.sh does) or set EDGEPILOT_FASHION_MNIST"
        )
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # unsigned byte data
        raise ValueError(f"{path}: not an idx ubyte file (magic {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


def load_official(kind: str, root: Path = DEFAULT_ROOT) -> Split:
    prefix = {"train": "train", "test": "t10k"}[kind]
    images = _read_idx(Path(root) / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(Path(root) / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{kind}: {len(images)} images but {len(labels)} labels")
    return Split(images, labels)


def split_indices(n: int, validation_images: int = VALIDATION_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) into the official training file; fixed seed."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return order[validation_images:], order[:validation_images]


def train_validation(root: Path = DEFAULT_ROOT, validation_images: int = VALIDATION_IMAGES,
                     limit: int | None = None) -> tuple[Split, Split]:
    """Carve a fixed validation split out of the official training file.

    ``limit`` caps the training split (tests train on a few hundred images)."""
    full = load_official("train", root)
    train_idx, val_idx = split_indices(len(full), validation_images)
    if limit is not None:
        train_idx = train_idx[:limit]
        val_idx = val_idx[: max(1, min(validation_images, limit))]
    return Split(full.images[train_idx], full.labels[train_idx]), Split(full.images[val_idx], full.labels[val_idx])


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]; the model input contract."""
    return (images.astype(np.float32) / 255.0)[:, None, :, :]
