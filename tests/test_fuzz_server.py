"""Property-based fuzzing (hypothesis) of every protobuf message the edge server accepts,
over real gRPC on loopback: random bytes to every method (unary and streaming), and
random-but-well-formed ``InferRequest`` messages built around a real one. Every call must
end with a gRPC status (no hang: each has a deadline the server must beat), the server
must keep serving, and a valid call must still succeed afterwards.

The number of cases tried is kept in ``CASES`` and checked at the end."""

from __future__ import annotations

import zlib
from collections import Counter

import grpc
import numpy as np
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings, strategies as st

from edgepilot.edge_agent.server.app import ServerConfig
from edgepilot.edge_agent.server.split_service import BatchingConfig, build_split_server
from edgepilot.edge_agent.split.bundle import SplitBundle
from edgepilot.edge_agent.split.client import SplitClient
from edgepilot.v1 import split_inference_pb2 as pb

CASES: Counter = Counter()
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                database=None, derandomize=True)
OK_CODES = set(grpc.StatusCode) - {grpc.StatusCode.UNKNOWN}    # UNKNOWN = an exception escaped a handler

METHODS = {
    "/edgepilot.v1.SplitInference/Infer": "unary",
    "/edgepilot.v1.SplitInference/ListModels": "unary",
    "/grpc.health.v1.Health/Check": "unary",
    "/edgepilot.v1.SplitInference/InferStream": "stream",
    "/grpc.health.v1.Health/Watch": "server_stream",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "stream",
}


@pytest.fixture(scope="module")
def bundle() -> SplitBundle:
    return SplitBundle.load()


@pytest.fixture(scope="module")
def server(bundle):
    srv = build_split_server([bundle], ServerConfig(port=0, max_workers=8, stream_idle_seconds=2.0,
                                                    max_message_bytes=256 * 1024),
                             BatchingConfig(max_batch=4, default_deadline_seconds=5.0))
    srv.start()
    yield srv
    srv.stop(1.0)


@pytest.fixture(scope="module")
def client(server, bundle):
    with SplitClient(server.address, bundle) as c:
        yield c


@pytest.fixture(scope="module")
def good(client):
    img = np.zeros((28, 28), dtype=np.uint8)
    img[6:20, 8:18] = 200
    return client.co_inference_request(img)[0]


def _status(fn) -> grpc.StatusCode:
    """The call's status; a DEADLINE_EXCEEDED the server chose (a request deadline already
    past, details naming the field) reads as INVALID_ARGUMENT-like OUT_OF_RANGE here, so
    that DEADLINE_EXCEEDED means only "the client's own timeout ran out": a hang."""
    try:
        out = fn()
        if hasattr(out, "__iter__") and not isinstance(out, (bytes, pb.InferResponse)):
            list(out)
        return grpc.StatusCode.OK
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and (err.details() or "").startswith("deadline:"):
            return grpc.StatusCode.OUT_OF_RANGE
        return err.code()


def _still_serving(client, good) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    assert len(client.stub.Infer(good, timeout=10).logits) == 10


@settings(FUZZ, max_examples=120)
@given(method=st.sampled_from(sorted(METHODS)), data=st.lists(st.binary(max_size=512), min_size=1, max_size=3))
def test_random_bytes_to_every_method(client, method, data) -> None:
    kind = METHODS[method]
    ident = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    if kind == "unary":
        code = _status(lambda: client.channel.unary_unary(method, **ident)(data[0], timeout=10))
    elif kind == "server_stream":
        code = _status(lambda: client.channel.unary_stream(method, **ident)(data[0], timeout=0.5))
    else:
        code = _status(lambda: client.channel.stream_stream(method, **ident)(iter(data), timeout=10))
    CASES["random bytes"] += 1
    # a Watch that parsed stays open until its deadline; anything else must be answered
    allowed = OK_CODES if kind == "server_stream" else OK_CODES - {grpc.StatusCode.DEADLINE_EXCEEDED}
    assert code in allowed, (method, code)


