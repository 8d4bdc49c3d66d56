"""torch actor -> ONNX with dynamic axes, at the opset of a hardware profile.

How (see NOTES.md): ``torch.onnx.export(..., dynamo=True)`` with ``dynamic_shapes`` and
an example batch >= 2 (a batch of 1 fixes the axis). The dynamo exporter only emits
opset >= 18 (asked for 16 it silently keeps 18), so we always export at 18 and convert
down with ``onnx.version_converter``, fixing the one attribute its ReduceMean 18 -> 17
adapter leaves behind. Then, exactly and portably:

* opset >= 17: the actor's layer norms are exported as the standard LayerNormalization
  op (one node instead of nine: the model's ``LayerNorm`` runs as ``F.layer_norm`` while
  it is exported); opset 16 (TensorRT 8.2 on the original Jetson Nano) keeps them as
  primitive ops, and :func:`check_model` refuses a LayerNormalization there;
* chains of affine maps with constant weights are folded into one Gemm (the DTAC
  actor's identity attention is ``out(v(h))``, two Gemms; the state normalisation's
  ``(log - mean) / std`` and the constant position bias fold into the embedding).

For the FP32 artifact of an onnxruntime-only profile (laptop), where one UE's
decision at batch 1 costs ~0.45 us per onnxruntime kernel whatever the kernel does,
:func:`write_onnxruntime_cpu_variant` also drops the input clamp (the runtime refuses
negative states), folds the state standardisation into the embedding Gemm, folds the
first identity attention's residual into the same Gemm (``h + h W = h (I + W)``) and
computes the two ratio heads as one transposed Gemm + Sigmoid (fused by onnxruntime)
+ Reshape + Split. The INT8 / FP16 variants are built from the graph before these.

Every folded graph is checked against torch by the parity step of the export.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections import Counter
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import onnx

from edgepilot.edge_agent.actions import ACTOR_OUTPUTS, DTAC_INPUT, TAC_INPUTS
from edgepilot.edge_agent.system_model import LOCAL_STATE_DIM
from edgepilot.export.graph_rewrites import fold_affine_chains, fuse_erf_gelu, fuse_skip_layernorm, optimize_for_onnxruntime_cpu

EXPORT_OPSET = 18  # what the dynamo exporter emits; converted down per profile
#: ops a TensorRT 8.2 parser (opset <= 16 targets) cannot take
FORBIDDEN_BELOW_17 = ("LayerNormalization", "Gelu", "Attention", "MultiHeadAttention")


class ExportError(RuntimeError):
    """The model could not be exported for the target; the message says why."""


def input_specs(kind: str) -> list[dict]:
    """Names, dtypes and symbolic shapes of an actor's inputs (manifest form)."""
    if kind == "dtac":
        return [{"name": DTAC_INPUT, "dtype": "float32", "shape": ["batch", LOCAL_STATE_DIM]}]
    if kind == "tac":
        return [
            {"name": TAC_INPUTS[0], "dtype": "float32", "shape": ["rounds", "ues", LOCAL_STATE_DIM]},
            {"name": TAC_INPUTS[1], "dtype": "int64", "shape": ["rounds", "ues"]},
        ]
    raise ExportError(f"no ONNX input layout for model kind {kind!r} (expected 'dtac' or 'tac')")


def output_specs(kind: str, num_channels: int) -> list[dict]:
    lead = ["batch"] if kind == "dtac" else ["rounds", "ues"]
    return [
        {"name": ACTOR_OUTPUTS[0], "dtype": "float32", "shape": lead + [3]},
        {"name": ACTOR_OUTPUTS[1], "dtype": "float32", "shape": lead + [num_channels]},
        {"name": ACTOR_OUTPUTS[2], "dtype": "float32", "shape": list(lead)},
        {"name": ACTOR_OUTPUTS[3], "dtype": "float32", "shape": list(lead)},
    ]


def _wrap(actor, kind: str):
    import torch

    class DTACExport(torch.nn.Module):
        def __init__(self, actor):
            super().__init__()
            self.actor = actor

        def forward(self, local_state):
            return self.actor(local_state)

    class TACExport(torch.nn.Module):
        def __init__(self, actor):
            super().__init__()
            self.actor = actor

        def forward(self, joint_state, edge_id):
            return self.actor(joint_state, edge_id)

    return (DTACExport if kind == "dtac" else TACExport)(actor).eval()


@contextmanager
def _standard_layer_norms(actor, enabled: bool):
    """While exporting for opset >= 17, the actor's layer norms run as ``F.layer_norm``,
    which the exporter writes as one LayerNormalization node; opset 16 keeps the
    primitive ops (TensorRT 8.2 cannot parse LayerNormalization)."""
    norms = [m for m in actor.modules() if hasattr(m, "standard_op")]
    before = [m.standard_op for m in norms]
    for m in norms:
        m.standard_op = enabled
    try:
        yield
    finally:
        for m, was in zip(norms, before):
            m.standard_op = was


