"""Exact rewrites of an exported actor graph (ONNX), shared by the exporter and the
quantizer: node ordering, constant-weight Gemm algebra, and the fusions and folds that
make an actor cheaper to run without changing what it computes.

* :func:`fold_affine_chains`: chains of affine maps with constant weights become one Gemm
  (the DTAC actor's identity attention is ``out(v(h))``, two Gemms; the state
  normalisation and the constant position bias fold into the embedding);
* :func:`fuse_erf_gelu`, :func:`fuse_skip_layernorm`: standard / onnxruntime fused ops;
* :func:`optimize_for_onnxruntime_cpu`: the rewrites of the FP32 artifact of an
  onnxruntime-only profile (see :mod:`edgepilot.export.onnx_export`).

Every rewritten graph is checked against torch by the parity step of the export.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgepilot.edge_agent.actions import ACTOR_OUTPUTS, PACKED_OUTPUT


def topological_sort(model: onnx.ModelProto) -> None:
    """Order the nodes so each comes after the producers of its inputs (the FP16
    converter appends its Cast nodes at the end)."""
    graph = model.graph
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progressed = False
        for node in list(pending):
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
                pending.remove(node)
                progressed = True
        if not progressed:
            raise ValueError(f"graph has a cycle or a missing input at {[n.name for n in pending][:5]}")
    del graph.node[:]
    graph.node.extend(ordered)


def fuse_skip_layernorm(model: onnx.ModelProto) -> int:
    """``LayerNormalization(a + b)`` -> ``com.microsoft.SkipLayerNormalization(a, b)``
    where the sum feeds nothing else (onnxruntime only). In place; returns the count."""
    graph = model.graph
    producer, consumers, outputs = _graph_maps(graph)
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
        producer, consumers, _ = _graph_maps(graph)
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
        topological_sort(model)
        drop_unused_initializers(graph)
    return fused


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _graph_maps(graph):
    """Producer of each tensor, number of reads of each tensor, graph output names."""
    producer = {o: n for n in graph.node for o in n.output}
    consumers = Counter(i for n in graph.node for i in n.input)
    outputs = {o.name for o in graph.output}
    return producer, consumers, outputs


def _rewrite_to_fixpoint(graph, rewrite) -> int:
    """Offer each node to ``rewrite(node, producer, consumers, outputs, count)``, which
    returns True when it changed the graph; the maps are then rebuilt and the scan
    starts again, until a whole scan changes nothing. ``count`` is the number of
    changes so far (for unique initializer names). Unused initializers are dropped at
    the end; returns the number of changes."""
    count = 0
    while True:
        producer, consumers, outputs = _graph_maps(graph)
        if not any(rewrite(node, producer, consumers, outputs, count) for node in list(graph.node)):
            drop_unused_initializers(graph)
            return count
        count += 1


def plain_gemm(node, inits) -> tuple[np.ndarray, np.ndarray] | None:
    """(in, out) matrix and bias (float64) of ``Gemm(x, W, b)`` with constant W, b and
    no transA / alpha / beta, else None."""
    if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
        return None
    a = _attrs(node)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or node.input[1] not in inits:
        return None
    w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
    if w.ndim != 2:
        return None
    m = w.T if a.get("transB", 0) else w
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in inits:
            return None
        b = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64).reshape(-1)
        if b.size not in (1, m.shape[1]):
            return None
        b = np.broadcast_to(b, (m.shape[1],)).copy()
    else:
        b = np.zeros(m.shape[1])
    return m, b


def set_plain_gemm(graph, inits, node, x: str, m: np.ndarray, b: np.ndarray, tag: str) -> None:
    """Make ``node`` the Gemm ``x @ m + b`` (new initializers of its weight's dtype)."""
    dtype = helper.tensor_dtype_to_np_dtype(inits[node.input[1]].data_type)
    base = node.name or node.output[0]
    wname, bname = f"{base}_{tag}_w", f"{base}_{tag}_b"
    for name, arr in ((wname, m.T), (bname, b)):
        t = numpy_helper.from_array(np.ascontiguousarray(arr, dtype=dtype), name)
        graph.initializer.append(t)
        inits[name] = graph.initializer[-1]
    del node.input[:]
    node.input.extend([x, wname, bname])
    del node.attribute[:]
    node.attribute.extend([helper.make_attribute("transB", 1)])


def drop_unused_initializers(graph) -> None:
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def fold_affine_chains(model: onnx.ModelProto) -> int:
    """Fold constant affine maps into neighbouring Gemms, in place; returns the number
    of nodes removed. Rules (each intermediate must have exactly one consumer and must
    not be a graph output):

    * ``Gemm(Gemm(x, W1, b1), W2, b2)``        -> ``Gemm(x, W1 W2, b1 W2 + b2)``
    * ``Add(Gemm(x, W, b), c)`` with constant ``c`` -> ``Gemm(x, W, b + c)``
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}

    def fold(node, producer, consumers, outputs, count) -> bool:
        gm = plain_gemm(node, inits)
        if gm is None:
            return False
        m, b = gm
        src = producer.get(node.input[0])
        if src is not None and consumers[node.input[0]] == 1 and node.input[0] not in outputs \
                and (sm := plain_gemm(src, inits)) is not None:
            m1, b1 = sm
            set_plain_gemm(graph, inits, node, src.input[0], m1 @ m, b1 @ m + b, f"folded{count}")
            graph.node.remove(src)
            return True
        # Gemm followed by Add(const)
        out = node.output[0]
        users = [n for n in graph.node if out in n.input]
        if len(users) != 1 or out in outputs or users[0].op_type != "Add":
            return False
        add = users[0]
        other = add.input[1] if add.input[0] == out else add.input[0]
        c = numpy_helper.to_array(inits[other]).astype(np.float64) if other in inits else None
        if c is None or c.size not in (1, m.shape[1]):
            return False
        set_plain_gemm(graph, inits, node, node.input[0], m, b + np.broadcast_to(c.reshape(-1), (m.shape[1],)), f"folded{count}")
        node.output[0] = add.output[0]
        graph.node.remove(add)
        return True

    return _rewrite_to_fixpoint(graph, fold)


# --------------------------------------------------------------------------- onnxruntime CPU rewrites
#
# The FP32 artifact of an onnxruntime-only profile (``ort_contrib_ops``) runs one UE's
# decision at batch 1, where onnxruntime spends ~0.45 us per node whatever the node
# does: the node count is the cost. These rewrites are exact up to float rounding (the
# export's parity step checks them against torch); they are not applied to the model
# the INT8 / FP16 variants are built from, which keeps the state normalisation as its
# own nodes so quantization sees normalised activations.


def _const_vector(inits, name: str, size: int) -> np.ndarray | None:
    """A constant that broadcasts along the last axis only (scalar, (k,) or (1, k))."""
    if name not in inits:
        return None
    c = numpy_helper.to_array(inits[name]).astype(np.float64)
    if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1) or c.size not in (1, size):
        return None
    return np.broadcast_to(c.reshape(-1), (size,)).copy()


def drop_nonnegative_input_clip(model: onnx.ModelProto) -> int:
    """``Clip(x, min=0)`` on a graph input -> ``x``. Exact for the inputs the runtime
    accepts: :class:`edgepilot.edge_agent.runtime.PolicyRuntime` refuses a negative local state
    before it reaches the model (the clamp only matters for negative values). In
    place; returns the number of nodes removed."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    removed = 0
    for node in [n for n in graph.node if n.op_type == "Clip" and n.domain in ("", "ai.onnx")]:
        if node.input[0] not in inputs or node.output[0] in outputs or node.attribute:
            continue
        lo = node.input[1] if len(node.input) > 1 else ""
        hi = node.input[2] if len(node.input) > 2 else ""
        if hi or lo not in inits or numpy_helper.to_array(inits[lo]).size != 1 or float(numpy_helper.to_array(inits[lo]).reshape(-1)[0]) != 0.0:
            continue
        for other in graph.node:
            for k, name in enumerate(other.input):
                if name == node.output[0]:
                    other.input[k] = node.input[0]
        graph.node.remove(node)
        removed += 1
    drop_unused_initializers(graph)
    return removed


def fold_gemm_input_affine(model: onnx.ModelProto) -> int:
    """Fold a per-feature affine map on a Gemm's input into the Gemm, in place:
    ``Gemm((x - c) / s)`` -> ``Gemm(x)`` with ``W / s`` and ``b - (c / s) W`` (and the
    same for Add / Mul). The DTAC state standardisation ``(log - mean) / std`` goes
    into the embedding. Returns the number of nodes removed."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}

    def fold(node, producer, consumers, outputs, count) -> bool:
        gm = plain_gemm(node, inits)
        src = producer.get(node.input[0]) if gm is not None else None
        if src is None or src.op_type not in ("Add", "Sub", "Mul", "Div") or src.domain not in ("", "ai.onnx"):
            return False
        if consumers[node.input[0]] != 1 or node.input[0] in outputs:
            return False
        m, b = gm
        var, cname = src.input[0], src.input[1]
        if src.input[1] not in inits and src.op_type in ("Add", "Mul") and src.input[0] in inits:
            var, cname = src.input[1], src.input[0]
        if var in inits:
            return False
        c = _const_vector(inits, cname, m.shape[0])
        if c is None or (src.op_type == "Div" and not np.all(c != 0)):
            return False
        if src.op_type == "Add":
            b = b + c @ m
        elif src.op_type == "Sub":
            b = b - c @ m
        elif src.op_type == "Mul":
            m = c[:, None] * m
        else:
            m = m / c[:, None]
        set_plain_gemm(graph, inits, node, var, m, b, f"in{count}")
        graph.node.remove(src)
        return True

    return _rewrite_to_fixpoint(graph, fold)


def fold_residual_gemm(model: onnx.ModelProto) -> int:
    """``h + Gemm(h)`` -> ``Gemm(h)`` with ``W + I`` where ``h`` is itself a Gemm's
    output used nowhere else, so that the two Gemms then fold into one (the DTAC
    embedding and the first identity attention with its residual). The sum is an
    ``Add`` or the skip input of a ``SkipLayerNormalization`` (which becomes a plain
    ``LayerNormalization``). In place; returns the number of rewritten residuals."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}

    def fold(node, producer, consumers, outputs, count) -> bool:
        is_add = node.op_type == "Add" and node.domain in ("", "ai.onnx") and len(node.input) == 2
        is_skip = node.op_type == "SkipLayerNormalization" and node.domain == "com.microsoft" and len(node.input) == 4 and len(node.output) == 1
        if not (is_add or is_skip):
            return False
        for h, g_out in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
            g, p = producer.get(g_out), producer.get(h)
            if g is None or p is None or g.input[0] != h or consumers[g_out] != 1 or g_out in outputs or h in outputs:
                continue
            gm = plain_gemm(g, inits)
            if gm is None or plain_gemm(p, inits) is None or gm[0].shape[0] != gm[0].shape[1] or consumers[h] != 2:
                continue
            m, b = gm
            set_plain_gemm(graph, inits, g, h, m + np.eye(m.shape[0]), b, f"res{count}")
            if is_add:
                g.output[0] = node.output[0]
                graph.node.remove(node)
            else:
                ln = helper.make_node("LayerNormalization", [g_out, node.input[2], node.input[3]], [node.output[0]],
                                      name=f"{node.name}_ln", axis=-1, epsilon=float(_attrs(node).get("epsilon", 1e-5)))
                idx = list(graph.node).index(node)
                graph.node.remove(node)
                graph.node.insert(idx, ln)
            return True
        return False

    return _rewrite_to_fixpoint(graph, fold)


def pack_action_heads(model: onnx.ModelProto) -> int:
    """The actor's four heads ``Softmax(Gemm(h))`` (p_x), ``Softmax(Gemm(h))`` (p_l) and
    ``Gather(Sigmoid(Gemm(h)), 0 / 1)`` (a, b) -> one ``Gemm(h)`` to the single output
    :data:`edgepilot.edge_agent.actions.PACKED_OUTPUT` (batch, 3 + L + 2): the logits of p_x and
    p_l and a, b before the sigmoid. At batch 1 the heads were 7 onnxruntime kernels
    (two Gemms, two Softmax, the ratio head's Gemm + Sigmoid, Reshape and Split after
    onnxruntime's own fusions); the runtime takes the argmax of the logits (the same
    first maximum as of the softmax) and the sigmoid of two numbers in Python, and
    :func:`edgepilot.edge_agent.actions.heads_from_logits` gives the four heads back. For
    onnxruntime-only artifacts: the outputs change, so TensorRT / INT8 variants keep
    the four heads. A term added to the offload logits before their softmax (the DTAC's
    ``offload_mask`` term: ``Add(Gemm(h), bias)``) is kept: it is padded with zeros to the
    packed width and added to the packed Gemm. In place; returns 1 if rewritten, 0 if
    the heads are not of this form (e.g. the TAC actor, whose heads are MatMul + Add on
    (rounds, N, d))."""
    graph = model.graph
    if [o.name for o in graph.output] != list(ACTOR_OUTPUTS):
        return 0
    inits = {t.name: t for t in graph.initializer}
    producer, consumers, _ = _graph_maps(graph)
    soft_x, soft_l, gather_a, gather_b = (producer.get(name) for name in ACTOR_OUTPUTS)
    if soft_x is None or soft_l is None or gather_a is None or gather_b is None:
        return 0
    if soft_x.op_type != "Softmax" or soft_l.op_type != "Softmax" or any(_attrs(n).get("axis", -1) not in (-1, 1) for n in (soft_x, soft_l)):
        return 0
    if gather_a.op_type != "Gather" or gather_b.op_type != "Gather" or gather_a.input[0] != gather_b.input[0]:
        return 0
    for gather, index in ((gather_a, 0), (gather_b, 1)):
        i = inits.get(gather.input[1])
        if _attrs(gather).get("axis", 0) not in (1, -1) or i is None or numpy_helper.to_array(i).ndim != 0 \
                or int(numpy_helper.to_array(i)) % 2 != index:
            return 0
    sigmoid = producer.get(gather_a.input[0])
    if sigmoid is None or sigmoid.op_type != "Sigmoid" or consumers[sigmoid.output[0]] != 2:
        return 0
    gemms = [producer.get(n.input[0]) for n in (soft_x, soft_l, sigmoid)]
    offload_add, offload_bias = gemms[0], None
    if offload_add is not None and offload_add.op_type == "Add" and consumers[offload_add.output[0]] == 1:
        from_gemm = [i for i in offload_add.input if producer.get(i) is not None and producer[i].op_type == "Gemm"]
        if len(from_gemm) == 1:  # Add(Gemm(h), bias): the offload prior
            offload_bias = next(i for i in offload_add.input if i != from_gemm[0])
            gemms[0] = producer[from_gemm[0]]
    if any(g is None or consumers[g.output[0]] != 1 for g in gemms) or len({g.input[0] for g in gemms}) != 1:
        return 0
    parts = [plain_gemm(g, inits) for g in gemms]
    if any(p is None for p in parts) or parts[0][0].shape[1] != 3 or parts[2][0].shape[1] != 2:  # p_x: 3 options; a, b
        return 0
    m = np.concatenate([p[0] for p in parts], axis=1)  # (d, 3 + L + 2)
    b = np.concatenate([p[1] for p in parts])
    base = gemms[0].name or gemms[0].output[0]
    wname, bname = f"{base}_packed_w", f"{base}_packed_b"
    graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(m.T, dtype=np.float32), wname),
                              numpy_helper.from_array(b.astype(np.float32), bname)])
    batch = graph.output[0].type.tensor_type.shape.dim[0]
    for n in (soft_x, soft_l, gather_a, gather_b, sigmoid, *gemms, *([offload_add] if offload_bias else [])):
        graph.node.remove(n)
    packed = f"{base}_packed_raw" if offload_bias else PACKED_OUTPUT
    graph.node.append(helper.make_node("Gemm", [gemms[0].input[0], wname, bname], [packed], name=f"{base}_packed", transB=1))
    if offload_bias:  # (batch, 3) -> (batch, 3 + L + 2), zeros after the offload logits
        pads = f"{base}_packed_bias_pads"
        graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 0, m.shape[1] - parts[0][0].shape[1]], dtype=np.int64), pads))
        graph.node.append(helper.make_node("Pad", [offload_bias, pads], [f"{base}_packed_bias"], name=f"{base}_packed_bias_pad"))
        graph.node.append(helper.make_node("Add", [packed, f"{base}_packed_bias"], [PACKED_OUTPUT], name=f"{base}_packed_add"))
    out = helper.make_tensor_value_info(PACKED_OUTPUT, onnx.TensorProto.FLOAT, [batch.dim_param or batch.dim_value or "batch", m.shape[1]])
    del graph.output[:]
    graph.output.append(out)
    drop_unused_initializers(graph)
    return 1


def optimize_for_onnxruntime_cpu(model: onnx.ModelProto, pack_heads: bool = True) -> dict[str, int]:
    """All the exact onnxruntime-CPU rewrites above, then the affine-chain fold and
    (``pack_heads``) the packed heads; in place. Returns what each rule did."""
    return {  # in this order (a dict literal is evaluated left to right)
        "input_clip": drop_nonnegative_input_clip(model),
        "input_affine": fold_gemm_input_affine(model),
        "residual_gemm": fold_residual_gemm(model),
        "affine_chains": fold_affine_chains(model),
        "action_heads": pack_action_heads(model) if pack_heads else 0,
    }
