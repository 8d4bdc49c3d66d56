"""Faults an ordinary or hostile client causes the edge server, over real loopback gRPC:
cancelled, expired, idle and never-read streams in numbers larger than the worker pool
(then health and a valid call), calls without a deadline, invalid timestamps, unbounded
input in error messages, corrupted bitstreams, image decompression bombs, failure
accounting in the metrics, a wedged server's health, and SIGTERM with streams open."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgepilot.edge_agent.server.app import ServerConfig
from edgepilot.edge_agent.server.split_service import BatchingConfig, build_split_server
from edgepilot.edge_agent.split.bundle import SplitBundle
from edgepilot.edge_agent.split.client import SplitClient
from edgepilot.edge_agent.split.codec import ImageCodec
from edgepilot.v1 import split_inference_pb2 as pb
from tests.helpers.images import stand_in_images

REPO = Path(__file__).resolve().parent.parent
WORKERS = 6


def images(n: int = 4) -> np.ndarray:
    return stand_in_images(n, seed=5)


@pytest.fixture(scope="module")
def bundle() -> SplitBundle:
    return SplitBundle.load()


def _server(bundle, **config):
    cfg = dict(port=0, max_workers=WORKERS, grace_seconds=2.0, stream_idle_seconds=1.0)
    cfg.update(config)
    srv = build_split_server([bundle], ServerConfig(**cfg), BatchingConfig(max_batch=4))
    srv.start()
    return srv


@pytest.fixture()
def server(bundle):
    srv = _server(bundle)
    yield srv
    srv.stop(1.0)


def _retrying(fn):
    """RESOURCE_EXHAUSTED means "retry later": during a burst the concurrent-call limit
    refuses calls at once rather than queueing them. Anything else fails the test."""
    for _ in range(50):
        try:
            return fn()
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            time.sleep(0.1)
    return fn()


def _healthy_and_serving(srv, bundle) -> None:
    """Health answers SERVING and a valid call succeeds, each within a generous deadline."""
    with SplitClient(srv.address, bundle) as c:
        health = health_pb2_grpc.HealthStub(c.channel)
        status = _retrying(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=10).status)
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert _retrying(lambda: c.infer(images(1)[0], timeout=10)).logits.size == 10


class _Blocking:
    """A request iterator that yields ``first`` and then blocks until released."""

    def __init__(self, first):
        self.first = list(first)
        self.release = threading.Event()

    def __iter__(self):
        yield from self.first
        self.release.wait(60)


def test_cancelled_and_expired_streams_do_not_leak_workers(server, bundle) -> None:
    with SplitClient(server.address, bundle) as c:
        req, _ = c.co_inference_request(images(1)[0])
        iters = []
        for i in range(4 * WORKERS):
            it = _Blocking([req])
            iters.append(it)
            if i % 2:   # cancelled by the client after its first answer
                call = c.stub.InferStream(iter(it), timeout=30)
                try:
                    next(call)
                except grpc.RpcError as err:    # refused at the stream limit: fine too
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                call.cancel()
            else:       # ends at its deadline with the request side still open
                call = c.stub.InferStream(iter(it), timeout=0.3)
                with pytest.raises(grpc.RpcError) as err:
                    list(call)
                assert err.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
        for it in iters:
            it.release.set()
    _healthy_and_serving(server, bundle)


def test_idle_streams_neither_block_calls_nor_live_forever(server, bundle) -> None:
    with SplitClient(server.address, bundle) as c:
        idle = [_Blocking([]) for _ in range(2 * WORKERS)]
        calls = [c.stub.InferStream(iter(it)) for it in idle]   # no deadline, no request, never closed
        try:
            _healthy_and_serving(server, bundle)
            codes = []
            for call in calls:   # every idle stream ends: refused at the limit or cut when idle
                with pytest.raises(grpc.RpcError) as err:
                    list(call)
                codes.append(err.value.code())
            # refused beyond the stream limit; the admitted ones cancelled by the server once idle
            assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
        finally:
            for it in idle:
                it.release.set()
    _healthy_and_serving(server, bundle)


def test_never_read_streams_are_cut(server, bundle) -> None:
    with SplitClient(server.address, bundle) as c:
        bad = pb.InferRequest(request_id="r" * 100)     # answered at once with an error item, never read
        bad.model.model_id = "nope"
        its = [_Blocking([bad] * 3000) for _ in range(2 * WORKERS)]
        calls = [c.stub.InferStream(iter(it)) for it in its]
        _healthy_and_serving(server, bundle)
        for call in calls:
            with pytest.raises(grpc.RpcError):
                for _ in call:      # read only now: the server gave up on the stream long before
                    time.sleep(0.001)
    _healthy_and_serving(server, bundle)


def test_calls_without_a_deadline(server, bundle) -> None:
    with SplitClient(server.address, bundle) as c:
        req, _ = c.co_inference_request(images(1)[0])
        assert len(c.stub.Infer(req).logits) == 10                      # no gRPC deadline, no request deadline
        out = list(c.stub.InferStream(iter([req, req])))
        assert [len(r.logits) for r in out] == [10, 10] and not out[0].HasField("error")
        assert c.stub.ListModels(pb.ListModelsRequest()).endpoints


@pytest.mark.parametrize("seconds,nanos", [(2 ** 62, 0), (-2 ** 62, 0), (int(time.time()) + 60, -5),
                                           (int(time.time()) + 60, 2_000_000_000), (253402300800, 0)])
def test_invalid_request_timestamp_is_invalid_argument(server, bundle, seconds, nanos) -> None:
    with SplitClient(server.address, bundle) as c:
        req, _ = c.co_inference_request(images(1)[0])
        req.deadline.CopyFrom(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
        with pytest.raises(grpc.RpcError) as err:
            c.stub.Infer(req, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "deadline" in err.value.details()


def test_error_messages_do_not_copy_unbounded_input(server, bundle) -> None:
    with SplitClient(server.address, bundle) as c:
        good, _ = c.co_inference_request(images(1)[0])
        huge_id = pb.InferRequest()
        huge_id.CopyFrom(good)
        huge_id.model.model_id = "m" * 200_000
        huge_shape = pb.InferRequest()
        huge_shape.CopyFrom(good)
        del huge_shape.latent_shape.dims[:]
        huge_shape.latent_shape.dims.extend(range(1, 100_001))
        huge_codec = pb.InferRequest()
        huge_codec.CopyFrom(good)
        huge_codec.codec.codec_id = "c" * 100_000
        for req, field in ((huge_id, "model.model_id"), (huge_shape, "latent_shape"), (huge_codec, "codec.codec_id")):
            with pytest.raises(grpc.RpcError) as err:
                c.stub.Infer(req, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(field) and len(err.value.details()) <= 1024
        out = list(c.stub.InferStream(iter([huge_shape]), timeout=10))
        assert out[0].error.field == "latent_shape" and len(out[0].error.message) <= 1024


def test_corrupted_bitstream_is_invalid_argument_not_a_wrong_class(server, bundle) -> None:
    with SplitClient(server.address, bundle) as c:
        good, _ = c.co_inference_request(images(1)[0])
        assert good.HasField("bitstream_crc32")
        hits = 0
        for pos in range(2, len(good.bitstream)):       # every body byte flipped, length unchanged
            bad = pb.InferRequest()
            bad.CopyFrom(good)
            blob = bytearray(bad.bitstream)
            blob[pos] ^= 0x5A
            bad.bitstream = bytes(blob)
            with pytest.raises(grpc.RpcError) as err:
                c.stub.Infer(bad, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("bitstream")
            hits += 1
        assert hits > 0
        missing = pb.InferRequest()
        missing.CopyFrom(good)
        missing.ClearField("bitstream_crc32")
        with pytest.raises(grpc.RpcError) as err:
            c.stub.Infer(missing, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("bitstream_crc32")


# --- image decompression bombs ------------------------------------------------------------


def _png_bomb(side: int) -> bytes:
    """A valid all-black 8-bit grey PNG of side x side pixels, compressed row by row."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _webp_claiming(side: int) -> bytes:
    """A small lossless WebP whose VP8L header claims side x side pixels."""
    data = bytearray(ImageCodec("image/webp").encode(images(1)[0]))
    at = data.index(b"VP8L") + 8
    assert data[at] == 0x2F
    bits = (side - 1) | ((side - 1) << 14) | (struct.unpack("<I", bytes(data[at + 1:at + 5]))[0] & ~((1 << 28) - 1))
    data[at + 1:at + 5] = struct.pack("<I", bits)
    return bytes(data)


