"""Hardware profiles: what each target device can run, read from ``hardware/profiles/*.yaml``.

A profile names the ONNX opset its inference stack parses, the precisions it supports
(``fp32``, ``fp16``, ``int8_dynamic``, ``int8_static``), the execution providers to try
in order, the TensorRT version and workspace limit, and the min / opt / max shapes of
the TensorRT optimization profile. The exporter reads a profile to decide what to
build; the exporter copies it into the bundle manifest, so the device runtime needs no
profile files of its own.

A pydantic model, like every config of the project (unknown fields are refused, every
error names the file and the field as a :class:`ProfileError`); torch-free, and the
device runtime imports this module too (:func:`detect_local_profile`), so its
annotations are Python 3.8's (``typing.Optional`` / ``Tuple`` / ``Dict``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator, model_validator

PROFILE_DIR = Path(__file__).parent / "profiles"

#: Every precision an exporter can build; a profile lists the subset its device runs.
PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_static")
SHAPE_AXES = ("batch", "ues", "rounds")
DEVICE_KINDS = ("jetson", "cuda", "cpu")

Precision = Literal["fp32", "fp16", "int8_dynamic", "int8_static"]


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the field."""


class ShapeRange(BaseModel):
    """min / opt / max of one dynamic axis (TensorRT optimization profile)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: StrictInt
    opt: StrictInt
    max: StrictInt

    @model_validator(mode="after")
    def _ordered(self) -> "ShapeRange":
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"needs integers 1 <= min <= opt <= max, got min {self.min}, opt {self.opt}, max {self.max}")
        return self

    def as_tuple(self) -> Tuple[int, int, int]:
        return (self.min, self.opt, self.max)


def _text_or_none(value: Any) -> Optional[str]:
    """YAML reads ``jetpack: 4.6`` as a number: keep the version as written."""
    return None if value is None else str(value)


class HardwareProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr
    description: str = ""
    device_kind: Literal["jetson", "cuda", "cpu"]
    opset: StrictInt = Field(ge=13, le=21)
    precisions: Tuple[Precision, ...]
    preferred_precision: StrictStr
    execution_providers: Tuple[StrictStr, ...]
    shapes: Dict[str, ShapeRange]
    workspace_mib: StrictInt = Field(0, ge=0)
    intra_op_threads: StrictInt = Field(1, ge=1)
    onnx_ir_version: Optional[StrictInt] = None
    ort_contrib_ops: StrictBool = False  # onnxruntime is the only runtime: its contrib ops may be used
    tensorrt_version: Optional[StrictStr] = Field(None, pattern=r"^[0-9]+(\.[0-9]+)*$",
                                                 description="a version string such as '8.2'")
    compute_capability: Optional[str] = None
    jetpack: Optional[str] = None
    python: Optional[str] = None
    # CPU clock a task computed on the device runs at (F_UE of eq. 2); emulation uses it
    cpu_hz: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    match: Tuple[str, ...] = ()

    @field_validator("compute_capability", "jetpack", "python", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Optional[str]:
        return _text_or_none(value)

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> str:
        return "" if value is None else str(value)

    @field_validator("cpu_hz", mode="before")
    @classmethod
    def _hertz(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"must be a positive number of hertz, got {value!r}")
        return value

    @field_validator("match", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return () if value is None else [str(m).lower() for m in value] if isinstance(value, list) else value

    @field_validator("precisions")
    @classmethod
    def _some_precision(cls, value: Tuple[str, ...]) -> Tuple[str, ...]:
        if not value:
            raise ValueError(f"must list at least one of {', '.join(PRECISIONS)}")
        return value

    @field_validator("shapes")
    @classmethod
    def _axes(cls, value: Dict[str, ShapeRange]) -> Dict[str, ShapeRange]:
        missing = [a for a in SHAPE_AXES if a not in value]
        unknown = sorted(set(value) - set(SHAPE_AXES))
        if missing or unknown:
            raise ValueError(f"needs exactly the axes {', '.join(SHAPE_AXES)}"
                             + (f"; missing {', '.join(missing)}" if missing else "")
                             + (f"; unknown {', '.join(unknown)}" if unknown else ""))
        return {a: value[a] for a in SHAPE_AXES}

    @model_validator(mode="after")
    def _consistent(self) -> "HardwareProfile":
        if self.preferred_precision not in self.precisions:
            raise ValueError(f"preferred_precision {self.preferred_precision!r} is not in precisions {list(self.precisions)}")
        if not self.execution_providers or self.execution_providers[-1] != "CPUExecutionProvider":
            raise ValueError("execution_providers must end with CPUExecutionProvider")
        if self.ort_contrib_ops and self.tensorrt_version is not None:
            raise ValueError("ort_contrib_ops needs a profile without TensorRT (TensorRT cannot parse them)")
        if self.tensorrt_version is not None and self.workspace_mib <= 0:
            raise ValueError("a TensorRT profile needs workspace_mib > 0")
        return self

    def supports(self, precision: str) -> bool:
        return precision in self.precisions

    @property
    def has_tensorrt(self) -> bool:
        return self.tensorrt_version is not None

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON types, in field order (the bundle manifest's ``target``)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "HardwareProfile":
        """Validate ``data``; a :class:`ProfileError` naming ``source`` and the field otherwise."""
        if not isinstance(data, dict):
            raise ProfileError(f"{source}: expected a mapping at the top level")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ProfileError(f"{source}: {_describe(err)}") from None


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()))
        msg = str(e.get("msg", "invalid"))
        msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
        kind = e.get("type")
        if kind == "extra_forbidden":
            parts.append(f"unknown field {loc!r}")
        elif kind == "missing":
            parts.append(f"missing field {loc!r}")
        elif not loc:
            parts.append(msg)
        else:
            got = e.get("input")
            shown = f", got {got!r}" if kind != "value_error" and not isinstance(got, (dict, list)) else ""
            parts.append(f"{loc}: {msg}{shown}")
    return "; ".join(parts)


def list_profiles(directory: Optional[Union[str, "os.PathLike[str]"]] = None) -> List[str]:
    return sorted(p.stem for p in Path(directory or PROFILE_DIR).glob("*.yaml"))


def load_profile(name_or_path: Union[str, "os.PathLike[str]"],
                 directory: Optional[Union[str, "os.PathLike[str]"]] = None) -> HardwareProfile:
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
    return HardwareProfile.from_dict(data, str(path))


def _read_text(path: str) -> str:
    try:
        return Path(path).read_bytes().replace(b"\x00", b"").decode(errors="replace").strip()
    except OSError:
        return ""


def detect_local_profile(
    *,
    tegra_release: str = "/etc/nv_tegra_release",
    device_tree_model: str = "/proc/device-tree/model",
    providers: Optional[List[str]] = None,
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
