"""Precision variants of an exported FP32 actor: FP16, INT8 dynamic, INT8 static (QDQ).

* FP16: ``onnxruntime.transformers.float16`` with the inputs and outputs kept FP32 and
  the state normalisation (everything before the first Gemm: clamp, +floor, log,
  standardise) kept FP32. The raw local state spans ~15 decades (received power
  ~1e-13 W); FP16 flushes it to zero and log(0) gives -inf. The converter wraps each
  blocked node in its own Cast pair, which would still round the state through FP16
  between two blocked nodes, so those FP32 -> FP16 -> FP32 round trips are removed.
* INT8 dynamic: ``quantize_dynamic`` of the Gemm / MatMul weights (activations
  quantized at run time; onnxruntime CPU only - TensorRT does not take these ops).
* INT8 static: ``quantize_static`` in QDQ format (what TensorRT's explicit
  quantization consumes), per-channel symmetric weights, activation ranges calibrated
  on raw local states drawn from the simulator. Only Gemm / MatMul inputs are
  quantized: the normalisation stays FP32 for the reason above. The GELU outputs that
  feed the FFN output Gemms lie in [-0.17, ~2.7]: a symmetric range around them has a
  1.9x coarser step (shipped DTAC, all Gemms INT8, 10,000 states: offload / channel
  agreement 93.3 % / 97.1 %). For onnxruntime-only profiles the activations are
  asymmetric (99.1 % / 99.0 %); where TensorRT may run the model, which takes zero
  points of 0 only, they stay symmetric and :func:`center_gemm_inputs` first shifts
  each lopsided Gemm input to a range centred on zero (an exact FP32 Sub, the shift
  folded into the Gemm's bias).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from edgepilot.edge_agent.actions import DTAC_INPUT, TAC_INPUTS
from edgepilot.export.graph_rewrites import drop_unused_initializers, plain_gemm, set_plain_gemm, topological_sort

QUANTIZED_OPS = ["Gemm", "MatMul"]


def _normaliser_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that run on the raw state: all nodes before the first Gemm /
    MatMul / Gather of an embedding (topological order of the exporter)."""
    names = []
    for node in model.graph.node:
        if node.op_type in ("Gemm", "MatMul"):
            break
        names.append(node.name)
    return names