def test_png_bomb_is_refused_from_its_header_without_decoding(tmp_path) -> None:
    bomb = _png_bomb(8000)                 # 64 M pixels, ~62 kB
    assert len(bomb) < 256 * 1024
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    script = (
        "import sys\n"
        "from edgepilot.edge_agent.split.codec import ImageCodec, CodecError\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "def hwm():\n"
        "    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
        "before = hwm()\n"
        "try:\n"
        "    ImageCodec('image/png').decode(data, (1, 28, 28)); print('DECODED')\n"
        "except CodecError as e:\n"
        "    print('REFUSED', e.field, e)\n"
        "print('GROWTH_KB', hwm() - before)\n")   # VmHWM: peak RSS of this process
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    assert "REFUSED latent_shape" in out, out
    growth_kb = int(out.split("GROWTH_KB")[1])
    assert growth_kb < 16 * 1024, out     # decoding it would cost >= 64 MB


def test_image_endpoint_checks_dimensions_before_decoding(server, bundle) -> None:
    with SplitClient(server.address, bundle) as c:
        for codec_id, data in (("image/webp", _webp_claiming(9000)), ("image/png", _png_bomb(3000))):
            req, _ = c.edge_only_request(images(1)[0], codec_id)
            req.bitstream = data
            req.bitstream_crc32 = zlib.crc32(data) & 0xFFFFFFFF
            with pytest.raises(grpc.RpcError) as err:
                c.stub.Infer(req, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith("latent_shape") and "9000x9000" in err.value.details() \
                if codec_id == "image/webp" else "3000x3000" in err.value.details()
        assert c.infer_edge_only(images(1)[0], "image/webp").logits.size == 10


# --- metrics and health -------------------------------------------------------------------


def _counter(server, name: str, **labels) -> float:
    value = server.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_metrics_count_failures_outside_the_handlers(bundle) -> None:
    srv = _server(bundle, max_message_bytes=64 * 1024)
    try:
        with SplitClient(srv.address, bundle) as c:
            raw = c.channel.unary_unary("/edgepilot.v1.SplitInference/Infer",
                                        request_serializer=lambda b: b, response_deserializer=lambda b: b)
            with pytest.raises(grpc.RpcError):
                raw(b"\xff\xff\xff\xff not a protobuf", timeout=10)
            req, _ = c.co_inference_request(images(1)[0])
            req.bitstream = b"\x01" * (128 * 1024)        # beyond the transport limit
            with pytest.raises(grpc.RpcError):
                c.stub.Infer(req, timeout=10)
            it = _Blocking([])
            call = c.stub.InferStream(iter(it), timeout=0.3)
            with pytest.raises(grpc.RpcError):
                list(call)
            it.release.set()
            method = "/edgepilot.v1.SplitInference/Infer"
            assert _counter(srv, "edgepilot_rpc_failures_total", method=method, kind="deserialize") == 1
            deadline = time.monotonic() + 10
            while _counter(srv, "edgepilot_rpc_failures_total", method="/edgepilot.v1.SplitInference/InferStream",
                           kind="stream") < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _counter(srv, "edgepilot_rpc_failures_total", method="/edgepilot.v1.SplitInference/InferStream",
                            kind="stream") >= 1
            started = _counter(srv, "edgepilot_rpcs_started_total", method=method)
            handled = sum(_counter(srv, "edgepilot_rpcs_handled_total", method=method, code=code.name)
                          for code in grpc.StatusCode)
            # the oversized one never reached a handler (gRPC core may drop it before or after
            # the call surfaced: it is then counted as unhandled, or not started at all)
            assert handled == 1 and started in (1, 2)
            assert _counter(srv, "edgepilot_rpcs_unhandled", method=method) == started - handled
    finally:
        srv.stop(1.0)


def test_health_reports_not_serving_when_wedged(bundle) -> None:
    srv = build_split_server([bundle], ServerConfig(port=0, max_workers=WORKERS, wedge_seconds=0.5),
                             BatchingConfig(max_batch=1))
    service = srv.services[0]
    hold = threading.Event()
    ep = next(e for e in service.endpoints.values() if e.split_point == bundle.split_point)
    run = ep.batcher.run_batch

    def stuck(x):
        hold.wait(30)
        return run(x)

    ep.batcher.run_batch = stuck
    srv.start()
    try:
        with SplitClient(srv.address, bundle) as c:
            health = health_pb2_grpc.HealthStub(c.channel)
            req, _ = c.co_inference_request(images(1)[0])
            fut = c.stub.Infer.future(req, timeout=20)
            status = health_pb2.HealthCheckResponse.SERVING
            deadline = time.monotonic() + 10
            while status == health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
                time.sleep(0.1)
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            hold.set()
            assert len(fut.result().logits) == 10
            while status != health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline + 10:
                time.sleep(0.1)
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        hold.set()
        srv.stop(1.0)


# --- SIGTERM ------------------------------------------------------------------------------


def test_sigterm_drains_and_exits_within_its_grace_with_streams_open(tmp_path, bundle) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-c", "from edgepilot.cli import main; main()", "serve", "--port", "0", "--max-workers",
                             str(WORKERS), "--grace-seconds", "2", "--ready-file", str(ready)],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    iters = []
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        port = json.loads(ready.read_text())["port"]
        with SplitClient(f"127.0.0.1:{port}", bundle) as c:
            req, _ = c.co_inference_request(images(1)[0])
            calls = []
            for _ in range(3 * WORKERS):
                it = _Blocking([req])
                iters.append(it)
                calls.append(c.stub.InferStream(iter(it)))
            for call in calls[::2]:
                call.cancel()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)    # grace 2 s; a hung server would never exit
        assert rc == 0, proc.stdout.read().decode()[-2000:]
    finally:
        for it in iters:
            it.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
