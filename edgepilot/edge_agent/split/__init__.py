"""Client-edge co-inference on the device and the edge server (no torch): the entropy
codec with integer CDF tables (constriction range coder), ONNX head / tail runners, the
bundle loader, the gRPC client and link emulation."""

from edgepilot.edge_agent.split.codec import (
    CodecError,
    FactorizedCodec,
    ImageCodec,
    quantize_latent,
)
from edgepilot.edge_agent.split.bundle import BundleError, SplitBundle

__all__ = ["BundleError", "CodecError", "FactorizedCodec", "ImageCodec", "SplitBundle", "quantize_latent"]
