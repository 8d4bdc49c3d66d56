"""``edgepilot export``: checkpoint -> ONNX variants -> parity -> TensorRT -> bundle."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgepilot.edge_agent.actions import PACKED_OUTPUT
from edgepilot.export.bundle import build_bundle, load_private_key
from edgepilot.export.onnx_export import (ExportError, check_model, export_actor, input_specs, onnxruntime_kernels, output_specs,
                                write_onnxruntime_cpu_variant)
from edgepilot.export.parity import compare, ort_outputs, parity_states, passes, torch_outputs
from edgepilot.export.quantize import StateCalibrationReader, build_variant, int8_mixed, quantized_layers
from edgepilot.export.tensorrt import ENGINE_PRECISIONS, TensorRTUnavailable, build_engine, plan_engine, tensorrt_available, trtexec_command
from edgepilot.hardware.profiles import PRECISIONS, load_profile


class ParityError(ExportError):
    """A variant's decisions agree with torch less than the threshold."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _scenario_for(ckpt: dict, scenario_arg):
    from edgepilot.cloud_trainer.scenario import load_scenario, scenario_from_dict

    if scenario_arg is not None:
        sc = load_scenario(scenario_arg)
    elif isinstance(ckpt.get("scenario"), dict):
        sc = scenario_from_dict(ckpt["scenario"], "checkpoint scenario")
    else:
        sc = load_scenario(None)
    return sc


