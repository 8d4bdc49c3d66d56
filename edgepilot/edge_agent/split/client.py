"""Device-side client: head (ONNX) -> quantize -> entropy encode -> gRPC -> result.

Also builds the edge-only baseline requests (an encoded image for split point 0), and
can push every request through an :class:`EmulatedLink`."""

from __future__ import annotations

import itertools
import time
import uuid
import zlib
from dataclasses import dataclass

import grpc
import numpy as np
from google.protobuf import timestamp_pb2

from edgepilot.edge_agent.split.bundle import SplitBundle
from edgepilot.edge_agent.split.codec import IMAGE_CODEC_IDS, ImageCodec
from edgepilot.edge_agent.split.link import EmulatedLink
from edgepilot.v1 import split_inference_pb2 as pb, split_inference_pb2_grpc as pb_grpc


@dataclass
class InferResult:
    request_id: str
    logits: np.ndarray
    predicted_class: int
    payload_bytes: int           # bitstream bytes
    request_bytes: int           # serialized request
    response_bytes: int
    device_seconds: float        # head + quantize + encode on this device
    round_trip_seconds: float    # gRPC call incl. emulated link
    server: object               # ServerTimings


def as_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) or float (N, 1, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    if a.ndim == 3:
        a = a[:, None]
    return np.ascontiguousarray(a, dtype=np.float32)


class SplitClient:
    def __init__(self, target: str, bundle: SplitBundle, credentials: grpc.ChannelCredentials | None = None,
                 max_message_bytes: int = 4 * 1024 * 1024, link: EmulatedLink | None = None,
                 channel: grpc.Channel | None = None):
        self.bundle = bundle
        self.link = link
        opts = [("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)]
        if channel is None:
            channel = grpc.secure_channel(target, credentials, options=opts) if credentials else \
                grpc.insecure_channel(target, options=opts)
        self.channel = channel
        self.stub = pb_grpc.SplitInferenceStub(channel)
        self._ids = itertools.count()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _base_request(self, deadline_seconds: float | None) -> pb.InferRequest:
        req = pb.InferRequest(request_id=f"{uuid.uuid4().hex[:12]}-{next(self._ids)}")
        req.model.model_id, req.model.version = self.bundle.model_id, self.bundle.version
        if deadline_seconds is not None:
            ts = timestamp_pb2.Timestamp()
            ts.FromNanoseconds(int((time.time() + deadline_seconds) * 1e9))
            req.deadline.CopyFrom(ts)
        return req

    # --- request builders -----------------------------------------------------------------
    def co_inference_request(self, image, deadline_seconds: float | None = None) -> tuple[pb.InferRequest, float]:
        """One image -> (request, device seconds for head + quantize + encode)."""
        t0 = time.perf_counter()
        symbols = self.bundle.head_symbols(as_model_input(np.asarray(image)[None]))[0]
        bitstream = self.bundle.codec.encode(symbols)
        seconds = time.perf_counter() - t0
        req = self._base_request(deadline_seconds)
        req.split_point = self.bundle.split_point
        req.latent_shape.dims.extend(symbols.shape)
        req.codec.codec_id, req.codec.version = self.bundle.codec.codec_id, self.bundle.codec.version
        req.bitstream = bitstream
        req.bitstream_crc32 = zlib.crc32(bitstream) & 0xFFFFFFFF
        return req, seconds

    def edge_only_request(self, image: np.ndarray, codec_id: str = "image/png", quality: int | None = None,
                          deadline_seconds: float | None = None) -> tuple[pb.InferRequest, float]:
        """Edge-only baseline: the uint8 (28, 28) image compressed with PNG / JPEG / WebP."""
        if codec_id not in IMAGE_CODEC_IDS:
            raise ValueError(f"codec_id must be one of {sorted(IMAGE_CODEC_IDS)}, got {codec_id!r}")
        t0 = time.perf_counter()
        codec = ImageCodec(codec_id)
        data = codec.encode(np.asarray(image, dtype=np.uint8), quality)
        seconds = time.perf_counter() - t0
        req = self._base_request(deadline_seconds)
        req.split_point = 0
        req.latent_shape.dims.extend(self.bundle.input_shape)
        req.codec.codec_id, req.codec.version = codec_id, codec.version
        req.bitstream = data
        req.bitstream_crc32 = zlib.crc32(data) & 0xFFFFFFFF
        return req, seconds

    # --- calls -------------------------------------------------------------------------------
    def call(self, req: pb.InferRequest, device_seconds: float = 0.0, timeout: float | None = 10.0) -> InferResult:
        request_bytes = req.ByteSize()
        t0 = time.perf_counter()
        if self.link:
            self.link.transfer(request_bytes, "up")
        resp = self.stub.Infer(req, timeout=timeout)
        response_bytes = resp.ByteSize()
        if self.link:
            self.link.transfer(response_bytes, "down")
        rtt = time.perf_counter() - t0
        return InferResult(resp.request_id, np.asarray(resp.logits, dtype=np.float32), resp.predicted_class,
                           len(req.bitstream), request_bytes, response_bytes, device_seconds, rtt, resp.timings)

    def infer(self, image, timeout: float | None = 10.0) -> InferResult:
        req, dev = self.co_inference_request(image, deadline_seconds=timeout)
        return self.call(req, dev, timeout)

    def infer_edge_only(self, image, codec_id: str = "image/png", quality: int | None = None,
                        timeout: float | None = 10.0) -> InferResult:
        req, dev = self.edge_only_request(image, codec_id, quality, deadline_seconds=timeout)
        return self.call(req, dev, timeout)

    def infer_stream(self, images, timeout: float | None = 60.0) -> list[pb.InferResponse]:
        """Co-inference over one bidirectional stream; responses in request order."""
        requests = [self.co_inference_request(img)[0] for img in images]
        return list(self.stub.InferStream(iter(requests), timeout=timeout))

    def list_models(self, timeout: float = 5.0) -> pb.ListModelsResponse:
        return self.stub.ListModels(pb.ListModelsRequest(), timeout=timeout)