def export_actor(actor, kind: str, path: str | os.PathLike, opset: int, ir_version: int | None = None,
                 fold: bool = True, ort_contrib_ops: bool = False) -> Path:
    """Export a TAC / DTAC actor to ``path`` at ``opset`` with dynamic batch (and N).

    ``ort_contrib_ops`` (profiles whose only runtime is onnxruntime): residual Add +
    LayerNormalization become onnxruntime's SkipLayerNormalization (one kernel)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dtac":
        example = (torch.rand(4, LOCAL_STATE_DIM),)
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        dynamic = {DTAC_INPUT: {0: batch}}
        names = [DTAC_INPUT]
    elif kind == "tac":
        n_edges = actor.backbone.position.num_embeddings
        example = (torch.rand(2, 5, LOCAL_STATE_DIM), torch.randint(0, n_edges, (2, 5)))
        rounds = torch.export.Dim("rounds", min=1, max=1 << 16)
        ues = torch.export.Dim("ues", min=1, max=4096)
        dynamic = {TAC_INPUTS[0]: {0: rounds, 1: ues}, TAC_INPUTS[1]: {0: rounds, 1: ues}}
        names = list(TAC_INPUTS)
    else:
        raise ExportError(f"cannot export model kind {kind!r} (expected 'dtac' or 'tac')")
    chatter = io.StringIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(chatter), redirect_stderr(chatter):
            warnings.simplefilter("ignore")
            with _standard_layer_norms(actor, enabled=opset >= 17):
                program = torch.onnx.export(
                    _wrap(actor, kind), example, dynamo=True, opset_version=EXPORT_OPSET,
                    input_names=names, output_names=list(ACTOR_OUTPUTS), dynamic_shapes=dynamic,
                    verbose=False,
                )
    except Exception as err:  # the exporter's own errors are long; keep the gist and the tail
        raise ExportError(f"torch.onnx.export failed for the {kind} actor: {err}\n{chatter.getvalue()[-2000:]}") from err
    tmp = path.with_suffix(".raw.onnx")
    program.save(str(tmp))
    model = onnx.load(str(tmp))
    tmp.unlink()
    strip_metadata(model)
    model = optimize_for_opset(model, opset, fold=fold)
    if ort_contrib_ops and opset >= 17:
        fuse_skip_layernorm(model)
    if ir_version is not None:
        model.ir_version = min(model.ir_version, ir_version)
    onnx.checker.check_model(model, full_check=not ort_contrib_ops)
    onnx.save(model, str(path))
    check_model(path, opset, allow_contrib=ort_contrib_ops)
    return path


def optimize_for_opset(model: onnx.ModelProto, opset: int, fold: bool = True) -> onnx.ModelProto:
    """Fold, then convert the opset-18 export to ``opset``."""
    if fold:
        fold_affine_chains(model)
    current = _onnx_opset(model)
    if opset >= 20 and current < 20:  # standard Gelu exists from opset 20
        try:
            model = onnx.version_converter.convert_version(model, opset)
        except Exception as err:
            raise ExportError(f"cannot convert the exported model from opset {current} to {opset}: {err}") from err
        current = opset
        fuse_erf_gelu(model)
    if opset != current:
        try:
            model = onnx.version_converter.convert_version(model, opset)
        except Exception as err:
            raise ExportError(f"cannot convert the exported model from opset {current} to {opset}: {err}") from err
        for node in model.graph.node:  # the 18 -> 17 ReduceMean adapter leaves this (invalid < 18) attribute
            if node.op_type in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd") and opset < 18:
                keep = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
                del node.attribute[:]
                node.attribute.extend(keep)
    return model


def _onnx_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise ExportError("model imports no default ONNX opset")


def check_model(path: str | os.PathLike, opset: int, allow_contrib: bool = False) -> dict:
    """Refuse a model a target of ``opset`` cannot parse (and onnxruntime contrib ops
    unless ``allow_contrib``); return a summary."""
    model = onnx.load(str(path))
    found = _onnx_opset(model)
    if found != opset:
        raise ExportError(f"{path}: model has opset {found}, the target needs {opset}")
    ops = Counter(n.op_type for n in model.graph.node)
    if opset < 17:
        bad = sorted(op for op in ops if op in FORBIDDEN_BELOW_17)
        if bad:
            raise ExportError(f"{path}: opset {opset} target cannot parse {', '.join(bad)}")
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") and not (allow_contrib and node.domain == "com.microsoft"):
            raise ExportError(f"{path}: node {node.name} uses the non-standard domain {node.domain!r}")
    return {"opset": found, "ir_version": model.ir_version, "nodes": sum(ops.values()), "ops": dict(sorted(ops.items()))}


# --------------------------------------------------------------------------- folding


def strip_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node metadata (source stack traces, ~3/4 of the file)."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    model.doc_string = ""


def write_onnxruntime_cpu_variant(src: str | os.PathLike, dst: str | os.PathLike, opset: int,
                                  pack_heads: bool = True) -> tuple[Path, dict]:
    """The FP32 artifact of an onnxruntime-only profile: ``src`` (from
    :func:`export_actor` with ``ort_contrib_ops``) with :func:`optimize_for_onnxruntime_cpu`
    (``pack_heads=False``: the four heads kept, the runtime benchmark's baseline)."""
    model = onnx.load(str(src))
    done = optimize_for_onnxruntime_cpu(model, pack_heads)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    check_model(dst, opset, allow_contrib=True)
    return Path(dst), done


def onnxruntime_kernels(path: str | os.PathLike) -> dict:
    """What onnxruntime's CPU provider runs for ``path`` after its own graph
    optimizations (ORT_ENABLE_ALL, as :class:`edgepilot.edge_agent.runtime.PolicyRuntime` opens
    it): the kernel count and the kernels by op type. At batch 1 the count is the cost."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3  # the saved model is hardware-specific: only counted, never shipped
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        ops = Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    return {"kernels": sum(ops.values()), "ops": dict(sorted(ops.items()))}
