"""Scenario configuration: one pydantic schema, YAML files, presets.

The defaults are the DTAC paper's Table I. Where the paper leaves a value open, the
field says so in its description ("ours: ...") together with where our choice comes
from. Presets for the paper's Fig. 5, 6 and 7 live in ``cloud_trainer/scenarios/``.

Reading of Table I used here: it lists "6 or 8" edge servers and "86.4 or 115.2 GHz"
of total computation, while the figures use 5 and 7 edge servers. We read the counts
as the computing nodes including the cloud (5 + 1, 7 + 1); 86.4 / 6 = 115.2 / 8 =
14.4 GHz per node on average. The total is split between the cloud and the edge
servers by ``compute.cloud_share``.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgepilot.edge_agent.system_model import NetworkParams

PRESET_DIR = Path(__file__).parent / "scenarios"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Section):
    low: float = Field(ge=0)
    high: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class Topology(_Section):
    num_edge_servers: int = Field(5, ge=1, le=64, description="K; Fig. 5 uses 5, Fig. 6/7 use 7 (Table I: 6 or 8 nodes incl. the cloud)")
    edge_radius_m: float = Field(200.0, gt=0, description="coverage radius of an edge server (Table I: 200, 300 or 600 m)")
    cloud_radius_m: float = Field(300.0, gt=0, description="edge servers sit on a circle of this radius around the cloud (Table I: 300, 400 or 800 m)")
    ues_per_edge_min: int = Field(3, ge=0, le=64, description="UEs per edge server, uniform in [min, max] each episode (Table I: {3, 4, 5})")
    ues_per_edge_max: int = Field(5, ge=1, le=64)
    min_distance_m: float = Field(10.0, gt=0, description="ours: UEs closer than this to their edge server are placed at it (keeps the path loss finite)")

    @model_validator(mode="after")
    def _ordered(self) -> "Topology":
        if self.ues_per_edge_max < self.ues_per_edge_min:
            raise ValueError(f"ues_per_edge_max ({self.ues_per_edge_max}) must be >= ues_per_edge_min ({self.ues_per_edge_min})")
        if self.min_distance_m >= self.edge_radius_m:
            raise ValueError(f"min_distance_m ({self.min_distance_m}) must be below edge_radius_m ({self.edge_radius_m})")
        return self


class Tasks(_Section):
    num_task_types: int = Field(200, ge=1, le=100_000, description="M (Table I)")
    input_bits: Range = Field(Range(low=5e6, high=20e6), description="S_i, uniform (Table I: [5, 20] Mbit)")
    output_bits: Range = Field(Range(low=2e6, high=40e6), description="S_o, uniform (Table I: [2, 40] Mbit)")
    cycles_per_bit: Range = Field(Range(low=600, high=1200), description="C, uniform (Table I: [600, 1200])")
    num_ue_types: int = Field(6, ge=1, le=1000, description="UE types, each with its own task-arrival distribution (Table I: 6)")
    popularity_zipf: float = Field(0.8, ge=0, le=5, description="ours: each UE type draws tasks from a Zipf law of this exponent over its own random ranking of the M tasks")


class Radio(_Section):
    total_bandwidth_hz: float = Field(80e6, gt=0, description="split into L equal channels (Table I: 80 MHz)")
    num_channels: int = Field(4, ge=1, le=256, description="L; ours: 4 channels of 20 MHz (an LTE/NR carrier width)")
    cloud_power_dbm: float = Field(40.0, description="P_C (Table I)")
    edge_power_dbm: float = Field(30.0, description="P_E (Table I)")
    ue_power_dbm: float = Field(23.9, description="P_UE (Table I)")
    noise_density_dbm_per_hz: float = Field(-174.0, description="ours: thermal noise at 290 K")
    noise_figure_db: float = Field(9.0, ge=0, description="ours: receiver noise figure, 3GPP TR 36.814 UE/BS order")
    path_loss_intercept_db: float = Field(128.1, description="ours: 3GPP TR 36.814 macro path loss 128.1 + 37.6 log10(d/km)")
    path_loss_slope_db: float = Field(37.6, gt=0)
    rayleigh_fading: bool = Field(True, description="ours: |h|^2 = path gain x Exp(1), redrawn every round")

    @property
    def channel_bandwidth_hz(self) -> float:
        return self.total_bandwidth_hz / self.num_channels

    @property
    def noise_power_w(self) -> float:
        return noise_power_w(self.noise_density_dbm_per_hz, self.noise_figure_db, self.channel_bandwidth_hz)

    def path_gain(self, distance_m):
        """Linear large-scale gain at ``distance_m`` (numpy-friendly)."""
        return path_gain(self.path_loss_intercept_db, self.path_loss_slope_db, distance_m)


class Compute(_Section):
    total_hz: float = Field(86.4e9, gt=0, description="total edge + cloud computation (Table I: 86.4 or 115.2 GHz)")
    cloud_share: float = Field(0.5, gt=0, lt=1, description="ours: fraction of total_hz at the cloud (F_C); the rest is split evenly over the edge servers (F_E)")
    ue_max_cpu_hz: float = Field(1.43e9, gt=0, description="F_UE; ours: a Jetson Nano's Cortex-A57 at 1.43 GHz")
    kappa: float = Field(1e-27, gt=0, description="effective capacitance; ours: 1e-27, the usual value in the MEC literature (the paper's ref. [20])")


class Objective(_Section):
    w_time: float = Field(1.0, ge=0, description="omega_1 per second; ours")
    w_energy: float = Field(0.1, ge=0, description="omega_2 per joule; ours: local computation of a mid-size task costs ~20 J at full speed, so 0.1 puts time and energy on a similar scale")


class Cache(_Section):
    capacity_bits: float = Field(200e6, ge=0, description="S^k per edge server; ours: 200 Mbit, about ten average results")
    policy: Literal["lru", "lfu"] = Field("lru", description="placement policy (paper: LRU or LFU, ref. [46])")


class Episode(_Section):
    rounds: int = Field(600, ge=1, le=1_000_000, description="rounds per episode (Table II: 600)")


class Scenario(BaseModel):
    """A cloud-edge network and its workload. Every field has a default (Table I)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "table1"
    description: str = "DTAC paper Table I defaults"
    seed: int = Field(0, ge=0, description="seed of the task catalogue and UE-type preferences")
    topology: Topology = Topology()
    tasks: Tasks = Tasks()
    radio: Radio = Radio()
    compute: Compute = Compute()
    objective: Objective = Objective()
    cache: Cache = Cache()
    episode: Episode = Episode()

    @property
    def max_ues(self) -> int:
        return self.topology.num_edge_servers * self.topology.ues_per_edge_max

    @property
    def edge_cpu_hz(self) -> float:
        return self.compute.total_hz * (1.0 - self.compute.cloud_share) / self.topology.num_edge_servers

    @property
    def cloud_cpu_hz(self) -> float:
        return self.compute.total_hz * self.compute.cloud_share

    @cached_property
    def network_params(self) -> NetworkParams:
        return NetworkParams(
            channel_bandwidth_hz=self.radio.channel_bandwidth_hz,
            noise_power_w=self.radio.noise_power_w,
            ue_max_power_w=dbm_to_w(self.radio.ue_power_dbm),
            edge_power_w=dbm_to_w(self.radio.edge_power_dbm),
            cloud_power_w=dbm_to_w(self.radio.cloud_power_dbm),
            ue_max_cpu_hz=self.compute.ue_max_cpu_hz,
            edge_cpu_hz=self.edge_cpu_hz,
            cloud_cpu_hz=self.cloud_cpu_hz,
            kappa=self.compute.kappa,
            w_time=self.objective.w_time,
            w_energy=self.objective.w_energy,
        )

    def scenario_hash(self) -> str:
        """SHA-256 of the canonical JSON of every field (name and description included)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def resolved(self) -> dict:
        """Every field plus the derived quantities the simulator uses, for display."""
        p = self.network_params
        return {
            **self.model_dump(mode="json"),
            "derived": {
                "max_ues": self.max_ues,
                "channel_bandwidth_hz": p.channel_bandwidth_hz,
                "noise_power_w": p.noise_power_w,
                "ue_max_power_w": p.ue_max_power_w,
                "edge_power_w": p.edge_power_w,
                "cloud_power_w": p.cloud_power_w,
                "edge_cpu_hz": p.edge_cpu_hz,
                "cloud_cpu_hz": p.cloud_cpu_hz,
                "scenario_hash": self.scenario_hash(),
            },
        }


def noise_power_w(density_dbm_per_hz: float, noise_figure_db: float, bandwidth_hz: float) -> float:
    """Receiver noise sigma^2 (watts) over ``bandwidth_hz``."""
    return dbm_to_w(density_dbm_per_hz + noise_figure_db) * bandwidth_hz


def path_gain(intercept_db: float, slope_db: float, distance_m):
    """Linear large-scale gain of the path loss ``intercept + slope log10(d / km)`` (dB) at
    ``distance_m`` (numpy-friendly); the DTAC and the LAMBO scenarios share it."""
    import numpy as np

    return 10.0 ** (-(intercept_db + slope_db * np.log10(np.asarray(distance_m) / 1000.0)) / 10.0)


def dbm_to_w(dbm: float) -> float:
    return 10.0 ** (dbm / 10.0) / 1000.0


class ScenarioError(ValueError):
    """A scenario file or preset that cannot be used; the message names the field."""


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid scenario {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def scenario_from_dict(data: dict, source: str = "<dict>") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"invalid scenario {source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(format_validation_error(err, source)) from None


def load_scenario(name_or_path: str | Path | None = None) -> Scenario:
    """A preset name (``fig5``), a YAML file path, or None for the Table I default."""
    if name_or_path is None or name_or_path == "table1":
        return Scenario()
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ScenarioError(f"unknown scenario {name_or_path!r}: not a file, and presets are {', '.join(list_presets())}")
    if not path.is_file():
        raise ScenarioError(f"scenario file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ScenarioError(f"invalid scenario {path}: not valid YAML: {err}") from None
    return scenario_from_dict(data if data is not None else {}, str(path))

