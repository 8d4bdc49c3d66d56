"""The on-device policy runtime: a verified bundle in, ``decide(local_states)`` out.

No torch. :meth:`PolicyRuntime.from_bundle` verifies the bundle (signature, trusted
key, file hashes, entry names), picks the artifact for the local hardware profile and
opens it:

* a TensorRT engine (``tensorrt-plan`` artifact, or an engine built on the device
  with the bundle's ``trtexec`` command and passed as ``engine=``) where ``import
  tensorrt`` works and the engine's TensorRT major.minor matches;
* otherwise the ONNX model of the best precision the local profile supports, on
  onnxruntime with the profile's execution providers that this onnxruntime has
  (TensorRT EP, CUDA EP, CPU EP), one intra-op thread by default.

Per call: the input is checked (shape, finite, non-negative; the error names the row,
the field and the value), copied into a preallocated buffer, and run through an
onnxruntime IO binding with preallocated outputs (no per-call allocation for a batch
size seen before). :meth:`infer` returns the raw heads, :meth:`decide` the decision
of :func:`edgepilot.edge_agent.actions.decode_actions`.

One UE's decision (DTAC, a float32 (1, 6) or (6,) state, CPU provider) has its own
path, bound once (:class:`_BoundOne`): the check is a Python ``sum`` / ``min`` over
the six values (a NaN, inf or negative value drops to the general path, which names
it), the four outputs land in one packed buffer that is read with one ``tolist`` and
decoded by :func:`edgepilot.edge_agent.actions.decode_action_values` (the same decision as
``decode_actions``, which still decodes a NaN output).

A model may have the four heads as outputs or the one packed output
:data:`edgepilot.edge_agent.actions.PACKED_OUTPUT` (the FP32 artifact of onnxruntime-only
profiles: the logits in the same layout, 6 fewer kernels); :meth:`infer` gives the
four heads either way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgepilot.edge_agent.actions import (ACTOR_OUTPUTS, DTAC_INPUT, PACKED_OUTPUT, TAC_INPUTS, decode_action_values, decode_actions,
                                head_values_from_logits, heads_from_logits)
from edgepilot.edge_agent.bundle import BundleError, Manifest, open_bundle, verify_installed
from edgepilot.edge_agent.system_model import LOCAL_STATE_DIM, LOCAL_STATE_FIELDS

#: onnxruntime-only quantization: TensorRT cannot take these models
_ORT_ONLY = {"int8_dynamic"}
_CACHE_LIMIT = 8  # batch shapes whose IO bindings are kept
_F32 = np.dtype(np.float32)
_ONE_ROW, _ONE_VEC = (1, LOCAL_STATE_DIM), (LOCAL_STATE_DIM,)
_I64_1, _F64_1 = np.zeros(1, np.int64), np.zeros(1, np.float64)  # templates of one UE's decision arrays


class StateError(ValueError):
    """A local state the policy must not be fed; the message names the problem."""


def _local_profile(profile):
    """A profile object (anything with ``name``, ``precisions``, ``execution_providers``,
    ``intra_op_threads``), a profile name, or None (detect)."""
    if profile is not None and not isinstance(profile, str):
        return profile
    from edgepilot.hardware.profiles import detect_local_profile, load_profile  # stdlib + yaml only

    return load_profile(profile or detect_local_profile())


def choose_artifact(manifest: Manifest, profile, providers: Sequence[str], precision: str | None = None,
                    tensorrt_version: str | None = None) -> dict:
    """The artifact to run here: an explicit ``precision``, else the local profile's
    preferred precision, then its other precisions in order, then fp32. TensorRT plans
    only where TensorRT imports with a matching version."""
    arts = manifest.artifacts
    if precision is not None:
        order = [precision]
    else:
        order = [profile.preferred_precision] + [p for p in profile.precisions if p != profile.preferred_precision] + ["fp32"]
    gpu = any(p in providers for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
    if tensorrt_version is not None:
        want = ".".join(tensorrt_version.split(".")[:2])
        for prec in order:
            for art in arts:
                if art["format"] == "tensorrt-plan" and art["precision"] == prec and ".".join(
                    str(art.get("tensorrt_version", "")).split(".")[:2]
                ) == want:
                    return art
    for prec in order:
        if prec == "fp16" and not gpu and precision is None:
            continue  # FP16 on a CPU provider is emulated and slower than FP32
        for art in arts:
            if art["format"] == "onnx" and art["precision"] == prec:
                return art
    available = sorted({f"{a['format']}:{a['precision']}" for a in arts})
    raise BundleError(
        f"bundle has no artifact this device can run for precision(s) {order} (it holds {', '.join(available)})"
    )


class PolicyRuntime:
    """Runs one actor from a verified bundle. Use :meth:`from_bundle`."""

    def __init__(self, manifest: Manifest, artifact: dict, model_bytes: bytes, profile, providers: Sequence[str] | None = None,
                 intra_op_threads: int | None = None) -> None:
        self.manifest, self.artifact, self.profile = manifest, artifact, profile
        self.kind = manifest.kind
        if self.kind not in ("dtac", "tac"):
            raise BundleError(f"bundle model kind {self.kind!r} is not an actor this runtime runs (dtac, tac)")
        self.input_names = [DTAC_INPUT] if self.kind == "dtac" else list(TAC_INPUTS)
        self.num_channels = int(manifest.data["model"].get("num_channels", 0)) or None
        if artifact["format"] == "tensorrt-plan":
            self._backend = _TensorRTBackend(model_bytes, self.input_names)
            self.backend, self.providers = "tensorrt", ["tensorrt"]
        else:
            self._backend = _OrtBackend(model_bytes, self.input_names, profile, providers, intra_op_threads)
            self.backend, self.providers = "onnxruntime", self._backend.providers
        # one UE's decision (DTAC, batch 1, CPU provider): bound once, see _BoundOne
        self._one = self._backend.bind_one() if self.backend == "onnxruntime" else None

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_bundle(cls, path: str | os.PathLike, trusted_keys, profile=None, precision: str | None = None,
                    providers: Sequence[str] | None = None, intra_op_threads: int | None = None,
                    engine: str | os.PathLike | None = None) -> "PolicyRuntime":
        """Verify ``path`` against ``trusted_keys`` and open the artifact for this device.

        ``path`` may be a bundle file or an installed version directory (see
        :func:`edgepilot.edge_agent.bundle.install_bundle`); both are verified in full.
        ``engine`` is a TensorRT engine built on this device from the bundle's
        ``trtexec`` command; it is used only where TensorRT imports."""
        p = Path(path)
        bundle = verify_installed(p, trusted_keys) if p.is_dir() else open_bundle(p, trusted_keys)
        profile = _local_profile(profile)
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = list(providers) if providers is not None else [x for x in profile.execution_providers if x in available]
        trt_version = _tensorrt_version()
        if engine is not None and trt_version is not None:
            art = {"format": "tensorrt-plan", "path": str(engine), "precision": precision or "local-engine"}
            return cls(bundle.manifest, art, Path(engine).read_bytes(), profile, wanted, intra_op_threads)
        art = choose_artifact(bundle.manifest, profile, wanted, precision, trt_version)
        return cls(bundle.manifest, art, bundle.files[art["path"]], profile, wanted, intra_op_threads)

    # ------------------------------------------------------------------ calls

    def _check(self, states, edge_id):
        if (self.kind == "dtac" and edge_id is None and type(states) is np.ndarray and states.dtype == np.float32
                and states.ndim == 2 and states.shape[1] == LOCAL_STATE_DIM and states.shape[0]
                and np.isfinite(np.add.reduce(states, None)) and np.minimum.reduce(states, None) >= 0):
            return [states], False  # the hot path: a float32 (batch, 6) array with nothing to report
        try:
            with np.errstate(over="ignore"):  # a value beyond float32 becomes inf and is refused below
                x = np.asarray(states, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise StateError(f"local_states must be numeric, got {type(states).__name__}: {err}") from None
        if self.kind == "dtac":
            if x.ndim == 1:
                x = x[None, :]
            if x.ndim != 2 or x.shape[1] != LOCAL_STATE_DIM:
                raise StateError(f"local_states must have shape (batch, {LOCAL_STATE_DIM}) or ({LOCAL_STATE_DIM},), got {np.shape(states)}")
        else:
            if x.ndim == 2:
                x = x[None]
            if x.ndim != 3 or x.shape[2] != LOCAL_STATE_DIM:
                raise StateError(f"joint state must have shape (rounds, N, {LOCAL_STATE_DIM}) or (N, {LOCAL_STATE_DIM}), got {np.shape(states)}")
        if x.shape[0] == 0 or (x.ndim == 3 and x.shape[1] == 0):
            raise StateError(f"local_states is empty (shape {np.shape(states)})")
        # fast path: one reduction each; a non-finite sum (NaN / inf, or a float32
        # overflow of huge finite values) or a negative minimum takes the slow path
        if np.isfinite(x.sum()) and x.min() >= 0:
            pass
        elif not np.isfinite(x).all():
            idx = np.argwhere(~np.isfinite(x))[0]
            value = x[tuple(idx)]
            what = "NaN" if np.isnan(value) else str(float(value))
            raise StateError(f"local_states{[int(i) for i in idx]} ({LOCAL_STATE_FIELDS[idx[-1]]}) is {what}; local states must be finite")
        elif x.min() < 0:
            idx = np.argwhere(x < 0)[0]
            raise StateError(
                f"local_states{[int(i) for i in idx]} ({LOCAL_STATE_FIELDS[idx[-1]]}) is negative ({float(x[tuple(idx)])}); local states are non-negative SI values"
            )
        feeds = [x]
        if self.kind == "tac":
            if edge_id is None:
                raise StateError("a TAC actor needs edge_id (rounds, N) with each UE's edge-server index")
            e = np.asarray(edge_id)
            if e.ndim == 1:
                e = e[None]
            if e.shape != x.shape[:2]:
                raise StateError(f"edge_id must have shape {x.shape[:2]} like the joint state, got {np.shape(edge_id)}")
            if not np.issubdtype(e.dtype, np.integer) or e.min() < 0:
                raise StateError("edge_id must hold non-negative integer edge-server indices")
            feeds.append(e.astype(np.int64, copy=False))
        elif edge_id is not None:
            raise StateError("a DTAC actor takes local states only (no edge_id)")
        return feeds, np.ndim(states) == (1 if self.kind == "dtac" else 2)

    def _run_one(self, local_states, edge_id):
        """The batch-1 fast path: run one float32 (6,) / (1, 6) state that is finite and
        non-negative through the bound call and return the bound call, else None (the
        caller then takes the general path, which also names what is wrong)."""
        one = self._one
        if one is None or edge_id is not None or type(local_states) is not np.ndarray or local_states.dtype is not _F32:
            return None
        shape = local_states.shape
        if shape == _ONE_ROW:
            values = local_states.tolist()[0]
        elif shape == _ONE_VEC:
            values = local_states.tolist()
        else:
            return None
        total = sum(values)  # Python floats: NaN / inf make the sum NaN / inf (no float32 overflow)
        if total - total != 0.0 or min(values) < 0.0:
            return None
        one.input[...] = local_states
        one.run(one.binding, one.options)
        return one

    def infer(self, local_states, edge_id=None) -> tuple[np.ndarray, ...]:
        """Raw heads (offload_probs, channel_probs, transmit_power_ratio, cpu_freq_ratio)."""
        one = self._run_one(local_states, edge_id)
        if one is not None:
            k = 3 + one.num_channels
            if one.logits:  # the packed output: the heads from its logits
                values = one.packed.tolist()
                total = sum(values)
                out = (np.array(head_values_from_logits(values, one.num_channels), np.float32) if total - total == 0.0
                       else np.concatenate([h.reshape(-1) for h in heads_from_logits(one.row)]))
            else:
                out = one.packed.copy()
            if local_states.ndim == 2:
                out = out[None]
                return out[:, :3], out[:, 3:k], out[:, k], out[:, k + 1]
            return out[:3], out[3:k], out[k], out[k + 1]
        feeds, squeeze = self._check(local_states, edge_id)
        outs = self._backend.run(feeds)
        return tuple(o[0].copy() for o in outs) if squeeze else tuple(o.copy() for o in outs)

    def decide(self, local_states, edge_id=None) -> dict[str, np.ndarray]:
        """The decision (offload, channel, transmit_power_ratio, cpu_freq_ratio) per UE;
        a single (6,) state gives scalars' 0-d arrays."""
        one = self._run_one(local_states, edge_id)
        if one is None:
            feeds, squeeze = self._check(local_states, edge_id)
            outs = self._backend.run(feeds)  # decode_actions makes new arrays: no copy needed
        else:
            d = decode_action_values(one.packed.tolist(), one.num_channels, one.logits)
            if d is not None:
                if local_states.ndim == 1:
                    return {"offload": np.int64(d[0]), "channel": np.int64(d[1]),
                            "transmit_power_ratio": np.float64(d[2]), "cpu_freq_ratio": np.float64(d[3])}
                # copies of preallocated (1,) arrays: cheaper than np.array([...])
                offload, channel, power, cpu = _I64_1.copy(), _I64_1.copy(), _F64_1.copy(), _F64_1.copy()
                offload[0], channel[0], power[0], cpu[0] = d
                return {"offload": offload, "channel": channel, "transmit_power_ratio": power, "cpu_freq_ratio": cpu}
            # a NaN / inf in the actor's output: decode_actions below defines what that gives
            outs, squeeze = one.heads(), local_states.ndim == 1
        return decode_actions(*(o[0] for o in outs)) if squeeze else decode_actions(*outs)

    def describe(self) -> dict:
        return {
            "model": self.manifest.data["model"],
            "target": self.manifest.target.get("name"),
            "local_profile": getattr(self.profile, "name", None),
            "artifact": {k: self.artifact.get(k) for k in ("path", "format", "precision")},
            "backend": self.backend,
            "providers": list(self.providers),
            "signed_by": self.manifest.key_id,
        }


