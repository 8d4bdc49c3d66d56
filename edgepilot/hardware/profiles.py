"""Hardware profiles: what each target device can run, read from ``hardware/profiles/*.yaml``.

A profile names the ONNX opset its inference stack parses, the precisions it supports
(``fp32``, ``fp16``, ``int8_dynamic``, ``int8_static``), the execution providers to try
in order, the TensorRT version and workspace limit, and the min / opt / max shapes of
the TensorRT optimization profile. The exporter reads a profile to decide what to
build; the exporter copies it into the bundle manifest, so the device runtime needs no
profile files of its own.

Torch-free and pydantic-free (stdlib + PyYAML): the device runtime imports this module
too, for :func:`detect_local_profile`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

PROFILE_DIR = Path(__file__).parent / "profiles"

#: Every precision an exporter can build; a profile lists the subset its device runs.
PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_static")
SHAPE_AXES = ("batch", "ues", "rounds")
_DEVICE_KINDS = ("jetson", "cuda", "cpu")


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max of one dynamic axis (TensorRT optimization profile)."""

    min: int
    opt: int
    max: int

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.min, self.opt, self.max)


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    description: str
    device_kind: str  # "jetson" | "cuda" | "cpu"
    opset: int
    precisions: tuple[str, ...]
    preferred_precision: str
    execution_providers: tuple[str, ...]
    shapes: dict[str, ShapeRange]
    workspace_mib: int = 0
    intra_op_threads: int = 1
    onnx_ir_version: int | None = None
    ort_contrib_ops: bool = False  # onnxruntime is the only runtime: its contrib ops may be used
    tensorrt_version: str | None = None
    compute_capability: str | None = None
    jetpack: str | None = None
    python: str | None = None
    cpu_hz: float | None = None  # CPU clock a task computed on the device runs at (F_UE of eq. 2); emulation uses it
    match: tuple[str, ...] = field(default_factory=tuple)

    def supports(self, precision: str) -> bool:
        return precision in self.precisions

    @property
    def has_tensorrt(self) -> bool:
        return self.tensorrt_version is not None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["precisions"] = list(self.precisions)
        d["execution_providers"] = list(self.execution_providers)
        d["match"] = list(self.match)
        d["shapes"] = {k: asdict(v) for k, v in self.shapes.items()}
        return d

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "HardwareProfile":
        return _parse(data, source)


