"""The shipped bundle (edge_agent/split/assets/fmnist-cnn): integrity, and the properties
the issue asks of it, checked on validation images (the test split is for the figures)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepilot.cloud_trainer.split.data import train_validation
from edgepilot.edge_agent.split.bundle import DEFAULT_BUNDLE, SplitBundle
from edgepilot.edge_agent.split.client import as_model_input
from edgepilot.edge_agent.split.codec import ImageCodec


@pytest.fixture(scope="module")
def shipped() -> SplitBundle:
    return SplitBundle.load(DEFAULT_BUNDLE)


@pytest.fixture(scope="module")
def validation():
    _, va = train_validation()
    return va.images[:1000], va.labels[:1000]


def test_shipped_files_are_small(shipped) -> None:
    for entry in shipped.manifest["files"].values():
        assert (shipped.root / entry["path"]).stat().st_size < 2 * 1024 * 1024


def test_shipped_model_accuracy_and_payload(shipped, validation) -> None:
    images, labels = validation
    x = as_model_input(images)
    full_acc = float((shipped.full_logits(x).argmax(1) == labels).mean())
    symbols = shipped.head_symbols(x)
    payload = [len(shipped.codec.encode(s)) for s in symbols]
    co_acc = float((shipped.tail_logits(symbols).argmax(1) == labels).mean())
    png = ImageCodec("image/png")
    png_bytes = np.mean([len(png.encode(img)) for img in images[:200]])
    assert full_acc >= 0.90                      # a good small CNN on Fashion-MNIST
    assert co_acc >= full_acc - 0.01             # the codec costs (almost) nothing
    assert np.mean(payload) * 6 <= png_bytes     # >= 6x smaller than edge-only lossless