def _tensorrt_version() -> str | None:
    try:
        import tensorrt
    except ImportError:
        return None
    return str(getattr(tensorrt, "__version__", ""))


class _OrtBackend:
    def __init__(self, model_bytes: bytes, input_names: list[str], profile, providers, intra_op_threads) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_threads or getattr(profile, "intra_op_threads", 1) or 1)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if so.intra_op_num_threads == 1:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if input_names == [DTAC_INPUT]:
            # DTAC's intermediates are a few hundred bytes a row (no attention matrix):
            # planning their reuse costs more per call (~1 us of ~16 at batch 1) than it
            # saves. TAC keeps it: its (rounds, heads, N, N) scores can be large.
            so.enable_mem_reuse = False
        providers = list(providers) or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(model_bytes, so, providers=providers)
        self.providers = self.session.get_providers()
        got = [i.name for i in self.session.get_inputs()]
        if got != input_names:
            raise BundleError(f"model inputs are {got}, the manifest's model kind needs {input_names}")
        outs = [o.name for o in self.session.get_outputs()]
        if outs not in (list(ACTOR_OUTPUTS), [PACKED_OUTPUT]):
            raise BundleError(f"model outputs are {outs}, expected {list(ACTOR_OUTPUTS)} or [{PACKED_OUTPUT!r}]")
        self.packed_output = outs == [PACKED_OUTPUT]  # one (batch, 3 + L + 2) logits output, see edgepilot.edge_agent.actions
        self.input_names = input_names
        self._cpu_only = self.providers == ["CPUExecutionProvider"]
        self._bindings: dict[tuple, tuple] = {}
        self._ort = ort
        self._run_options = ort.RunOptions()
        # the C session runs a bound call without the Python wrapper's per-call checks
        self._c_session = getattr(self.session, "_sess", None)

    def _binding(self, shapes: tuple):
        entry = self._bindings.get(shapes)
        if entry is not None:
            return entry
        if len(self._bindings) >= _CACHE_LIMIT:
            self._bindings.pop(next(iter(self._bindings)))
        ins = [np.empty(s, dtype=np.float32 if i == 0 else np.int64) for i, s in enumerate(shapes)]
        io = self.session.io_binding()
        for name, arr in zip(self.input_names, ins):
            io.bind_input(name, "cpu", 0, arr.dtype, list(arr.shape), arr.ctypes.data)
        # the output shapes (L, or the packed width) are read from a first run
        probe = self.session.run(None, {n: np.zeros(s, a.dtype) for n, s, a in zip(self.input_names, shapes, ins)})
        outs = [np.empty(o.shape, np.float32) for o in probe]
        for name, arr in zip([PACKED_OUTPUT] if self.packed_output else ACTOR_OUTPUTS, outs):
            io.bind_output(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
        entry = (io, ins, outs)
        self._bindings[shapes] = entry
        return entry

    def bind_one(self) -> "_BoundOne | None":
        """The batch-1 DTAC call bound once (CPU provider only, else None)."""
        if not self._cpu_only or self.input_names != [DTAC_INPUT]:
            return None
        probe = self.session.run(None, {DTAC_INPUT: np.zeros(_ONE_ROW, np.float32)})
        shapes = [tuple(o.shape) for o in probe]
        if self.packed_output:
            return _BoundOne(self, shapes[0][-1] - 5, packed=True) if shapes == [(1, shapes[0][-1])] and shapes[0][-1] > 5 else None
        if shapes != [(1, 3), (1, probe[1].shape[-1]), (1,), (1,)]:
            return None
        return _BoundOne(self, int(probe[1].shape[-1]))

    def run(self, feeds: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """The four heads; they may be the preallocated buffers: callers copy what they keep."""
        if not self._cpu_only:
            outs = self.session.run(None, dict(zip(self.input_names, feeds)))
            return heads_from_logits(outs[0]) if self.packed_output else tuple(outs)
        io, ins, outs = self._binding(tuple([f.shape for f in feeds]))
        for buf, f in zip(ins, feeds):
            np.copyto(buf, f)
        if self._c_session is not None:
            self._c_session.run_with_iobinding(io._iobinding, self._run_options)
        else:  # pragma: no cover - onnxruntime without the private handle
            self.session.run_with_iobinding(io, self._run_options)
        return heads_from_logits(outs[0]) if self.packed_output else outs


class _BoundOne:
    """One UE's decision at batch 1 on the CPU provider, bound once: a (1, 6) input
    buffer and the four outputs bound to consecutive slices of one float32 buffer laid
    out ``p_x (3), p_l (L), a, b`` (or a model's packed output, the same layout of
    logits, bound to the whole buffer: ``logits``), so a call is a copy in, the C
    session's ``run_with_iobinding`` and one ``tolist`` out (no per-call OrtValue,
    dict or array from onnxruntime's Python layer)."""

    __slots__ = ("input", "row", "packed", "outputs", "num_channels", "logits", "binding", "run", "options", "_io")

    def __init__(self, backend: "_OrtBackend", num_channels: int, packed: bool = False) -> None:
        self.num_channels = k = num_channels
        self.logits = packed
        self.input = np.zeros(_ONE_ROW, np.float32)
        self.row = row = np.zeros((1, 5 + k), np.float32)
        self.packed = row[0]
        # the four heads' views, (1, 3), (1, L), (1,), (1,); a packed output is decoded by heads()
        self.outputs = None if packed else (row[:, :3], row[:, 3 : 3 + k], row[:, 3 + k], row[:, 4 + k])
        io = backend.session.io_binding()
        io.bind_input(DTAC_INPUT, "cpu", 0, np.float32, list(_ONE_ROW), self.input.ctypes.data)
        for name, view in ([(PACKED_OUTPUT, row)] if packed else zip(ACTOR_OUTPUTS, self.outputs)):
            io.bind_output(name, "cpu", 0, np.float32, list(view.shape), view.ctypes.data)
        self._io = io  # keeps the binding (and through it the session) alive
        self.options = backend._run_options
        if backend._c_session is not None:
            self.run, self.binding = backend._c_session.run_with_iobinding, io._iobinding
        else:  # pragma: no cover - onnxruntime without the private handle
            self.run, self.binding = backend.session.run_with_iobinding, io

    def heads(self) -> tuple[np.ndarray, ...]:
        """The four heads of the last call, (1, 3), (1, L), (1,), (1,)."""
        return heads_from_logits(self.row) if self.logits else self.outputs


class _TensorRTBackend:
    """TensorRT 8.x / 10.x engine with cuda-python buffers. Not exercised here: no
    TensorRT can be installed on the machines this project was built on (see
    docs/export-and-runtime.md)."""

    def __init__(self, engine_bytes: bytes, input_names: list[str]) -> None:  # pragma: no cover
        import tensorrt as trt

        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart
        self.trt, self.cudart = trt, cudart
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise BundleError("TensorRT could not deserialize the engine (built for another TensorRT or GPU?)")
        self.context = self.engine.create_execution_context()
        self.input_names = input_names
        self._stream = cudart.cudaStreamCreate()[1]

    def _check(self, err) -> None:  # pragma: no cover
        if int(err[0] if isinstance(err, tuple) else err) != 0:
            raise RuntimeError(f"CUDA error {err}")

    def run(self, feeds):  # pragma: no cover
        cudart = self.cudart
        kind = cudart.cudaMemcpyKind
        ptrs, host_out = [], []
        for name, arr in zip(self.input_names, feeds):
            arr = np.ascontiguousarray(arr.astype(np.int32) if arr.dtype == np.int64 else arr)
            self.context.set_input_shape(name, arr.shape)
            err, dev = cudart.cudaMalloc(arr.nbytes)
            self._check(err)
            self._check(cudart.cudaMemcpyAsync(dev, arr.ctypes.data, arr.nbytes, kind.cudaMemcpyHostToDevice, self._stream))
            self.context.set_tensor_address(name, dev)
            ptrs.append(dev)
        for name in ACTOR_OUTPUTS:
            shape = tuple(self.context.get_tensor_shape(name))
            out = np.empty(shape, np.float32)
            err, dev = cudart.cudaMalloc(max(out.nbytes, 1))
            self._check(err)
            self.context.set_tensor_address(name, dev)
            ptrs.append(dev)
            host_out.append((out, dev))
        if not self.context.execute_async_v3(self._stream):
            raise RuntimeError("TensorRT execution failed")
        for out, dev in host_out:
            self._check(cudart.cudaMemcpyAsync(out.ctypes.data, dev, out.nbytes, kind.cudaMemcpyDeviceToHost, self._stream))
        self._check(cudart.cudaStreamSynchronize(self._stream))
        for dev in ptrs:
            cudart.cudaFree(dev)
        return tuple(o for o, _ in host_out)