def _require(data: dict, key: str, kind, source: str):
    if key not in data:
        raise ProfileError(f"{source}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProfileError(f"{source}: field {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _parse(data: dict, source: str) -> HardwareProfile:
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: expected a mapping at the top level")
    known = {f for f in HardwareProfile.__dataclass_fields__}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(f"{source}: unknown field(s) {', '.join(unknown)}")
    name = _require(data, "name", str, source)
    kind = _require(data, "device_kind", str, source)
    if kind not in _DEVICE_KINDS:
        raise ProfileError(f"{source}: device_kind must be one of {_DEVICE_KINDS}, got {kind!r}")
    opset = _require(data, "opset", int, source)
    if not 13 <= opset <= 21:
        raise ProfileError(f"{source}: opset must be in [13, 21], got {opset}")
    precisions = tuple(_require(data, "precisions", list, source))
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise ProfileError(f"{source}: precisions must be a non-empty subset of {PRECISIONS}, got {list(precisions)}")
    preferred = _require(data, "preferred_precision", str, source)
    if preferred not in precisions:
        raise ProfileError(f"{source}: preferred_precision {preferred!r} is not in precisions {list(precisions)}")
    providers = tuple(_require(data, "execution_providers", list, source))
    if not providers or providers[-1] != "CPUExecutionProvider":
        raise ProfileError(f"{source}: execution_providers must end with CPUExecutionProvider")
    raw_shapes = _require(data, "shapes", dict, source)
    shapes = {}
    for axis in SHAPE_AXES:
        r = raw_shapes.get(axis)
        if not isinstance(r, dict) or set(r) != {"min", "opt", "max"}:
            raise ProfileError(f"{source}: shapes.{axis} must have min, opt and max")
        lo, opt, hi = (r[k] for k in ("min", "opt", "max"))
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, opt, hi)) or not 1 <= lo <= opt <= hi:
            raise ProfileError(f"{source}: shapes.{axis} needs integers 1 <= min <= opt <= max, got {r}")
        shapes[axis] = ShapeRange(lo, opt, hi)
    workspace = data.get("workspace_mib", 0)
    threads = data.get("intra_op_threads", 1)
    if not isinstance(workspace, int) or workspace < 0:
        raise ProfileError(f"{source}: workspace_mib must be an integer >= 0, got {workspace!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ProfileError(f"{source}: intra_op_threads must be an integer >= 1, got {threads!r}")
    trt = data.get("tensorrt_version")
    if trt is not None and (not isinstance(trt, str) or not trt.replace(".", "").isdigit()):
        raise ProfileError(f"{source}: tensorrt_version must be a version string such as '8.2', got {trt!r}")
    if data.get("ort_contrib_ops") and trt is not None:
        raise ProfileError(f"{source}: ort_contrib_ops needs a profile without TensorRT (TensorRT cannot parse them)")
    if trt is not None and workspace <= 0:
        raise ProfileError(f"{source}: a TensorRT profile needs workspace_mib > 0")
    cpu_hz = data.get("cpu_hz")
    if cpu_hz is not None and (isinstance(cpu_hz, bool) or not isinstance(cpu_hz, (int, float)) or not cpu_hz > 0):
        raise ProfileError(f"{source}: cpu_hz must be a positive number of hertz, got {cpu_hz!r}")
    return HardwareProfile(
        name=name,
        description=str(data.get("description", "")),
        device_kind=kind,
        opset=opset,
        precisions=precisions,
        preferred_precision=preferred,
        execution_providers=providers,
        shapes=shapes,
        workspace_mib=workspace,
        intra_op_threads=threads,
        onnx_ir_version=data.get("onnx_ir_version"),
        ort_contrib_ops=bool(data.get("ort_contrib_ops", False)),
        tensorrt_version=trt,
        compute_capability=None if data.get("compute_capability") is None else str(data["compute_capability"]),
        jetpack=None if data.get("jetpack") is None else str(data["jetpack"]),
        python=None if data.get("python") is None else str(data["python"]),
        cpu_hz=None if cpu_hz is None else float(cpu_hz),
        match=tuple(str(m).lower() for m in data.get("match", []) or []),
    )


def list_profiles(directory: str | os.PathLike | None = None) -> list[str]:
    return sorted(p.stem for p in Path(directory or PROFILE_DIR).glob("*.yaml"))


def load_profile(name_or_path: str | os.PathLike, directory: str | os.PathLike | None = None) -> HardwareProfile:
    """A profile by name (``jetson-nano``) or by YAML path."""
    path = Path(name_or_path)
    if not path.is_file():
        path = Path(directory or PROFILE_DIR) / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ProfileError(
                f"unknown hardware profile {str(name_or_path)!r}: known profiles are {', '.join(list_profiles(directory))}"
            )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from None
    return _parse(data, str(path))


def _read_text(path: str) -> str:
    try:
        return Path(path).read_bytes().replace(b"\x00", b"").decode(errors="replace").strip()
    except OSError:
        return ""


def detect_local_profile(
    *,
    tegra_release: str = "/etc/nv_tegra_release",
    device_tree_model: str = "/proc/device-tree/model",
    providers: list[str] | None = None,
) -> str:
    """Best guess of the profile of the machine this runs on.

    A Jetson is recognised by ``/etc/nv_tegra_release`` or the device-tree model
    string (Orin Nano versus the original Nano by that string or the L4T release); a
    machine whose onnxruntime offers the CUDA execution provider is taken as the edge
    server; anything else is ``laptop`` (CPU).
    """
    model = _read_text(device_tree_model).lower()
    release = _read_text(tegra_release).lower()
    if model or release:
        for name in list_profiles():
            profile = load_profile(name)
            if profile.device_kind == "jetson" and any(m in model for m in profile.match):
                return name
        if "orin" in model or "r36" in release or "r35" in release:
            return "jetson-orin-nano"
        if "jetson" in model or "nvidia" in model or release:
            return "jetson-nano"  # L4T R32 (JetPack 4.x) runs only on the Maxwell / Pascal boards
    if providers is None:
        try:
            import onnxruntime

            providers = onnxruntime.get_available_providers()
        except ImportError:
            providers = []
    if "CUDAExecutionProvider" in providers or "TensorrtExecutionProvider" in providers:
        return "rtx4090-edge-server"
    return "laptop"