def _drop_cast_round_trips(model: onnx.ModelProto) -> int:
    """Remove Cast(x: fp32 -> fp16) -> Cast(-> fp32) pairs (consumers read x)."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    renames: dict[str, str] = {}
    dead = []
    for node in graph.node:
        if node.op_type != "Cast" or _cast_to(node) != TensorProto.FLOAT:
            continue
        src = producer.get(node.input[0])
        if src is not None and src.op_type == "Cast" and _cast_to(src) == TensorProto.FLOAT16:
            renames[node.output[0]] = src.input[0]
            dead.append(node)
    outputs = {o.name for o in graph.output}
    for node in dead:
        if node.output[0] in outputs:
            continue
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames and renames[name]:
                node.input[i] = renames[name]
    used = {i for n in graph.node for i in n.input} | outputs
    for node in [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in used]:
        graph.node.remove(node)
    return len(dead)



def _cast_to(node) -> int:
    for a in node.attribute:
        if a.name == "to":
            return a.i
    return -1


def to_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    block = _normaliser_nodes(model)
    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=block, disable_shape_infer=False)
    _drop_cast_round_trips(half)
    topological_sort(half)
    onnx.checker.check_model(half)
    onnx.save(half, str(dst))
    return Path(dst)


def _exclude(nodes: list[str]) -> list[str]:
    # quantize_dynamic rewrites Gemm into MatMul + Add named "<gemm>_MatMul" first
    return [n for name in nodes for n in (name, f"{name}_MatMul")]


def int8_dynamic(src: str | os.PathLike, dst: str | os.PathLike, keep_fp32: list[str] | None = None) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=QUANTIZED_OPS, weight_type=QuantType.QInt8,
                     per_channel=False, nodes_to_exclude=_exclude(keep_fp32 or []),
                     extra_options={"MatMulConstBOnly": True})
    return Path(dst)


class StateCalibrationReader:
    """Feeds raw simulator states to onnxruntime's calibrator in chunks.

    DTAC: ``states`` (count, 6). TAC: ``states`` (rounds, N, 6) and ``edge_id``."""

    def __init__(self, kind: str, states: np.ndarray, edge_id: np.ndarray | None = None, chunk: int = 256) -> None:
        self.kind, self.states, self.edge_id, self.chunk = kind, np.asarray(states, np.float32), edge_id, chunk
        self._it: Iterator[dict] | None = None

    def _batches(self) -> Iterator[dict]:
        step = self.chunk if self.kind == "dtac" else max(1, self.chunk // max(1, self.states.shape[1]))
        step = min(step, len(self.states))
        # equal-sized batches only: histogram calibrators stack them
        for i in range(0, len(self.states) - step + 1, step):
            if self.kind == "dtac":
                yield {DTAC_INPUT: self.states[i : i + step]}
            else:
                yield {TAC_INPUTS[0]: self.states[i : i + step], TAC_INPUTS[1]: self.edge_id[i : i + step].astype(np.int64)}

    def get_next(self) -> dict | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def int8_static(src: str | os.PathLike, dst: str | os.PathLike, reader: StateCalibrationReader,
                keep_fp32: list[str] | None = None, symmetric_activations: bool = True) -> Path:
    """QDQ INT8 with per-channel symmetric weights and MinMax-calibrated activations,
    symmetric (TensorRT) or asymmetric (onnxruntime only, more accurate)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def get_next(self):
            return reader.get_next()

    with tempfile.TemporaryDirectory() as tmp:  # the calibrator writes an augmented model beside it
        if symmetric_activations:
            model = onnx.load(str(src))
            if center_gemm_inputs(model, reader):
                src = Path(tmp) / "centred.onnx"
                onnx.save(model, str(src))
        reader.rewind()
        quantize_static(
            str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=QUANTIZED_OPS,
            nodes_to_exclude=list(keep_fp32 or []),
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
            calibrate_method=CalibrationMethod.MinMax, calibration_providers=["CPUExecutionProvider"],
            extra_options={"ActivationSymmetric": bool(symmetric_activations), "WeightSymmetric": True},
        )
        del tmp
    return Path(dst)


