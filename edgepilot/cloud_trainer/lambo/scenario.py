"""The MEC scenario of the LAMBO paper, section V (case study), as one pydantic config.

Given by the paper (section V-B): 4 edge servers with 1.5e10, 1.5e10, 3e10 and 5e10
cycles/s; 50 UEs; a 50 m x 50 m square in which servers and UEs are placed at random;
UEs move at up to 1.2 m/s; one task per UE, executed locally or on exactly one server;
a maximum latency of 1.5 s per task; 1 W transmit and 1 W local-execution power; an
average task of "2 x 10^8 kB" needing "1 x 10^9 cycles/s".

Left open by the paper (it cites its ref. [7] for the CSI) and chosen here, each field
saying "ours:" in its description (docs/decisions.md, "## LAMBO", gives the reasons):
the path loss, fading, bandwidth, noise, the UE's CPU speed, the spread of the task
sizes, and the unit of the data size (2e8 kB = 1.6e12 bit cannot be sent in 1.5 s by a
1 W UE at any bandwidth it could have; we read it as 2e8 bit).

The preset file ``lambo/scenarios/lambo.yaml`` spells out these defaults.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator

from edgepilot.config import ConfigError, read_config_file
from edgepilot.cloud_trainer.scenario import Range, noise_power_w, path_gain

PRESET_DIR = Path(__file__).parent / "scenarios"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Area(_Section):
    side_m: float = Field(50.0, gt=0, description="servers and UEs are uniform in a side x side square (paper: 50 m)")
    max_speed_mps: float = Field(1.2, ge=0, description="UE speed is uniform in [0, max], direction uniform (paper: 1.2 m/s)")
    min_distance_m: float = Field(1.0, gt=0, description="ours: a UE closer than this to a server is taken at this distance (keeps the path loss finite)")


class Servers(_Section):
    cpu_hz: List[PositiveFloat] = Field([1.5e10, 1.5e10, 3e10, 5e10], min_length=1, max_length=64,
                                description="F_k of each edge server; K = its length (paper: 1.5e10, 1.5e10, 3e10, 5e10 cycles/s)")


class Tasks(_Section):
    num_ues: int = Field(50, ge=1, le=4096, description="N, one task each (paper: 50)")
    data_bits: Range = Field(Range(low=1e8, high=3e8), description="input size D_n, uniform; ours: mean 2e8 bit (paper: '2e8 kB', read as bit), +-50%")
    cycles: Range = Field(Range(low=0.5e9, high=1.5e9), description="C_n cycles, uniform; ours: mean 1e9 (paper: '1e9 cycles/s'), +-50%")
    max_latency_s: float = Field(1.5, gt=0, description="T_max of every task (paper: 1.5 s)")


class Device(_Section):
    cpu_hz: float = Field(1e9, gt=0, description="f_loc of a UE; ours: 1 GHz, so that the largest task still meets T_max locally")
    tx_power_w: float = Field(1.0, gt=0, description="P_tx (paper: 1 W)")
    compute_power_w: float = Field(1.0, gt=0, description="P_loc while executing locally (paper: 1 W)")


class Radio(_Section):
    bandwidth_hz: float = Field(20e6, gt=0, description="ours: every UE has its own orthogonal 20 MHz uplink channel (no interference)")
    noise_density_dbm_per_hz: float = Field(-174.0, description="ours: thermal noise at 290 K")
    noise_figure_db: float = Field(9.0, ge=0, description="ours: receiver noise figure (3GPP TR 36.814 order, as the DTAC scenarios)")
    path_loss_intercept_db: float = Field(128.1, description="ours: 3GPP TR 36.814 path loss 128.1 + 37.6 log10(d/km), as the DTAC scenarios")
    path_loss_slope_db: float = Field(37.6, gt=0)
    rayleigh_fading: bool = Field(True, description="ours: |h|^2 = path gain x Exp(1), drawn per UE and server")

    @property
    def noise_power_w(self) -> float:
        return noise_power_w(self.noise_density_dbm_per_hz, self.noise_figure_db, self.bandwidth_hz)

    def path_gain(self, distance_m):
        return path_gain(self.path_loss_intercept_db, self.path_loss_slope_db, distance_m)


class LamboScenario(BaseModel):
    """The LAMBO case-study MEC system. Every field has a default (section V-B)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "lambo"
    description: str = "LAMBO section V: 4 edge servers, 50 UEs, 50 m x 50 m, T_max 1.5 s"
    area: Area = Area()
    servers: Servers = Servers()
    tasks: Tasks = Tasks()
    device: Device = Device()
    radio: Radio = Radio()

    @model_validator(mode="after")
    def _local_always_feasible(self) -> "LamboScenario":
        # Local execution is the fallback that keeps every instance (and every masked
        # decision sequence) feasible; a scenario where it is not is refused here.
        worst = self.tasks.cycles.high / self.device.cpu_hz
        if worst > self.tasks.max_latency_s:
            raise ValueError(
                f"tasks.cycles.high / device.cpu_hz = {worst:.3g} s exceeds tasks.max_latency_s = "
                f"{self.tasks.max_latency_s} s: local execution must meet the latency bound for every task")
        return self

    @property
    def num_servers(self) -> int:
        return len(self.servers.cpu_hz)

    @property
    def num_ues(self) -> int:
        return self.tasks.num_ues

    def scenario_hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class LamboScenarioError(ValueError):
    """A LAMBO scenario file or preset that cannot be used; the message names the field."""


def list_presets() -> List[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def scenario_from_dict(data: dict, source: str = "<dict>") -> LamboScenario:
    if not isinstance(data, dict):
        raise LamboScenarioError(f"invalid LAMBO scenario {source}: expected a mapping, got {type(data).__name__}")
    try:
        return LamboScenario.model_validate(data)
    except ValidationError as err:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()]
        raise LamboScenarioError(f"invalid LAMBO scenario {source}: " + "; ".join(parts)) from None


def load_lambo_scenario(name_or_path: Optional[Union[str, Path]] = None) -> LamboScenario:
    """A preset name (``lambo``), a YAML file, or None for the section V defaults."""
    if name_or_path is None:
        return LamboScenario()
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise LamboScenarioError(f"unknown LAMBO scenario {name_or_path!r}: not a file, and presets are {', '.join(list_presets())}")
    if not path.is_file():
        raise LamboScenarioError(f"LAMBO scenario file not found: {path}")
    try:
        data = read_config_file(path)
    except ConfigError as err:
        raise LamboScenarioError(f"invalid LAMBO scenario: {err}") from None
    return scenario_from_dict(data, str(path))
