"""The committed protobuf / gRPC stubs are exactly what `make protos` generates."""

from __future__ import annotations

from pathlib import Path

import importlib.util

_spec = importlib.util.spec_from_file_location("protos", Path(__file__).resolve().parents[1] / "scripts" / "protos.py")
protos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(protos)


def test_committed_stubs_match_regeneration(tmp_path: Path) -> None:
    generated = protos.generate(tmp_path)
    assert generated, "protoc generated nothing"
    committed = protos.committed_stubs()
    missing = sorted(set(generated) - set(committed))
    stale = sorted(set(committed) - set(generated))
    assert not missing, f"stubs not committed (run `make protos`): {missing}"
    assert not stale, f"stubs without a .proto (run `make protos`): {stale}"
    changed = [str(rel) for rel in generated if (tmp_path / rel).read_bytes() != (protos.REPO_ROOT / rel).read_bytes()]
    assert not changed, f"committed stubs differ from regeneration (run `make protos`): {changed}"


def test_generated_imports_use_package_path() -> None:
    text = (protos.REPO_ROOT / "edgepilot/v1/split_inference_pb2.py").read_text()
    assert "from edgepilot.v1 import common_pb2" in text


def test_split_inference_service_shape() -> None:
    from edgepilot.v1 import split_inference_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["SplitInference"]
    methods = {m.name: m for m in service.methods}
    assert not methods["Infer"].client_streaming and not methods["Infer"].server_streaming
    assert methods["InferStream"].client_streaming and methods["InferStream"].server_streaming
    fields = set(pb.InferRequest.DESCRIPTOR.fields_by_name)
    assert {"request_id", "model", "split_point", "latent_shape", "codec", "bitstream", "deadline"} <= fields
    assert {"logits", "predicted_class", "timings", "request_id"} <= set(pb.InferResponse.DESCRIPTOR.fields_by_name)
    req = pb.InferRequest(request_id="r1", split_point=2, bitstream=b"\x01\x02")
    req.latent_shape.dims.extend([8, 7, 7])
    req.model.model_id = "fmnist-cnn"
    assert pb.InferRequest.FromString(req.SerializeToString()) == req