def export_checkpoint(
    checkpoint: str | os.PathLike,
    profile: str | os.PathLike,
    out: str | os.PathLike,
    *,
    precisions: list[str] | None = None,
    scenario: str | None = None,
    parity_count: int = 10_000,
    calibration_count: int = 2_000,
    min_agreement: float = 0.99,
    on_parity_failure: str = "fail",
    signing_key: str | os.PathLike | None = None,
    version: str | None = None,
    seed: int = 0,
    build_engines: bool = True,
    mixed_precision: bool = True,
    progress: Callable[[str], None] = lambda msg: None,
) -> dict:
    """Export ``checkpoint`` for hardware ``profile`` (a name or a YAML path) into the bundle ``out``.

    Returns the parity report (also written into the bundle as parity.json). Raises
    :class:`ParityError` when a variant's decision agreement is below ``min_agreement``
    and ``on_parity_failure`` is "fail" ("drop" leaves the variant out instead, "warn"
    keeps it, marked as failed in the manifest - for measuring, not for fleets).
    With ``mixed_precision`` the INT8 variants keep the fewest Gemm layers in FP32 that
    reach ``min_agreement`` on the calibration states (see :func:`edgepilot.export.quantize.int8_mixed`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a ~8k-parameter actor: extra threads only contend
    try:
        return _export(checkpoint, profile, out, precisions, scenario, parity_count, calibration_count, min_agreement,
                       on_parity_failure, signing_key, version, seed, build_engines, mixed_precision, progress)
    finally:
        torch.set_num_threads(threads)


def _export(checkpoint, target, out, precisions, scenario, parity_count, calibration_count, min_agreement,
            on_parity_failure, signing_key, version, seed, build_engines, mixed_precision, progress) -> dict:
    from edgepilot.cloud_trainer.checkpoint import load_actor
    from edgepilot.cloud_trainer.models import count_parameters

    profile = load_profile(target)
    requested = list(precisions) if precisions else list(profile.precisions)
    for p in requested:
        if p not in PRECISIONS:
            raise ExportError(f"unknown precision {p!r} (choose from {', '.join(PRECISIONS)})")
        if not profile.supports(p):
            raise ExportError(f"hardware profile {profile.name} does not support {p} (it supports {', '.join(profile.precisions)})")
    if "fp32" not in requested:
        requested.insert(0, "fp32")  # the reference variant every runtime can fall back on
    if on_parity_failure not in ("fail", "drop", "warn"):
        raise ExportError(f"on_parity_failure must be 'fail', 'drop' or 'warn', got {on_parity_failure!r}")
    key = load_private_key(signing_key) if signing_key is not None else None

    progress(f"loading {checkpoint}")
    actor, ckpt = load_actor(checkpoint)
    kind = ckpt["kind"]
    sc = _scenario_for(ckpt, scenario)
    scenario_hash = ckpt.get("scenario_hash") or sc.scenario_hash()
    ckpt_sha = _sha256(Path(checkpoint))
    version = version or f"{kind}-{ckpt_sha[:12]}"
    ues = profile.shapes["ues"].opt
    chunk = profile.shapes["batch"].opt if kind == "dtac" else profile.shapes["rounds"].opt

    report: dict = {
        "model_kind": kind, "checkpoint_sha256": ckpt_sha, "target": profile.name, "opset": profile.opset,
        "scenario_hash": scenario_hash, "states": parity_count, "calibration_states": calibration_count,
        "batch": chunk, "min_agreement": min_agreement, "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="edgepilot-export-") as tmp:
        work = Path(tmp)
        progress(f"sampling {calibration_count} calibration and {parity_count} parity states from the simulator ({sc.name})")
        cal_states, cal_edges = parity_states(sc, kind, calibration_count, seed=seed + 1, ues=ues)
        ev_states, ev_edges = parity_states(sc, kind, parity_count, seed=seed + 2, ues=ues)
        # mixed precision picks its FP32 layers on states seen neither in calibration nor in parity
        sel_states, sel_edges = parity_states(sc, kind, max(parity_count, calibration_count), seed=seed + 3, ues=ues)
        reference = torch_outputs(actor, kind, ev_states, ev_edges)

        progress(f"exporting the {kind} actor to ONNX opset {profile.opset}")
        # ``base``: the exported graph every other precision is built from (the state
        # normalisation kept as its own nodes, so INT8 / FP16 see normalised activations)
        base_name = f"{kind}_base.onnx" if profile.ort_contrib_ops else f"{kind}_fp32.onnx"
        base = export_actor(actor, kind, work / base_name, profile.opset, profile.onnx_ir_version,
                            ort_contrib_ops=profile.ort_contrib_ops)
        base_info = check_model(base, profile.opset, allow_contrib=profile.ort_contrib_ops)
        fp32_artifact, rewrites, fp32_info = base, {}, base_info
        if profile.ort_contrib_ops:
            # onnxruntime is the only runtime: the FP32 artifact also gets the exact
            # batch-1 rewrites (fewer kernels per decision; parity below checks them)
            fp32_artifact, rewrites = write_onnxruntime_cpu_variant(base, work / f"{kind}_fp32.onnx", profile.opset)
            fp32_info = check_model(fp32_artifact, profile.opset, allow_contrib=True)
            progress(f"onnxruntime rewrites of the FP32 artifact: {base_info['nodes']} -> {fp32_info['nodes']} nodes ({rewrites})")
        report["onnx"] = fp32_info | {"base_nodes": base_info["nodes"], "rewrites": rewrites,
                                      "onnxruntime_cpu_kernels": onnxruntime_kernels(fp32_artifact)}
        files: dict[str, bytes] = {}
        artifacts: list[dict] = []
        failures = []
        reader = StateCalibrationReader(kind, cal_states, cal_edges, chunk=250 if kind == "dtac" else 8 * ues)
        # TensorRT takes symmetric INT8 only; onnxruntime-only profiles get the more
        # accurate asymmetric activations (see edgepilot.export.quantize)
        symmetric = profile.has_tensorrt
        report["int8_static_activations"] = "symmetric" if symmetric else "asymmetric"
        for precision in requested:
            progress(f"building {precision} and checking parity on {parity_count} states")
            keep_fp32, calib_agreement = [], None
            if precision in ("int8_static", "int8_dynamic") and mixed_precision and min_agreement > 0:
                target_cal = min(1.0, min_agreement + 0.002)  # a little headroom: parity runs on other states
                path, keep_fp32, calib_agreement = int8_mixed(precision, base, work / f"{kind}_{precision}.onnx", reader, target_cal,
                                                              symmetric_activations=symmetric, judge_states=(sel_states, sel_edges))
                if keep_fp32:
                    progress(f"{precision}: kept {len(keep_fp32)} of {len(quantized_layers(base))} Gemm layers in FP32 "
                             f"({', '.join(keep_fp32)}) for decision agreement {calib_agreement:.4f} on the selection states")
            elif precision == "fp32":
                path = fp32_artifact
            else:
                path = build_variant(precision, base, work / f"{kind}_{precision}.onnx", reader, symmetric_activations=symmetric)
            if precision != "fp32":
                check_model(path, profile.opset, allow_contrib=profile.ort_contrib_ops)
            figures = compare(reference, ort_outputs(str(path), kind, ev_states, ev_edges, chunk=chunk))
            figures["size_bytes"] = path.stat().st_size
            if precision.startswith("int8"):
                figures["fp32_layers"] = keep_fp32
                figures["selection_agreement"] = calib_agreement  # vs FP32 on held-out selection states
            ok = passes(figures, min_agreement)
            figures["passed"] = ok
            report["variants"][precision] = figures
            if not ok:
                failures.append(precision)
                if on_parity_failure == "drop" and precision != "fp32":
                    continue
            name = f"artifacts/{path.name}"
            files[name] = path.read_bytes()
            artifacts.append({"path": name, "format": "onnx", "precision": precision, "opset": profile.opset,
                              "size_bytes": len(files[name]), "fp32_layers": keep_fp32,
                              "graph_rewrites": rewrites if precision == "fp32" else {}, "parity": {k: figures[k] for k in (
                                  "max_abs_error", "offload_agreement", "channel_agreement", "decision_agreement")}})
            if precision == "fp32" and rewrites.get("action_heads"):
                # this artifact's own output (pack_action_heads); the manifest's "outputs" are the four heads it decodes to
                artifacts[-1]["outputs"] = [{"name": PACKED_OUTPUT, "dtype": "float32", "shape": ["batch", 5 + actor.cfg.num_channels]}]
        if failures and on_parity_failure == "warn":
            progress(f"WARNING: decision agreement below {min_agreement:.4f} for {', '.join(failures)}; kept (--on-parity-failure warn)")
        elif failures and (on_parity_failure == "fail" or "fp32" in failures):
            summary = ", ".join(
                f"{p}: offload {report['variants'][p]['offload_agreement']:.4f}, channel {report['variants'][p]['channel_agreement']:.4f}"
                for p in failures
            )
            err = ParityError(f"decision agreement below {min_agreement:.4f} on {parity_count} states ({summary}); "
                              f"no bundle written (use --precisions to leave a variant out, or --on-parity-failure drop)")
            err.report = report
            raise err
        report["dropped"] = [p for p in failures if p != "fp32"] if on_parity_failure == "drop" else []
        report["failed"] = failures

        trt_info: dict = {"profile_version": profile.tensorrt_version, "installed": tensorrt_available(), "plans": [], "commands": []}
        if profile.has_tensorrt:
            lines = ["#!/bin/sh", "# Build the TensorRT engines of this bundle on the device (run from the extracted bundle directory).", "set -e"]
            for art in [a for a in artifacts if a["precision"] in ENGINE_PRECISIONS]:
                engine_name = art["path"].replace(".onnx", ".plan")
                plan = plan_engine(kind, profile, art["precision"], work / Path(art["path"]).name, work / Path(engine_name).name)
                cmd = trtexec_command(plan, onnx_name=art["path"], engine_name=engine_name)
                trt_info["plans"].append(plan.to_dict() | {"onnx_path": art["path"], "engine_path": engine_name})
                trt_info["commands"].append(cmd)
                lines.append(cmd)
                if build_engines and trt_info["installed"]:
                    progress(f"building the TensorRT {art['precision']} engine")
                    try:
                        built = build_engine(plan)
                    except TensorRTUnavailable:
                        continue
                    files[engine_name] = built.read_bytes()
                    artifacts.append({"path": engine_name, "format": "tensorrt-plan", "precision": art["precision"],
                                      "tensorrt_version": trt_info["installed"], "size_bytes": len(files[engine_name])})
            files["tensorrt/build_engines.sh"] = ("\n".join(lines) + "\n").encode()
            if not trt_info["installed"]:
                trt_info["note"] = ("TensorRT is not installed where this export ran: no engine is in the bundle; "
                                    "tensorrt/build_engines.sh holds the trtexec commands that build the same engines on the device")
                progress(trt_info["note"])
        report["tensorrt"] = trt_info

        files["parity.json"] = json.dumps(report, indent=2).encode()
        manifest = {
            "model": {"kind": kind, "version": version, "checkpoint_sha256": ckpt_sha,
                      "num_channels": actor.cfg.num_channels, "parameters": count_parameters(actor),
                      "model_config": actor.cfg.to_dict()},
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "target": profile.to_dict(),
            "opset": profile.opset,
            "inputs": input_specs(kind),
            "outputs": output_specs(kind, actor.cfg.num_channels),
            "scenario_hash": scenario_hash,
            "scenario_name": sc.name,
            "artifacts": artifacts,
            "tensorrt": {k: v for k, v in trt_info.items() if k != "plans"},
            "parity": {"states": parity_count, "min_agreement": min_agreement, "batch": chunk,
                       "variants": {p: {k: f[k] for k in ("max_abs_error_all_heads", "offload_agreement", "channel_agreement", "decision_agreement", "passed")}
                                    for p, f in report["variants"].items()}},
        }
        progress(f"writing {out}" + (" (signed)" if key is not None else " (unsigned)"))
        build_bundle(out, files, manifest, key)
    report["bundle"] = str(out)
    report["signed"] = key is not None
    return report
