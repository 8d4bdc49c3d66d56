"""torch actor -> ONNX with dynamic axes, at the opset of a hardware profile.

How (see NOTES.md): ``torch.onnx.export(..., dynamo=True)`` with ``dynamic_shapes`` and
an example batch >= 2 (a batch of 1 fixes the axis). The dynamo exporter only emits
opset >= 18 (asked for 16 it silently keeps 18), so we always export at 18 and convert
down with ``onnx.version_converter``, fixing the one attribute its ReduceMean 18 -> 17
adapter leaves behind. Then, exactly and portably:

* opset >= 17: the decomposed layer norms of the actor are fused into the standard
  LayerNormalization op (one node instead of nine; onnxscript's fusion rule);
  opset 16 (TensorRT 8.2 on the original Jetson Nano) keeps them decomposed, and
  :func:`check_model` refuses a LayerNormalization there;
* chains of affine maps with constant weights are folded into one Gemm (the DTAC
  actor's identity attention is ``out(v(h))``, two Gemms; the state normalisation's
  ``(log - mean) / std`` and the constant position bias fold into the embedding).

Every folded graph is checked against torch by the parity step of the export.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge_agent.actions import ACTOR_OUTPUTS, DTAC_INPUT, TAC_INPUTS
from edge_agent.system_model import LOCAL_STATE_DIM

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


def fuse_skip_layernorm(model: onnx.ModelProto) -> int:
    """``LayerNormalization(a + b)`` -> ``com.microsoft.SkipLayerNormalization(a, b)``
    where the sum feeds nothing else (onnxruntime only). In place; returns the count."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = Counter(i for n in graph.node for i in n.input)
    outputs = {o.name for o in graph.output}
    fused = 0
    for ln in [n for n in graph.node if n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx")]:
        add = producer.get(ln.input[0])
        if add is None or add.op_type != "Add" or consumers[add.output[0]] != 1 or add.output[0] in outputs or len(ln.input) < 3:
            continue
        attrs = _attrs(ln)
        if attrs.get("axis", -1) != -1 or len(ln.output) != 1:
            continue
        skip = helper.make_node("SkipLayerNormalization", [add.input[0], add.input[1], ln.input[1], ln.input[2]], [ln.output[0]],
                                domain="com.microsoft", epsilon=float(attrs.get("epsilon", 1e-5)), name=f"{ln.name}_skip")
        idx = list(graph.node).index(ln)
        graph.node.remove(ln)
        graph.node.insert(idx, skip)
        graph.node.remove(add)
        fused += 1
    if fused and not any(i.domain == "com.microsoft" for i in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return fused


def optimize_for_opset(model: onnx.ModelProto, opset: int, fold: bool = True) -> onnx.ModelProto:
    """Fuse (opset >= 17) and fold, then convert the opset-18 export to ``opset``."""
    if opset >= 17:
        import onnx_ir as ir
        from onnxscript.rewriter.rules.fusion._layer_norm import fuse_layer_normalization

        ir_model = ir.serde.deserialize_model(model)
        fuse_layer_normalization(ir_model)
        model = ir.serde.serialize_model(ir_model)
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


def fuse_erf_gelu(model: onnx.ModelProto) -> int:
    """``x * (0.5 * (erf(x / sqrt 2) + 1))`` (five nodes, as exported) -> ``Gelu(x)``
    (ONNX opset 20). In place; returns the number of fusions."""
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    def scalar(name, value):
        v = inits.get(name)
        return v is not None and v.size == 1 and abs(float(v.reshape(-1)[0]) - value) < 1e-4

    def other(node, name):
        return node.input[1] if node.input[0] == name else node.input[0]

    def fuse_one() -> bool:
        producer = {o: n for n in graph.node for o in n.output}
        consumers = Counter(i for n in graph.node for i in n.input)
        for mul_out in [n for n in graph.node if n.op_type == "Mul"]:
            for x in mul_out.input:
                half = producer.get(other(mul_out, x))
                if half is None or half.op_type != "Mul":
                    continue
                plus = next((producer[i] for i in half.input if i in producer and producer[i].op_type == "Add"), None)
                if plus is None or not scalar(other(half, plus.output[0]), 0.5):
                    continue
                erf = next((producer[i] for i in plus.input if i in producer and producer[i].op_type == "Erf"), None)
                if erf is None or not scalar(other(plus, erf.output[0]), 1.0):
                    continue
                div = producer.get(erf.input[0])
                if div is None or div.input[0] != x:
                    continue
                if not ((div.op_type == "Div" and scalar(div.input[1], 2 ** 0.5)) or (div.op_type == "Mul" and scalar(div.input[1], 2 ** -0.5))):
                    continue
                inner = [div, erf, plus, half]
                if any(consumers[n.output[0]] != 1 for n in inner):
                    continue
                idx = list(graph.node).index(mul_out)
                gelu = helper.make_node("Gelu", [x], [mul_out.output[0]], name=f"{mul_out.name}_gelu")
                for n in inner + [mul_out]:
                    graph.node.remove(n)
                graph.node.insert(min(idx, len(graph.node)), gelu)
                return True
        return False

    fused = 0
    while fuse_one():
        fused += 1
    if fused:
        from export.quantize import topological_sort

        topological_sort(model)
        used = {i for n in graph.node for i in n.input}
        keep = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return fused


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def fold_affine_chains(model: onnx.ModelProto) -> int:
    """Fold constant affine maps into neighbouring Gemms, in place; returns the number
    of nodes removed. Rules (each intermediate must have exactly one consumer and must
    not be a graph output):

    * ``Gemm(Gemm(x, W1, b1), W2, b2)``        -> ``Gemm(x, W1 W2, b1 W2 + b2)``
    * ``Add(Gemm(x, W, b), c)`` with constant ``c`` -> ``Gemm(x, W, b + c)``
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    removed = 0

    def const(name):
        return numpy_helper.to_array(inits[name]).astype(np.float64) if name in inits else None

    def matrix(node):  # (in, out) matrix and bias of a plain Gemm, or None
        a = _attrs(node)
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or len(node.input) < 2:
            return None
        w = const(node.input[1])
        b = const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1)
        if w is None or b is None or w.ndim != 2:
            return None
        m = w.T if a.get("transB", 0) else w
        b = np.broadcast_to(b, (m.shape[1],)).copy() if b.size in (1, m.shape[1]) else None
        return None if b is None else (m, b)

    def set_gemm(node, m, b):
        dtype = numpy_helper.to_array(inits[node.input[1]]).dtype
        wname, bname = f"{node.name or node.output[0]}_folded_w{removed}", f"{node.name or node.output[0]}_folded_b{removed}"
        graph.initializer.extend([numpy_helper.from_array(m.T.astype(dtype), wname), numpy_helper.from_array(b.astype(dtype), bname)])
        inits[wname], inits[bname] = graph.initializer[-2], graph.initializer[-1]
        del node.input[:]
        node.input.extend([node_input0[node.name], wname, bname])
        del node.attribute[:]
        node.attribute.extend([helper.make_attribute("transB", 1)])

    node_input0: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        consumers = Counter(i for n in graph.node for i in n.input)
        outputs = {o.name for o in graph.output}
        producer = {o: n for n in graph.node for o in n.output}
        for node in list(graph.node):
            if node.op_type != "Gemm":
                continue
            gm = matrix(node)
            if gm is None:
                continue
            m, b = gm
            src = producer.get(node.input[0])
            single = src is not None and consumers[node.input[0]] == 1 and node.input[0] not in outputs
            new = None
            if single and src.op_type == "Gemm" and matrix(src) is not None:
                m1, b1 = matrix(src)
                new = (src.input[0], m1 @ m, b1 @ m + b)
            if new is not None:
                node_input0[node.name] = new[0]
                set_gemm(node, new[1], new[2])
                graph.node.remove(src)
                removed += 1
                changed = True
                break
            # Gemm followed by Add(const)
            out = node.output[0]
            users = [n for n in graph.node if out in n.input]
            if len(users) == 1 and out not in outputs and users[0].op_type == "Add":
                add = users[0]
                other = add.input[1] if add.input[0] == out else add.input[0]
                c = const(other)
                if c is not None and c.size in (1, m.shape[1]):
                    node_input0[node.name] = node.input[0]
                    set_gemm(node, m, b + np.broadcast_to(c.reshape(-1), (m.shape[1],)))
                    node.output[0] = add.output[0]
                    graph.node.remove(add)
                    removed += 1
                    changed = True
                    break
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return removed