def center_gemm_inputs(model: onnx.ModelProto, reader: StateCalibrationReader, min_gain: float = 1.2) -> list[str]:
    """For symmetric INT8 activations: where the calibrated range [lo, hi] of a Gemm's
    input is lopsided (a symmetric range's step ``2 max(|lo|, |hi|) / (hi - lo)`` times
    the asymmetric one's, at least ``min_gain``), feed the Gemm ``x - mid`` through an
    FP32 ``Sub`` (mid = (lo + hi) / 2) and add ``mid W`` to its bias: exact, and the
    quantizer then sees a range centred on zero. The GELU outputs ([-0.17, ~2.7], gain
    ~1.9) and the normalised state (~1.35) are the lopsided inputs of the DTAC actor.
    In place; returns the Gemms changed."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper


    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    produced = {o for n in graph.node for o in n.output}
    gemms = [(n, gm) for n in graph.node if (gm := plain_gemm(n, inits)) is not None and n.input[0] in produced]
    tensors = sorted({n.input[0] for n, _ in gemms})
    if not tensors:
        return []
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend([helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors if t not in known])
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    lo = {t: np.inf for t in tensors}
    hi = {t: -np.inf for t in tensors}
    reader.rewind()
    while (feed := reader.get_next()) is not None:
        for t, v in zip(tensors, sess.run(tensors, feed)):
            lo[t], hi[t] = min(lo[t], float(v.min())), max(hi[t], float(v.max()))
    reader.rewind()
    changed = []
    for node, (m, b) in gemms:
        t = node.input[0]
        if not hi[t] > lo[t] or 2 * max(abs(lo[t]), abs(hi[t])) / (hi[t] - lo[t]) < min_gain:
            continue
        mid = (lo[t] + hi[t]) / 2
        base = node.name or node.output[0]
        centre, centred = f"{base}_centre", f"{base}_centred_in"
        graph.initializer.append(numpy_helper.from_array(np.array(mid, np.float32), centre))
        graph.node.insert(list(graph.node).index(node), helper.make_node("Sub", [t, centre], [centred], name=centre))
        set_plain_gemm(graph, inits, node, centred, m, b + mid * m.sum(0), "centred")
        changed.append(node.name)
    drop_unused_initializers(graph)
    return changed


def quantized_layers(model_path: str | os.PathLike) -> list[str]:
    return [n.name for n in onnx.load(str(model_path)).graph.node if n.op_type in QUANTIZED_OPS]


def int8_mixed(precision: str, src: Path, dst: Path, reader: StateCalibrationReader, target_agreement: float,
               max_fp32_fraction: float = 0.3, symmetric_activations: bool = True,
               judge_states: tuple[np.ndarray, np.ndarray | None] | None = None) -> tuple[Path, list[str], float]:
    """INT8 with the fewest layers kept in FP32 that reach ``target_agreement`` on the
    calibration states (layer-wise sensitivity): first everything quantized; if that
    falls short, each Gemm is quantized alone to measure what it costs, and the most
    costly are kept FP32 one by one (at most ``max_fp32_fraction`` of them) until the
    offload and channel decisions agree with FP32 often enough. Agreement is judged on
    ``judge_states`` ((states, edge_id), held out from calibration; default: the
    calibration states, which flatter the model that was calibrated on them - the
    shipped DTAC's INT8 static reached 0.992 there and 0.9896 on other states).
    Returns the model, the layers kept FP32 and the agreement reached."""
    from edgepilot.export.parity import compare, ort_outputs

    kind = reader.kind
    states, edge_id = judge_states if judge_states is not None else (reader.states, reader.edge_id)
    # dynamic scales depend on the batch: judge at batch 1, on all the states (1,000 were
    # too few: a 0.3 % sampling error put the shipped DTAC's channel agreement at 0.9896)
    chunk = 1 if precision == "int8_dynamic" else 512
    reference = ort_outputs(str(src), kind, states, edge_id, chunk=512)

    def build(keep: list[str], path: Path) -> float:
        if precision == "int8_static":
            int8_static(src, path, reader, keep, symmetric_activations)
        else:
            int8_dynamic(src, path, keep)
        fig = compare(reference, ort_outputs(str(path), kind, states, edge_id, chunk=chunk))
        return min(fig["offload_agreement"], fig["channel_agreement"])

    score = build([], dst)
    if score >= target_agreement:
        return dst, [], score
    layers = quantized_layers(src)
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        alone = {name: build([n for n in layers if n != name], probe) for name in layers}
        keep: list[str] = []
        for name in sorted(layers, key=lambda n: alone[n])[: max(1, int(max_fp32_fraction * len(layers)))]:
            keep.append(name)
            score = build(keep, dst)
            if score >= target_agreement:
                break
    return dst, keep, score


def build_variant(precision: str, fp32_path: Path, dst: Path, reader: StateCalibrationReader | None = None,
                  symmetric_activations: bool = True) -> Path:
    if precision == "fp32":
        if Path(fp32_path) != Path(dst):
            Path(dst).write_bytes(Path(fp32_path).read_bytes())
        return Path(dst)
    if precision == "fp16":
        return to_fp16(fp32_path, dst)
    if precision == "int8_dynamic":
        return int8_dynamic(fp32_path, dst)
    if precision == "int8_static":
        if reader is None:
            raise ValueError("int8_static needs calibration states")
        return int8_static(fp32_path, dst, reader, symmetric_activations=symmetric_activations)
    raise ValueError(f"unknown precision {precision!r}")
