"""A split-inference bundle: what ``edgepilot.export.split_model`` writes and the device / edge
server load.

``manifest.json``::

    {"format": "edgepilot-split-bundle", "format_version": 1,
     "model_id": "fmnist-cnn", "version": "1", "split_point": 2,
     "input_shape": [1, 28, 28], "latent_shape": [8, 7, 7], "num_classes": 10,
     "classes": [...], "codec": {"codec_id": "ep-factorized-range", "version": "1"},
     "files": {"head": {"path": "head.onnx", "sha256": "..."}, "tail": ..., "full": ...,
               "codec_tables": {"path": "codec_tables.json", "sha256": "..."}},
     "training": {...}}

``head`` maps the image to the float latent, ``tail`` maps the (integer-valued) latent
to logits, ``full`` is the unsplit full-precision model (edge-only and client-only).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepilot.edge_agent.split.codec import FactorizedCodec, quantize_latent
from edgepilot.edge_agent.split.runtime import OnnxModel

BUNDLE_FORMAT = "edgepilot-split-bundle"
BUNDLE_FORMAT_VERSION = 1
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "assets" / "fmnist-cnn"


class BundleError(ValueError):
    pass


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class SplitBundle:
    root: Path
    manifest: dict
    codec: FactorizedCodec
    providers: list[str] | None = None
    _models: dict = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | Path = DEFAULT_BUNDLE, providers: list[str] | None = None, verify: bool = True) -> "SplitBundle":
        root = Path(root)
        mpath = root / "manifest.json"
        if not mpath.is_file():
            raise BundleError(f"{root}: no manifest.json (not a split bundle)")
        manifest = json.loads(mpath.read_text())
        if manifest.get("format") != BUNDLE_FORMAT or manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
            raise BundleError(f"{mpath}: format must be {BUNDLE_FORMAT} v{BUNDLE_FORMAT_VERSION}")
        for key in ("model_id", "version", "split_point", "input_shape", "latent_shape", "codec", "files"):
            if key not in manifest:
                raise BundleError(f"{mpath}: missing field {key!r}")
        if verify:
            for name, entry in manifest["files"].items():
                p = root / entry["path"]
                if not p.is_file():
                    raise BundleError(f"{root}: file {entry['path']!r} ({name}) is missing")
                if sha256_file(p) != entry["sha256"]:
                    raise BundleError(f"{root}: {entry['path']!r} ({name}) does not match its sha256 in the manifest")
        codec = FactorizedCodec.load(root / manifest["files"]["codec_tables"]["path"])
        if [codec.codec_id, codec.version] != [manifest["codec"]["codec_id"], manifest["codec"]["version"]]:
            raise BundleError(f"{mpath}: codec in manifest does not match the tables file")
        return cls(root, manifest, codec, providers)

    # --- identity ------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def split_point(self) -> int:
        return int(self.manifest["split_point"])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["latent_shape"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["input_shape"])

    # --- models ------------------------------------------------------------------------------
    def model(self, name: str) -> OnnxModel:
        if name not in self._models:
            self._models[name] = OnnxModel(self.root / self.manifest["files"][name]["path"], self.providers)
        return self._models[name]

    def head_symbols(self, images: np.ndarray) -> np.ndarray:
        """Device side: float images (N, 1, 28, 28) -> clamped integer latents (N, C, H, W)."""
        y = self.model("head").run(images)
        return np.stack([self.codec.clamp(s) for s in quantize_latent(y)])

    def tail_logits(self, symbols: np.ndarray) -> np.ndarray:
        return self.model("tail").run(np.asarray(symbols, dtype=np.float32))

    def full_logits(self, images: np.ndarray) -> np.ndarray:
        return self.model("full").run(images)
