"""TensorRT engine builds from the exported ONNX, one optimization profile per build.

One :class:`EnginePlan` (input min / opt / max shapes from the hardware profile,
precision flags, workspace limit) drives both the TensorRT Python API builder
(:func:`build_engine`, which runs only where ``import tensorrt`` works) and the
``trtexec`` command line (:func:`trtexec_command`) that builds the same engine on the
device when TensorRT is not installed where the export runs.

Precision mapping: ``fp32`` -> no flag; ``fp16`` -> FP16; ``int8_static`` (QDQ ONNX,
explicit quantization) -> INT8 + FP16 fallback. ``int8_dynamic`` models use
onnxruntime-only ops (DynamicQuantizeLinear / MatMulInteger) and have no engine.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from edgepilot.edge_agent.actions import DTAC_INPUT, TAC_INPUTS
from edgepilot.edge_agent.system_model import LOCAL_STATE_DIM

ENGINE_PRECISIONS = ("fp32", "fp16", "int8_static")


class TensorRTUnavailable(RuntimeError):
    """``import tensorrt`` failed here."""


@dataclass(frozen=True)
class EnginePlan:
    onnx_path: str
    engine_path: str
    precision: str
    tensorrt_version: str
    workspace_mib: int
    # input name -> (min, opt, max) shapes
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]

    @property
    def flags(self) -> list[str]:
        return {"fp32": [], "fp16": ["FP16"], "int8_static": ["INT8", "FP16"]}[self.precision]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flags"] = self.flags
        d["shapes"] = {k: {"min": list(v[0]), "opt": list(v[1]), "max": list(v[2])} for k, v in self.shapes.items()}
        return d


def plan_engine(kind: str, profile, precision: str, onnx_path: str | os.PathLike, engine_path: str | os.PathLike) -> EnginePlan:
    """The build a hardware profile asks for; raises ValueError where it has none."""
    if not profile.has_tensorrt:
        raise ValueError(f"hardware profile {profile.name!r} has no TensorRT")
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"no TensorRT engine for precision {precision!r} (engines: {', '.join(ENGINE_PRECISIONS)})")
    if not profile.supports(precision):
        raise ValueError(f"hardware profile {profile.name!r} does not support {precision} (it supports {', '.join(profile.precisions)})")
    if kind == "dtac":
        b = profile.shapes["batch"]
        shapes = {DTAC_INPUT: tuple((n, LOCAL_STATE_DIM) for n in b.as_tuple())}
    elif kind == "tac":
        r, u = profile.shapes["rounds"], profile.shapes["ues"]
        dims = list(zip(r.as_tuple(), u.as_tuple()))
        shapes = {
            TAC_INPUTS[0]: tuple((rr, uu, LOCAL_STATE_DIM) for rr, uu in dims),
            TAC_INPUTS[1]: tuple((rr, uu) for rr, uu in dims),
        }
    else:
        raise ValueError(f"no engine layout for model kind {kind!r}")
    return EnginePlan(str(onnx_path), str(engine_path), precision, profile.tensorrt_version, profile.workspace_mib, shapes)


def _trt_major_minor(version: str) -> tuple[int, int]:
    parts = [int(p) for p in version.split(".")[:2]] + [0]
    return parts[0], parts[1]


def trtexec_command(plan: EnginePlan, onnx_name: str | None = None, engine_name: str | None = None) -> str:
    """The ``trtexec`` line that builds ``plan`` on the device (file names relative to
    the bundle directory unless given). Flag spelling follows the TensorRT version:
    ``--workspace=MiB`` up to 8.3, ``--memPoolSize=workspace:MiB`` from 8.4 (TensorRT
    10 accepts only the latter)."""
    onnx_name = onnx_name or Path(plan.onnx_path).name
    engine_name = engine_name or Path(plan.engine_path).name
    major, minor = _trt_major_minor(plan.tensorrt_version)

    def shape_arg(which: int) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in dims[which])}" for name, dims in plan.shapes.items())

    args = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}"]
    args += [f"--minShapes={shape_arg(0)}", f"--optShapes={shape_arg(1)}", f"--maxShapes={shape_arg(2)}"]
    if (major, minor) < (8, 4):
        args.append(f"--workspace={plan.workspace_mib}")
    else:
        args.append(f"--memPoolSize=workspace:{plan.workspace_mib}")
    if "FP16" in plan.flags:
        args.append("--fp16")
    if "INT8" in plan.flags:
        args.append("--int8")  # the QDQ nodes carry the scales: no calibration cache needed
    if major < 10:
        args.append("--explicitBatch")
    return " ".join(shlex.quote(a) for a in args)


def tensorrt_available() -> str | None:
    """TensorRT's version when ``import tensorrt`` works here, else None."""
    try:
        import tensorrt
    except ImportError:
        return None
    return str(getattr(tensorrt, "__version__", "unknown"))


def build_engine(plan: EnginePlan) -> Path:
    """Build and serialize the engine of ``plan`` with the TensorRT Python API.

    Raises :class:`TensorRTUnavailable` where TensorRT does not import."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise TensorRTUnavailable("TensorRT is not installed here (import tensorrt failed)") from err

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(plan.onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {plan.onnx_path}: {errors}")
    config = builder.create_builder_config()
    workspace = plan.workspace_mib << 20
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # TensorRT 8.2
        config.max_workspace_size = workspace
    for flag in plan.flags:
        if flag == "FP16" and not builder.platform_has_fast_fp16:
            raise RuntimeError("this GPU has no fast FP16; build the fp32 plan instead")
        if flag == "INT8" and not builder.platform_has_fast_int8:
            raise RuntimeError("this GPU has no INT8 (e.g. the original Jetson Nano); build the fp16 plan instead")
        config.set_flag(getattr(trt.BuilderFlag, flag))
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in plan.shapes.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    if hasattr(builder, "build_serialized_network"):
        serialized = builder.build_serialized_network(network, config)
    else:  # pragma: no cover - TensorRT < 8
        serialized = builder.build_engine(network, config).serialize()
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build the engine for {plan.onnx_path}")
    out = Path(plan.engine_path)
    out.write_bytes(bytes(serialized))
    return out
