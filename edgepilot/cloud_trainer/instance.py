"""One round given explicitly (the ``edgepilot evaluate-round`` input), validated.

All SI units. A field that is missing, of the wrong type or out of its bounds is
reported with its path (``ues.2.offload``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgepilot.edge_agent.system_model import Decision, NetworkParams, RoundTasks

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Ratio = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EdgeServer(_Strict):
    gain_to_cloud: Positive


class UE(_Strict):
    edge: int = Field(ge=0)
    gain: Positive
    input_bits: NonNegative
    output_bits: NonNegative
    cycles_per_bit: NonNegative
    cached: Literal[0, 1]
    offload: Literal[0, 1, 2]
    channel: int = Field(ge=0)
    power_ratio: Ratio
    cpu_ratio: Ratio


class RoundInstance(_Strict):
    channel_bandwidth_hz: Positive
    noise_power_w: Positive
    ue_max_power_w: Positive
    edge_power_w: Positive
    cloud_power_w: Positive
    ue_max_cpu_hz: Positive
    edge_cpu_hz: Positive
    cloud_cpu_hz: Positive
    kappa: NonNegative
    weights: tuple[NonNegative, NonNegative]
    edges: list[EdgeServer] = Field(min_length=1)
    ues: list[UE] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_edges(self) -> "RoundInstance":
        for i, ue in enumerate(self.ues):
            if ue.edge >= len(self.edges):
                raise ValueError(f"ues.{i}.edge: unknown edge index {ue.edge} (there are {len(self.edges)} edges)")
        return self

    def network_params(self) -> NetworkParams:
        return NetworkParams(
            channel_bandwidth_hz=self.channel_bandwidth_hz,
            noise_power_w=self.noise_power_w,
            ue_max_power_w=self.ue_max_power_w,
            edge_power_w=self.edge_power_w,
            cloud_power_w=self.cloud_power_w,
            ue_max_cpu_hz=self.ue_max_cpu_hz,
            edge_cpu_hz=self.edge_cpu_hz,
            cloud_cpu_hz=self.cloud_cpu_hz,
            kappa=self.kappa,
            w_time=self.weights[0],
            w_energy=self.weights[1],
        )

    def tasks(self) -> RoundTasks:
        col = lambda name: [getattr(u, name) for u in self.ues]  # noqa: E731
        return RoundTasks(
            edge=col("edge"),
            gain=col("gain"),
            edge_cloud_gain=[e.gain_to_cloud for e in self.edges],
            input_bits=col("input_bits"),
            output_bits=col("output_bits"),
            cycles_per_bit=col("cycles_per_bit"),
            cached=col("cached"),
        )

    def decision(self) -> Decision:
        col = lambda name: [getattr(u, name) for u in self.ues]  # noqa: E731
        return Decision(col("offload"), col("channel"), col("power_ratio"), col("cpu_ratio"))


class InstanceError(ValueError):
    pass


def parse_instance(data) -> RoundInstance:
    try:
        return RoundInstance.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}" if loc else msg)
        raise InstanceError("invalid round instance:\n  " + "\n  ".join(lines)) from None
