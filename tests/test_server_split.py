"""The gRPC edge server over real loopback gRPC with real onnxruntime and constriction:
correct results, INVALID_ARGUMENT naming the field for every kind of malformed request
(and the server stays up), health, reflection, streams, micro-batching, the bounded queue,
deadlines, graceful drain, metrics, message-size limits and TLS / mTLS."""

from __future__ import annotations

import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from edgepilot.edge_agent.server.app import EdgeServer, ServerConfig
from edgepilot.edge_agent.server.split_service import BatchingConfig, SplitInferenceService, build_split_server
from edgepilot.edge_agent.server.tls import TLSConfig, channel_credentials, write_dev_pki
from edgepilot.edge_agent.split.bundle import SplitBundle
from edgepilot.edge_agent.split.client import SplitClient, as_model_input
from edgepilot.v1 import split_inference_pb2 as pb
from tests.helpers.images import stand_in_images


def images(n: int = 8) -> np.ndarray:
    return stand_in_images(n, seed=3)


@pytest.fixture(scope="module")
def bundle() -> SplitBundle:
    return SplitBundle.load()


@pytest.fixture(scope="module")
def server(bundle):
    srv = build_split_server([bundle], ServerConfig(port=0, max_message_bytes=64 * 1024, metrics_port=0),
                             BatchingConfig(max_batch=8, max_wait_seconds=0.002, max_bitstream_bytes=8 * 1024))
    srv.start()
    yield srv
    srv.stop(1.0)


@pytest.fixture()
def client(server, bundle):
    with SplitClient(server.address, bundle) as c:
        yield c


def test_co_inference_matches_local_tail(client, bundle) -> None:
    imgs = images(4)
    for img in imgs:
        r = client.infer(img)
        symbols = bundle.head_symbols(as_model_input(img[None]))
        expected = bundle.tail_logits(symbols)[0]
        np.testing.assert_allclose(r.logits, expected, rtol=1e-5, atol=1e-5)
        assert r.predicted_class == int(np.argmax(expected))
        assert r.server.total_seconds > 0 and r.server.batch_size >= 1
        assert r.payload_bytes == len(bundle.codec.encode(symbols[0]))


def test_edge_only_png_matches_full_model(client, bundle) -> None:
    img = images(1)[0]
    r = client.infer_edge_only(img, "image/png")
    np.testing.assert_allclose(r.logits, bundle.full_logits(as_model_input(img[None]))[0], rtol=1e-5, atol=1e-5)


def _bad_requests(client, bundle):
    good, _ = client.co_inference_request(images(1)[0])

    def variant(**changes):
        req = pb.InferRequest()
        req.CopyFrom(good)
        for key, value in changes.items():
            if key == "latent_shape":
                del req.latent_shape.dims[:]
                req.latent_shape.dims.extend(value)
            elif key == "model_id":
                req.model.model_id = value
            elif key == "version":
                req.model.version = value
            elif key == "codec_id":
                req.codec.codec_id = value
            elif key == "codec_version":
                req.codec.version = value
            else:
                setattr(req, key, value)
        return req

    c, h, w = bundle.latent_shape
    return good, [
        ("latent_shape", variant(latent_shape=[c, h, w + 1])),
        ("latent_shape", variant(latent_shape=[])),
        ("codec.codec_id", variant(codec_id="zstd")),
        ("codec.version", variant(codec_version="99")),
        ("model.model_id", variant(model_id="resnet-1000")),
        ("model.model_id", variant(model_id="")),
        ("model.version", variant(version="7")),
        ("split_point", variant(split_point=bundle.split_point + 5)),
        ("bitstream", variant(bitstream=good.bitstream[:-3])),
        ("bitstream", variant(bitstream=b"")),
        ("bitstream", variant(bitstream=bytes(range(256)) * 4)),       # garbage
        ("bitstream", variant(bitstream=b"\x00" * (9 * 1024))),         # over max_bitstream_bytes
        ("request_id", variant(request_id="x" * 500)),
        ("bitstream", variant(split_point=0, codec_id="image/png", latent_shape=[1, 28, 28], bitstream=b"not a png")),
    ]


