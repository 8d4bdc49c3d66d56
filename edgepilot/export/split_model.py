"""Export a trained co-inference model to a split bundle (see ``edgepilot.edge_agent.split.bundle``):
``head.onnx`` (image -> float latent), ``tail.onnx`` (integer latent -> logits),
``full.onnx`` (the unsplit full-precision model), ``codec_tables.json`` (integer
frequency tables of the factorized prior) and ``manifest.json`` with sha256 of each.

The tables are computed on the CPU in float64 from the trained entropy bottleneck and
quantized to integers once, here; only the integers ship.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgepilot.cloud_trainer.split.data import CLASSES
from edgepilot.cloud_trainer.split.model import CoInferenceModel, SplitCNN
from edgepilot.edge_agent.split.bundle import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, sha256_file
from edgepilot.edge_agent.split.codec import FactorizedCodec

OPSET = 17


class _Head(nn.Module):
    def __init__(self, m: CoInferenceModel):
        super().__init__()
        self.m = m

    def forward(self, image):
        return self.m.encode(image)


class _Tail(nn.Module):
    def __init__(self, m: CoInferenceModel):
        super().__init__()
        self.m = m

    def forward(self, latent):
        return self.m.decode(latent)


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str) -> Path:
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return path


def _parity(module: nn.Module, path: Path, example: torch.Tensor) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = module(example).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: example.numpy()})[0]
    return float(np.max(np.abs(ref - got)))


def export_bundle(model: CoInferenceModel, base: SplitCNN, out_dir: str | Path, model_id: str = "fmnist-cnn",
                  version: str = "1", training: dict | None = None, precision_bits: int = 16,
                  tail_mass: float = 1e-6) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    base = base.cpu().eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 1, 28, 28, generator=gen)
    latent_shape = model.latent_shape()
    latents = torch.round(torch.randn(3, *latent_shape, generator=gen) * 2)

    files = {
        "head": _export(_Head(model), images, out / "head.onnx", "image", "latent"),
        "tail": _export(_Tail(model), latents, out / "tail.onnx", "latent", "logits"),
        "full": _export(base, images, out / "full.onnx", "image", "logits"),
    }
    parity = {
        "head": _parity(_Head(model), files["head"], images),
        "tail": _parity(_Tail(model), files["tail"], latents),
        "full": _parity(base, files["full"], images),
    }
    for name, err in parity.items():
        if err > 1e-3:
            raise RuntimeError(f"ONNX parity check failed for {name}: max abs error {err}")

    codec = FactorizedCodec.from_probabilities(model.entropy_bottleneck.pmf_table(tail_mass=tail_mass), precision_bits)
    files["codec_tables"] = out / "codec_tables.json"
    files["codec_tables"].write_text(json.dumps(codec.to_json()) + "\n")

    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "model_id": model_id,
        "version": str(version),
        "split_point": model.codec.split_point,
        "input_shape": [1, 28, 28],
        "latent_shape": list(latent_shape),
        "num_classes": base.config.num_classes,
        "classes": list(CLASSES),
        "codec": {"codec_id": codec.codec_id, "version": codec.version, "precision_bits": precision_bits},
        "files": {name: {"path": p.name, "sha256": sha256_file(p)} for name, p in files.items()},
        "onnx_parity_max_abs_error": parity,
        "training": training or {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out
