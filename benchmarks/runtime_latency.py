"""Per-decision latency of the on-device runtime against eager torch, in the same run.

    python benchmarks/runtime_latency.py [--checkpoint dtac.pt] [--tac-checkpoint tac.pt]
                                         [--calls 20000] [--out results/runtime_latency.json]

* DTAC actor at batch 1 (one UE's decision): ONNX Runtime FP32, INT8 static (QDQ) and
  INT8 dynamic through ``edgepilot.edge_agent.runtime.PolicyRuntime`` (``infer``: checks + the
  actor; ``decide``: plus decode_actions), and the same actor in eager torch;
* TAC actor at N = 30 UEs (one round): ONNX Runtime FP32 against eager torch;
* artifact sizes and the INT8 decision agreement on 10,000 simulator states.

One thread everywhere (OMP_NUM_THREADS=1, torch.set_num_threads(1), onnxruntime
intra_op_num_threads=1), pinned to one core. The candidates are timed in interleaved
rounds so a change of machine load hits all of them alike. Figures: p50 and p99 in
microseconds, and the ratio torch / onnxruntime of the medians.

Also measured, to read the p99 against: the machine's own interruptions of a core that
runs nothing but a clock loop (how often, how long). A call of T microseconds is hit by
one with a probability of about rate x T; once that exceeds 1 %, the p99 is an
interrupted call, i.e. the p50 plus a typical interruption, whatever the model does.

Without ``--checkpoint`` the DTAC actor is the shipped trained policy
``edgepilot/models/policies/dtac_fig5.pt`` (or, where it is absent, the quickly fitted reference
actor of ``tests.helpers.reference_actor``), and the TAC actor a freshly initialised one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import pin_one_core, write_json  # noqa: E402

pin_one_core()
from edgepilot.models import SHIPPED_DTAC_CHECKPOINT as SHIPPED  # noqa: E402

import numpy as np  # noqa: E402


def percentiles(samples_ns: list[float]) -> dict:
    a = np.asarray(samples_ns) / 1e3
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)), "mean_us": float(a.mean()), "calls": int(a.size)}


def interleaved(candidates: dict, calls: int, rounds: int = 10, warmup: int = 500) -> dict:
    per_round = max(1, calls // rounds)
    samples = {name: [] for name in candidates}
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for name, fn in candidates.items():
            out = samples[name]
            for _ in range(per_round):
                t = clock()
                fn()
                out.append(clock() - t)
    return {name: percentiles(s) for name, s in samples.items()}


def interruptions(seconds: float = 2.0, threshold_ns: int = 2000) -> dict:
    """Gaps of more than ``threshold_ns`` in a tight clock loop on this (pinned) core:
    timer ticks, other processes, the hypervisor. Rate per millisecond and durations."""
    clock = time.perf_counter_ns
    gaps = []
    start = last = clock()
    end = start + int(seconds * 1e9)
    while last < end:
        now = clock()
        if now - last > threshold_ns:
            gaps.append(now - last)
        last = now
    g = np.asarray(gaps or [0], float) / 1e3
    return {"per_ms": len(gaps) / (seconds * 1e3), "p50_us": float(np.percentile(g, 50)),
            "p90_us": float(np.percentile(g, 90)), "busy_fraction": float(g.sum() / (seconds * 1e6))}


def one_gemm_floor():
    """A one-node (6 -> 3 Gemm) model through the same bound onnxruntime call: the
    machine's per-call floor at the time of the run, to read the other figures against."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "floor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3])],
        [numpy_helper.from_array(np.ones((3, 6), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x, y = np.ones((1, 6), np.float32), np.empty((1, 3), np.float32)
    io = sess.io_binding()
    io.bind_input("x", "cpu", 0, np.float32, [1, 6], x.ctypes.data)
    io.bind_output("y", "cpu", 0, np.float32, [1, 3], y.ctypes.data)
    run, binding, opts = sess._sess.run_with_iobinding, io._iobinding, ort.RunOptions()
    return lambda: run(binding, opts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=SHIPPED if SHIPPED.is_file() else None,
                    help="DTAC checkpoint (default: edgepilot/models/policies/dtac_fig5.pt, else the fitted reference actor)")
    ap.add_argument("--tac-checkpoint", type=Path, help="TAC checkpoint (default: a freshly initialised actor)")
    ap.add_argument("--calls", type=int, default=20_000, help="timed calls per candidate")
    ap.add_argument("--states", type=int, default=10_000, help="parity states")
    ap.add_argument("--min-agreement", type=float, default=0.99, help="INT8 target: layers kept FP32 until reached (0: all INT8)")
    ap.add_argument("--out", default="results/runtime_latency.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    load_before = list(os.getloadavg())
    from edgepilot.cloud_trainer.checkpoint import load_actor
    from edgepilot.cloud_trainer.envs.simulator import sample_local_states
    from edgepilot.cloud_trainer.scenario import load_scenario
    from edgepilot.edge_agent.runtime import PolicyRuntime
    from edgepilot.export.pipeline import export_checkpoint
    from tests.helpers.export_fixtures import keypair, reference_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="edgepilot-bench-"))
    dtac_ckpt = args.checkpoint or reference_checkpoint(tmp, "dtac")
    tac_ckpt = args.tac_checkpoint or reference_checkpoint(tmp, "tac")
    priv, pub = keypair(tmp)
    print(f"exporting {dtac_ckpt} for the laptop profile (fp32, int8_static, int8_dynamic; parity on {args.states} states)", file=sys.stderr)
    dtac_bundle = tmp / "dtac.bundle"
    report = export_checkpoint(dtac_ckpt, "laptop", dtac_bundle, precisions=["fp32", "int8_static", "int8_dynamic"],
                               parity_count=args.states, min_agreement=args.min_agreement, on_parity_failure="warn",
                               signing_key=priv, progress=lambda m: print(f"  {m}", file=sys.stderr))
    tac_bundle = tmp / "tac.bundle"
    export_checkpoint(tac_ckpt, "laptop", tac_bundle, precisions=["fp32"], parity_count=1200, min_agreement=0.0, signing_key=priv)

    runtimes = {p: PolicyRuntime.from_bundle(dtac_bundle, [pub], profile="laptop", precision=p, intra_op_threads=1)
                for p in ("fp32", "int8_static", "int8_dynamic")}
    actor, _ = load_actor(dtac_ckpt)
    state = sample_local_states(load_scenario("fig5"), 1, seed=99).astype(np.float32)  # (1, 6): one UE
    x_torch = torch.as_tensor(state)

    def torch_call():
        with torch.inference_mode():
            actor(x_torch)

    # the baseline of the packed heads (edgepilot.export.onnx_export.pack_action_heads): the same
    # FP32 artifact with the four heads kept, in the same runtime
    from edgepilot.export.onnx_export import export_actor, write_onnxruntime_cpu_variant
    from edgepilot.hardware.profiles import load_profile

    laptop = load_profile("laptop")
    four_heads, _ = write_onnxruntime_cpu_variant(export_actor(actor, "dtac", tmp / "dtac_base.onnx", laptop.opset, ort_contrib_ops=True),
                                                  tmp / "dtac_four_heads.onnx", laptop.opset, pack_heads=False)
    four = PolicyRuntime(runtimes["fp32"].manifest, {"path": four_heads.name, "format": "onnx", "precision": "fp32"},
                         four_heads.read_bytes(), laptop, ["CPUExecutionProvider"], intra_op_threads=1)
    floor = one_gemm_floor()
    one, one4 = runtimes["fp32"]._one, four._one  # the bound batch-1 calls: the artifacts alone, no Python checks
    one.input[...] = state
    one4.input[...] = state
    candidates = {
        "floor_one_gemm_ort": floor,
        "torch_eager": torch_call,
        "ort_fp32_bound_call": lambda: one.run(one.binding, one.options),
        "ort_fp32_infer": lambda: runtimes["fp32"].infer(state),
        "ort_fp32_decide": lambda: runtimes["fp32"].decide(state),
        "ort_fp32_four_heads_bound_call": lambda: one4.run(one4.binding, one4.options),
        "ort_fp32_four_heads_infer": lambda: four.infer(state),
        "ort_fp32_four_heads_decide": lambda: four.decide(state),
        "ort_int8_static_infer": lambda: runtimes["int8_static"].infer(state),
        "ort_int8_dynamic_infer": lambda: runtimes["int8_dynamic"].infer(state),
    }
    print("measuring this core's interruptions", file=sys.stderr)
    irq_before = interruptions()
    print(f"timing the DTAC actor at batch 1 ({args.calls} calls each, interleaved)", file=sys.stderr)
    dtac = interleaved(candidates, args.calls)
    irq_after = interruptions()
    torch_p50 = dtac["torch_eager"]["p50_us"]
    for fig in dtac.values():
        fig["speedup_vs_torch_p50"] = torch_p50 / fig["p50_us"]

    tac_rt = PolicyRuntime.from_bundle(tac_bundle, [pub], profile="laptop", intra_op_threads=1)
    tac_actor, _ = load_actor(tac_ckpt)
    joint = sample_local_states(load_scenario("fig5"), 30, seed=98).astype(np.float32)[None]
    edges = np.random.default_rng(0).integers(0, 5, (1, 30))
    jt, et = torch.as_tensor(joint), torch.as_tensor(edges)

    def tac_torch():
        with torch.inference_mode():
            tac_actor(jt, et)

    print("timing the TAC actor at N = 30", file=sys.stderr)
    tac = interleaved({"torch_eager": tac_torch, "ort_fp32_infer": lambda: tac_rt.infer(joint, edges)}, max(2000, args.calls // 5))
    for fig in tac.values():
        fig["speedup_vs_torch_p50"] = tac["torch_eager"]["p50_us"] / fig["p50_us"]

    sizes = {p: f["size_bytes"] for p, f in report["variants"].items()}
    agreement = {p: {k: f.get(k) for k in ("offload_agreement", "channel_agreement", "decision_agreement", "max_abs_error_all_heads",
                                           "fp32_layers", "selection_agreement")}
                 for p, f in report["variants"].items()}
    import onnxruntime
    result = {
        "benchmark": "runtime_latency",
        "run_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "versions": {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__},
        "threads": 1,
        "load_average_before_after": [load_before, list(os.getloadavg())],
        "checkpoint": str(args.checkpoint or "reference actor (tests.helpers.reference_actor, fitted)"),
        "dtac_batch1": dtac,
        "tac_n30": tac,
        "artifact_bytes": sizes,
        "parity_states": args.states,
        "parity": agreement,
        "onnx_nodes": report["onnx"]["nodes"],
        "onnx_nodes_before_rewrites": report["onnx"]["base_nodes"],
        "onnx_rewrites": report["onnx"]["rewrites"],
        "onnxruntime_cpu_kernels": report["onnx"]["onnxruntime_cpu_kernels"],
        "int8_static_activations": report.get("int8_static_activations"),
        # the packed heads against the four-head artifact, same run: p50 of four heads / p50 packed
        "packed_heads_speedup_p50": {c: dtac[f"ort_fp32_four_heads_{c}"]["p50_us"] / dtac[f"ort_fp32_{c}"]["p50_us"]
                                     for c in ("bound_call", "infer", "decide")},
        "interruptions_before_after": [irq_before, irq_after],
        "interrupted_call_fraction_at_fp32_infer_p50": irq_before["per_ms"] * dtac["ort_fp32_infer"]["p50_us"] / 1e3,
        "targets": {
            "dtac_ort_fp32_p99_under_20us": dtac["ort_fp32_infer"]["p99_us"] < 20,
            "dtac_ort_fp32_decide_p99_under_20us": dtac["ort_fp32_decide"]["p99_us"] < 20,
            "dtac_ort_fp32_4x_faster_than_torch": dtac["ort_fp32_infer"]["speedup_vs_torch_p50"] >= 4,
            "int8_static_agreement_ge_99": min(agreement["int8_static"]["offload_agreement"], agreement["int8_static"]["channel_agreement"]) >= 0.99,
            "int8_dynamic_agreement_ge_99": min(agreement["int8_dynamic"]["offload_agreement"], agreement["int8_dynamic"]["channel_agreement"]) >= 0.99,
        },
    }
    print(f"\nload average before / after: {[round(x, 2) for x in load_before]} / {[round(x, 2) for x in result['load_average_before_after'][1]]}")
    print(f"interruptions of this core: {irq_before['per_ms']:.2f} / ms, median {irq_before['p50_us']:.1f} us, p90 {irq_before['p90_us']:.1f} us "
          f"(after: {irq_after['per_ms']:.2f} / ms, {irq_after['p50_us']:.1f} us); share of fp32 infer calls hit "
          f"~{100 * result['interrupted_call_fraction_at_fp32_infer_p50']:.1f} %")
    k = report["onnx"]["onnxruntime_cpu_kernels"]
    print(f"DTAC FP32 artifact: {report['onnx']['base_nodes']} ONNX nodes exported -> {report['onnx']['nodes']} after the rewrites "
          f"{report['onnx']['rewrites']} -> {k['kernels']} onnxruntime kernels {k['ops']}")
    print("\nDTAC actor, batch 1, one thread (microseconds)")
    print(f"{'candidate':32s} {'p50':>8s} {'p99':>8s} {'x torch':>8s}")
    for name, fig in dtac.items():
        print(f"{name:32s} {fig['p50_us']:8.1f} {fig['p99_us']:8.1f} {fig['speedup_vs_torch_p50']:8.1f}")
    print("packed heads vs four heads (p50 ratio, same run): "
          + ", ".join(f"{c} {r:.2f}x" for c, r in result["packed_heads_speedup_p50"].items()))
    print("\nTAC actor, N = 30 (microseconds)")
    for name, fig in tac.items():
        print(f"{name:32s} {fig['p50_us']:8.1f} {fig['p99_us']:8.1f} {fig['speedup_vs_torch_p50']:8.1f}")
    print(f"\nartifact bytes: {sizes}")
    for p, a in agreement.items():
        print(f"parity {p:13s} offload {a['offload_agreement']:.4f} channel {a['channel_agreement']:.4f} "
              f"joint {a['decision_agreement']:.4f} max|err| {a['max_abs_error_all_heads']:.2e}"
              + (f" INT8 activations {result['int8_static_activations']}" if p == "int8_static" else "")
              + (f" FP32 Gemms {a['fp32_layers']}" if a.get("fp32_layers") is not None else ""))
    print(f"targets: {result['targets']}")
    path = write_json(args.out, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