def _mutated(good: pb.InferRequest, draw) -> pb.InferRequest:
    req = pb.InferRequest()
    req.CopyFrom(good)
    if draw(st.booleans()):
        req.request_id = draw(st.text(max_size=300))
    if draw(st.booleans()):
        req.model.model_id = draw(st.sampled_from([good.model.model_id, ""]) | st.text(max_size=200))
    if draw(st.booleans()):
        req.model.version = draw(st.sampled_from([good.model.version, "", "2"]) | st.text(max_size=50))
    if draw(st.booleans()):
        req.split_point = draw(st.sampled_from([0, good.split_point]) | st.integers(-2 ** 31, 2 ** 31 - 1))
    if draw(st.booleans()):
        del req.latent_shape.dims[:]
        req.latent_shape.dims.extend(draw(st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), max_size=6)
                                          | st.sampled_from([[1, 28, 28], list(good.latent_shape.dims)])))
    if draw(st.booleans()):
        req.codec.codec_id = draw(st.sampled_from(["image/png", "image/jpeg", "image/webp", "zstd"]) | st.text(max_size=40))
    if draw(st.booleans()):
        req.codec.version = draw(st.sampled_from(["1", "2", ""]))
    if draw(st.booleans()):
        blob = bytearray(req.bitstream)
        for _ in range(draw(st.integers(1, 4))):
            if blob:
                blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
        req.bitstream = bytes(blob) if draw(st.booleans()) else draw(st.binary(max_size=4096))
        if draw(st.booleans()):   # a checksum that matches the damaged payload: the codec must refuse it
            req.bitstream_crc32 = zlib.crc32(req.bitstream) & 0xFFFFFFFF
    if draw(st.booleans()):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            req.ClearField("bitstream_crc32")
        else:
            req.bitstream_crc32 = draw(st.integers(0, 2 ** 32 - 1))
    if draw(st.booleans()):
        req.deadline.CopyFrom(timestamp_pb2.Timestamp(seconds=draw(st.integers(-2 ** 63, 2 ** 63 - 1)),
                                                      nanos=draw(st.integers(-2 ** 31, 2 ** 31 - 1))))
    return req


@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_random_well_formed_infer_requests(client, good, data) -> None:
    req = _mutated(good, data.draw)
    code = _status(lambda: client.stub.Infer(req, timeout=10))
    CASES["Infer messages"] += 1
    assert code in OK_CODES and code != grpc.StatusCode.DEADLINE_EXCEEDED, code
    if code == grpc.StatusCode.OK:   # accepted: it must be the intact payload with its checksum
        assert zlib.crc32(req.bitstream) & 0xFFFFFFFF == req.bitstream_crc32


@settings(FUZZ, max_examples=40)
@given(data=st.data(), n=st.integers(1, 6))
def test_random_streams_of_infer_requests(client, good, data, n) -> None:
    reqs = [_mutated(good, data.draw) for _ in range(n)]
    out = []
    code = _status(lambda: out.extend(client.stub.InferStream(iter(reqs), timeout=20)))
    CASES["InferStream streams"] += 1
    assert code == grpc.StatusCode.OK, code
    assert len(out) == n
    for r in out:
        assert r.HasField("error") or len(r.logits) == 10
        assert not r.HasField("error") or (r.error.code in {c.value[0] for c in OK_CODES} and len(r.error.message) <= 1024)


def test_list_models_with_random_unknown_fields(client, good) -> None:
    for i in range(20):
        raw = bytes([0x0A, 0x03]) + bytes([i, i + 1, i + 2])   # field 1 (unknown), length-delimited
        out = client.channel.unary_unary("/edgepilot.v1.SplitInference/ListModels",
                                         request_serializer=lambda b: b,
                                         response_deserializer=pb.ListModelsResponse.FromString)(raw, timeout=10)
        assert out.endpoints
        CASES["ListModels unknown fields"] += 1


def test_server_still_serves_after_the_fuzzing(client, good) -> None:
    _still_serving(client, good)
    print("\nfuzz cases tried: " + ", ".join(f"{k} {v}" for k, v in sorted(CASES.items())) +
          f"; total {sum(CASES.values())}")
    assert sum(CASES.values()) >= 120 + 250 + 40 + 20 or not CASES   # when run alone, nothing was fuzzed
