"""ONNX Runtime sessions for the head (device), tail (edge server) and full model.

Providers: TensorRT, then CUDA, then CPU, whichever this onnxruntime build offers
(``EDGEPILOT_ORT_PROVIDERS=CPUExecutionProvider`` forces a list)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers() -> list[str]:
    forced = os.environ.get("EDGEPILOT_ORT_PROVIDERS")
    if forced:
        return [p.strip() for p in forced.split(",") if p.strip()]
    available = set(ort.get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]


class OnnxModel:
    """One ONNX graph with a single input and a single output, batch axis first."""

    def __init__(self, path: str | Path, providers: list[str] | None = None, intra_op_threads: int = 1):
        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers or choose_providers())
        self.input = self.session.get_inputs()[0]
        self.output = self.session.get_outputs()[0]
        self._lock = threading.Lock()  # InferenceSession.run is thread-safe, but keep per-model runs serial for stable timings

    @property
    def input_shape(self) -> tuple:
        return tuple(self.input.shape[1:])

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            return self.session.run([self.output.name], {self.input.name: x})[0]