def test_malformed_requests_get_invalid_argument_and_server_stays_up(client, bundle) -> None:
    good, bad = _bad_requests(client, bundle)
    for field, req in bad:
        with pytest.raises(grpc.RpcError) as err:
            client.stub.Infer(req, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.value.details())
        assert err.value.details().startswith(field), (field, err.value.details())
        assert ("edgepilot-field", field) in tuple(err.value.trailing_metadata())
        # ... and a good request right after still succeeds
        assert client.stub.Infer(good, timeout=5).logits


def test_undecodable_protobuf_and_oversized_message(server, client) -> None:
    raw = client.channel.unary_unary("/edgepilot.v1.SplitInference/Infer",
                                     request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff\xff garbage that is not a protobuf", timeout=5)
    assert err.value.code() != grpc.StatusCode.OK
    req, _ = client.co_inference_request(images(1)[0])
    req.bitstream = b"\x01" * (128 * 1024)  # beyond the 64 KiB transport limit
    with pytest.raises(grpc.RpcError) as err:
        client.stub.Infer(req, timeout=5)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.infer(images(1)[0]).logits.size == 10


def test_stream_answers_each_item_and_survives_bad_ones(client) -> None:
    reqs = []
    for i, img in enumerate(images(6)):
        req, _ = client.co_inference_request(img)
        if i == 2:
            req.bitstream = req.bitstream[:-1]
        if i == 4:
            req.codec.codec_id = "nope"
        reqs.append(req)
    responses = list(client.stub.InferStream(iter(reqs), timeout=30))
    assert [r.request_id for r in responses] == [r.request_id for r in reqs]
    for i, r in enumerate(responses):
        if i in (2, 4):
            assert r.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert r.error.field == ("bitstream" if i == 2 else "codec.codec_id")
        else:
            assert not r.HasField("error") and len(r.logits) == 10


def test_health_reflection_and_list_models(server, client, bundle) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    for name in ("", "edgepilot.v1.SplitInference"):
        status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
    names = {s.name for s in resp.list_services_response.service}
    assert {"edgepilot.v1.SplitInference", "grpc.health.v1.Health"} <= names
    eps = {(e.split_point, tuple(e.latent_shape.dims)) for e in client.list_models().endpoints}
    assert (bundle.split_point, bundle.latent_shape) in eps and (0, (1, 28, 28)) in eps


def test_metrics_are_exposed(server, client) -> None:
    client.infer(images(1)[0])
    bad, _ = client.co_inference_request(images(1)[0])
    bad.codec.codec_id = "nope"
    with pytest.raises(grpc.RpcError):
        client.stub.Infer(bad, timeout=5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    assert 'edgepilot_requests_total{code="OK",method="Infer"}' in text
    assert "edgepilot_batch_size_bucket" in text
    assert 'edgepilot_requests_total{code="INVALID_ARGUMENT",method="Infer"}' in text


# --- queueing behaviour with a model run we can hold ----------------------------------------
class Gate:
    """A model run function that blocks until released (the batcher is real)."""

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.release.wait(10)
        self.batches.append(len(x))
        return np.tile(np.arange(10, dtype=np.float32), (len(x), 1))


def gated_server(bundle, gate: Gate, **batching):
    service = SplitInferenceService(batching=BatchingConfig(**batching))
    service.add_endpoint(bundle.model_id, bundle.version, bundle.split_point, bundle.latent_shape,
                         {bundle.codec.codec_id: bundle.codec}, gate)
    srv = EdgeServer(ServerConfig(port=0, grace_seconds=10), service.metrics)
    srv.add_service(service)
    srv.start()
    return srv, service


def _call_async(client, req, timeout=10):
    return client.stub.Infer.future(req, timeout=timeout)


def _wait_for(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def test_micro_batching_groups_waiting_requests(bundle) -> None:
    gate = Gate()
    srv, service = gated_server(bundle, gate, max_batch=8, max_wait_seconds=0.0, queue_capacity=64)
    try:
        with SplitClient(srv.address, bundle) as c:
            req, _ = c.co_inference_request(images(1)[0])
            first = _call_async(c, req)
            gate.entered.wait(5)                       # batch 1 (one request) is running, held
            ep = next(iter(service.endpoints.values()))
            rest = [_call_async(c, req) for _ in range(5)]
            _wait_for(lambda: ep.batcher.depth() == 5)  # the other five wait in the queue
            gate.release.set()
            assert first.result().timings.batch_size == 1
            assert {f.result().timings.batch_size for f in rest} == {5}
            assert gate.batches == [1, 5]
    finally:
        gate.release.set()
        srv.stop(1)


def test_batching_off_runs_one_at_a_time(bundle) -> None:
    gate = Gate()
    gate.release.set()
    srv, _ = gated_server(bundle, gate, max_batch=1)
    try:
        with SplitClient(srv.address, bundle) as c:
            req, _ = c.co_inference_request(images(1)[0])
            futures = [_call_async(c, req) for _ in range(6)]
            assert all(f.result().timings.batch_size == 1 for f in futures)
            assert gate.batches == [1] * 6
    finally:
        srv.stop(1)


def test_full_queue_answers_resource_exhausted(bundle) -> None:
    gate = Gate()
    srv, service = gated_server(bundle, gate, max_batch=1, queue_capacity=2)
    try:
        with SplitClient(srv.address, bundle) as c:
            req, _ = c.co_inference_request(images(1)[0])
            running = _call_async(c, req)
            gate.entered.wait(5)
            ep = next(iter(service.endpoints.values()))
            queued = [_call_async(c, req) for _ in range(2)]
            _wait_for(lambda: ep.batcher.depth() == 2)
            with pytest.raises(grpc.RpcError) as err:
                c.stub.Infer(req, timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            gate.release.set()
            assert running.result().logits and all(f.result().logits for f in queued)  # nothing accepted is lost
    finally:
        gate.release.set()
        srv.stop(1)


def test_deadlines_are_honoured(bundle) -> None:
    gate = Gate()
    srv, service = gated_server(bundle, gate, max_batch=1)
    try:
        with SplitClient(srv.address, bundle) as c:
            req, _ = c.co_inference_request(images(1)[0])
            past = pb.InferRequest()
            past.CopyFrom(req)
            past.deadline.CopyFrom(timestamp_pb2.Timestamp(seconds=int(time.time()) - 5))
            with pytest.raises(grpc.RpcError) as err:
                c.stub.Infer(past, timeout=5)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert gate.batches == []                    # never ran
            running = _call_async(c, req)
            gate.entered.wait(5)
            with pytest.raises(grpc.RpcError) as err:    # waits behind the held batch past its deadline
                c.stub.Infer(req, timeout=0.3)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            gate.release.set()
            assert running.result().logits
            _wait_for(lambda: len(gate.batches) >= 1)
            assert c.stub.Infer(req, timeout=5).logits   # still serving
            assert gate.batches == [1, 1]                # the expired one was dropped, not run
    finally:
        gate.release.set()
        srv.stop(1)


def test_graceful_shutdown_drains_in_flight_calls(bundle) -> None:
    gate = Gate()
    srv, _ = gated_server(bundle, gate, max_batch=1)
    with SplitClient(srv.address, bundle) as c:
        req, _ = c.co_inference_request(images(1)[0])
        in_flight = _call_async(c, req)
        gate.entered.wait(5)
        stopper = threading.Thread(target=srv.stop, kwargs={"grace": 10})
        stopper.start()
        time.sleep(0.2)
        health = health_pb2_grpc.HealthStub(c.channel)
        with pytest.raises(grpc.RpcError) as err:        # new calls are refused while draining
            health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        gate.release.set()
        assert in_flight.result(timeout=10).logits        # the in-flight call completed
        stopper.join(15)
        assert not stopper.is_alive()


def test_mutual_tls(bundle, tmp_path) -> None:
    pki = write_dev_pki(tmp_path)
    tls = TLSConfig(pki["server_cert"], pki["server_key"], pki["ca"])
    srv = build_split_server([bundle], ServerConfig(port=0, tls=tls), BatchingConfig(max_batch=4))
    srv.start()
    try:
        creds = channel_credentials(pki["ca"], pki["client_cert"], pki["client_key"])
        with SplitClient(srv.address, bundle, creds) as c:
            assert c.infer(images(1)[0]).logits.size == 10
        with SplitClient(srv.address, bundle, channel_credentials(pki["ca"])) as c:  # no client certificate
            with pytest.raises(grpc.RpcError) as err:
                c.infer(images(1)[0], timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with SplitClient(srv.address, bundle) as c:                                 # plaintext
            with pytest.raises(grpc.RpcError):
                c.infer(images(1)[0], timeout=5)
    finally:
        srv.stop(1)
