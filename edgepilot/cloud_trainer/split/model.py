"""A small CNN for Fashion-MNIST that can be partitioned after any block, and the
co-inference model: head -> analysis transform -> entropy bottleneck -> synthesis -> tail.

Input contract (also the ONNX contract): float32 (N, 1, 28, 28) in [0, 1].
Split point k in 1..len(blocks)-1 means blocks[:k] run on the device, blocks[k:] on the
edge server; split point 0 (edge-only) means the whole model runs on the server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgepilot.cloud_trainer.split.entropy import EntropyBottleneck


@dataclass(frozen=True)
class CNNConfig:
    widths: tuple[int, int, int] = (32, 64, 128)
    hidden: int = 128
    dropout: float = 0.3
    num_classes: int = 10

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "CNNConfig":
        return CNNConfig(widths=tuple(d["widths"]), hidden=d["hidden"], dropout=d["dropout"], num_classes=d["num_classes"])


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SplitCNN(nn.Module):
    """blocks[0]: 1 -> w0 @14x14, blocks[1]: w0 -> w1 @7x7, blocks[2]: w1 -> w2 @3x3,
    blocks[3]: classifier. Cutting after block k gives the latent of block k."""

    def __init__(self, config: CNNConfig = CNNConfig()):
        super().__init__()
        w0, w1, w2 = config.widths
        self.config = config
        self.blocks = nn.ModuleList([
            nn.Sequential(*_conv(1, w0), nn.MaxPool2d(2)),
            nn.Sequential(*_conv(w0, w1), nn.MaxPool2d(2)),
            nn.Sequential(*_conv(w1, w2), nn.MaxPool2d(2)),
            nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(w2 * 3 * 3, config.hidden),
                          nn.ReLU(inplace=True), nn.Dropout(config.dropout), nn.Linear(config.hidden, config.num_classes)),
        ])

    @staticmethod
    def feature_shape(config: CNNConfig, split_point: int) -> tuple[int, int, int]:
        w0, w1, w2 = config.widths
        shapes = {1: (w0, 14, 14), 2: (w1, 7, 7), 3: (w2, 3, 3)}
        if split_point not in shapes:
            raise ValueError(f"split_point must be one of {sorted(shapes)}, got {split_point}")
        return shapes[split_point]

    def head(self, x: torch.Tensor, split_point: int) -> torch.Tensor:
        for block in self.blocks[:split_point]:
            x = block(x)
        return x

    def tail(self, h: torch.Tensor, split_point: int) -> torch.Tensor:
        for block in self.blocks[split_point:]:
            h = block(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(x, 0)


ANALYSIS_INIT_GAIN = 10.0


@dataclass(frozen=True)
class CodecConfig:
    split_point: int = 3
    latent_channels: int = 16

    def to_dict(self) -> dict:
        return asdict(self)


class CoInferenceModel(nn.Module):
    """Device: head + analysis (y = g_a(h)). Wire: round(y), entropy coded with the
    factorized prior. Server: synthesis + tail."""

    def __init__(self, cnn: SplitCNN, codec: CodecConfig = CodecConfig()):
        super().__init__()
        self.cnn = cnn
        self.codec = codec
        cin = SplitCNN.feature_shape(cnn.config, codec.split_point)[0]
        c = codec.latent_channels
        self.analysis = nn.Conv2d(cin, c, 3, padding=1)
        with torch.no_grad():
            # Start with latents of order 1-10 rather than 0.1-1: rounding then keeps the
            # information the tail needs, and the rate term prunes from there.
            self.analysis.weight.mul_(ANALYSIS_INIT_GAIN)
        self.synthesis = nn.Sequential(nn.Conv2d(c, cin, 3, padding=1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.entropy_bottleneck = EntropyBottleneck(c)

    def latent_shape(self) -> tuple[int, int, int]:
        _, h, w = SplitCNN.feature_shape(self.cnn.config, self.codec.split_point)
        return (self.codec.latent_channels, h, w)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Device-side head: the continuous latent y (rounded outside the network)."""
        return self.analysis(self.cnn.head(x, self.codec.split_point))

    def decode(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Server-side tail: logits from the (dequantized) integer latent."""
        return self.cnn.tail(self.synthesis(y_hat), self.codec.split_point)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, bits per image). Training: additive uniform noise for the rate term,
        straight-through rounding for the task path; eval: hard rounding."""
        y = self.encode(x)
        likelihood = self.entropy_bottleneck.likelihood(self.entropy_bottleneck.quantize(y, noise=self.training))
        y_hat = y + (torch.round(y) - y).detach()
        bits = -torch.log2(likelihood).flatten(1).sum(dim=1)
        return self.decode(y_hat), bits
