"""TAC and DTAC networks (DTAC paper, section III-B, Fig. 3).

* :class:`TACActor` - a transformer over the N UEs of a round. Input: the joint state
  s_t (15), (batch, N, 6), and the id of each UE's edge server as position embedding.
  Output per UE: p_x (3, softmax), p_l (L, softmax), a and b (sigmoid, in (0, 1)).
  Works for any N without retraining.
* :class:`TACCritic` - the same backbone over (state, p_x, p_l, a, b); outputs the
  vector Q-value, (batch, N, 2): [..., 0] time, [..., 1] energy, in the units of the
  vector reward (17).
* :class:`DTACActor` - the decentralized actor of Algorithm 1, lines 13-15: a copy
  of the TAC actor whose attention is replaced by the identity, so each UE's action
  depends on its own local state only. It takes a batch of local states (batch, 6):
  this is the network devices run.

Design decisions, so the networks export cleanly to every target (issue #4):

* attention and layer norm are written out with primitive ops (no fused
  multi-head-attention fast path, no LayerNormalization op), so ONNX opset 16 for
  TensorRT 8.2 on the original Jetson Nano needs no special casing;
* the raw local state (SI units, spanning ~15 decades) is normalised inside the
  network (log, then a standardisation fitted on simulator states), so a runtime feeds
  the local state exactly as :func:`edgepilot.edge_agent.system_model.local_state` gives it;
* identity attention: the paper writes (I / sqrt(d_k)) V. We keep the rows of the
  attention matrix summing to one, as softmax attention does, i.e. the output is V:
  the copied weights then start from the scale they were trained at;
* the DTAC actor has no other UE and no cell to tell apart, so the TAC's edge-server
  position embedding becomes a learned constant, initialised to the mean of the TAC's
  edge embeddings.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from edgepilot.cloud_trainer.baselines import lower_bound_times
from edgepilot.edge_agent.system_model import LOCAL_STATE_DIM, LOCAL_STATE_FIELDS

# Floors of the log transform: watts for the received power, seconds for the times.
_LOG_FLOOR = (1e-18, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3)


CPU_RATIO_HEADS = ("sigmoid", "time_budget", "round_budget")
ROUND_BUDGET_MIN_B = 1e-3  # floor of b = T1* / R (a UE with no work still gets a valid ratio)
OFFLOAD_MASK_LOGIT = 1e4  # subtracted from a masked option's offload logit (exp(-1e4) = 0, no inf / nan)
_PRIOR_FLOOR_S = 1e-3  # seconds, floor of the offload prior's log (ModelConfig.offload_prior)
OFFLOAD_PRIOR_FORMS = ("above_local", "two_sided")
LOCAL_TIME_FIELD = LOCAL_STATE_FIELDS.index("local_compute_time_s")  # T1* = W / F_UE in the local state (14)


def check_cpu_ratio_head(value: str) -> None:
    if value not in CPU_RATIO_HEADS:
        raise ValueError(f"cpu_ratio_head must be one of {CPU_RATIO_HEADS}, got {value!r}")


@dataclass
class ModelConfig:
    """Sizes of the TAC / DTAC networks. The defaults give about 8k parameters per
    network, near the paper's Table IV (8.17k actor, 8.52k critic)."""

    num_channels: int = 4  # L
    d_model: int = 16
    num_heads: int = 2
    num_encoders: int = 2
    num_decoders: int = 1
    ffn_dim: int = 32
    max_edges: int = 16  # size of the edge-id position embedding table
    # > 0: a second position embedding, the UE's slot among the UEs of its edge server
    # (0, 1, ... in joint-state order), table of this size. Off (0) by default and in
    # every shipped model; see Backbone. The DTAC actor never uses it.
    ue_slot_embedding: int = 0
    # > 0: the TAC actor adds a learned bias per (cell slot, channel) to its channel
    # logits (table of this many slots), and nothing else sees the slot: the offload
    # decision, a and b stay the paper's functions of the states. Off (0) by default
    # and in every shipped model; the critic and the DTAC actor never use it.
    channel_slot_bias: int = 0
    # False: that bias stays at its initial "slot j prefers channel j mod L" (not trained).
    # Tried on N = 4 and not adopted: the backbone's own channel logits outgrow its margin
    # (docs/results-n4.md)
    channel_slot_trainable: bool = True
    # How the DTAC actor gives the CPU frequency ratio b (the TAC actor and the critic
    # never use it). "sigmoid": the paper's b = sigmoid(z). "time_budget" (ours):
    # b = sigmoid(z + ln(T1* / T_ref)) = T1* / (T1* + T_ref e^-z), T1* the UE's full-speed
    # local time (LOCAL_TIME_FIELD of the local state) and T_ref its geometric mean in the normalizer's
    # statistics; the head then sets a completion time (a local task takes T1* / b), and
    # "finish with the round", b proportional to T1*, is a constant output instead of a
    # function the network has to learn from the few local UEs of its scenario. Off by
    # default: on training seeds 1, 5, 7 it moved the fig6 -> fig7 misses, it did not
    # remove them (docs/training.md). "round_budget" (ours): b = min(1, T1* / R), every
    # local UE finishes with a planned round time R, one number per model (the buffer
    # DTACActor.round_budget_s), which the transfer fits on the training scenario's rounds
    # with the system model (edgepilot.cloud_trainer.dtac.fit_round_budget) instead of learning b
    # per state: the round time a UE should plan for is a property of the whole round,
    # which no local state shows.
    cpu_ratio_head: str = "sigmoid"
    # DTAC actor only (ours; 0 = the paper's head, as in every shipped model; the DTAC
    # transfer sets it from TransferConfig.offload_prior): a prior of weight w on the
    # offload logits from the option's lower-bound time T_lb(x) in the local state (the
    # greedy baseline's lower_bound_times; floor 1 ms). The learned logits are only
    # trained on the UEs of the training scenario; the prior keeps "an option whose lower
    # bound is longer is less likely" true beyond them (a UE farther from its edge or
    # cloud than any seen in training). offload_prior_form "above_local": edge and cloud
    # get -w max(0, ln(T_lb(x) / T1*)), i.e. only an option whose lower bound exceeds
    # the UE's full-speed local time is pushed down, the rest is left to the network;
    # "two_sided": every option gets -w ln(T_lb(x)), which also rewards a short lower
    # bound (with it, fig6 seed 1's DTAC had rare rounds of 10^5 s; docs/training.md).
    offload_prior: float = 0.0
    offload_prior_form: str = "above_local"
    # DTAC actor only (ours; False = the paper's head): an offload option whose lower-bound
    # time T_lb(x) (no interference, no queue, full power) exceeds the UE's full-speed
    # local time T1* gets probability 0, so a UE never offloads a task that would be
    # slower than computing it locally even in the best case. Such a UE is rare in the
    # training scenario, so the learned logits say little about it there; beyond it (a UE
    # farther from its edge than any seen in training) they extrapolate.
    offload_mask: bool = False

    def __post_init__(self) -> None:
        check_cpu_ratio_head(self.cpu_ratio_head)
        if self.offload_prior_form not in OFFLOAD_PRIOR_FORMS:
            raise ValueError(f"offload_prior_form must be one of {OFFLOAD_PRIOR_FORMS}, got {self.offload_prior_form!r}")
        if not (self.offload_prior >= 0 and math.isfinite(self.offload_prior)):
            raise ValueError(f"offload_prior must be a finite number >= 0, got {self.offload_prior!r}")
        if not isinstance(self.offload_mask, bool):
            raise ValueError(f"offload_mask must be true or false, got {self.offload_mask!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class StateNormalizer(nn.Module):
    """log(x + floor) per feature, then (v - mean) / std with statistics fitted on
    simulator states. Part of every exported actor."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("floor", torch.tensor(_LOG_FLOOR, dtype=torch.float32))
        self.register_buffer("mean", torch.zeros(LOCAL_STATE_DIM))
        self.register_buffer("std", torch.ones(LOCAL_STATE_DIM))

    @torch.no_grad()
    def fit(self, states: torch.Tensor) -> None:
        """Fit on raw states (..., 6)."""
        logged = torch.log(states.reshape(-1, LOCAL_STATE_DIM).float().clamp_min(0) + self.floor)
        self.mean.copy_(logged.mean(0))
        self.std.copy_(logged.std(0).clamp_min(1e-3))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return (torch.log(states.clamp_min(0) + self.floor) - self.mean) / self.std


class LayerNorm(nn.Module):
    """Layer norm from primitive ops (exports without LayerNormalization, opset 16), or,
    with ``standard_op`` set (the exporter sets it for opset >= 17 targets), the same
    normalisation as ``F.layer_norm``, which exports as one LayerNormalization node."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps
        self.standard_op = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standard_op:
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        mean = x.mean(-1, keepdim=True)
        centered = x - mean
        var = (centered * centered).mean(-1, keepdim=True)
        return centered / torch.sqrt(var + self.eps) * self.weight + self.bias


class Attention(nn.Module):
    """Multi-head attention written out: softmax(Q K^T / sqrt(d_k)) V, or, with
    ``identity`` set (DTAC, Algorithm 1 line 15), each token attending only to itself."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads, self.d_k = num_heads, d_model // num_heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.identity = False

    def forward(self, query: torch.Tensor, memory: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        v = self.v(memory)
        if self.identity:
            return self.out(v)  # I V: no path between tokens
        shape = query.shape[:-1] + (self.num_heads, self.d_k)
        q = self.q(query).reshape(shape).transpose(-2, -3)  # (B, H, N, d_k)
        k = self.k(memory).reshape(shape).transpose(-2, -3)
        vh = v.reshape(shape).transpose(-2, -3)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_k)
        if key_mask is not None:  # (B, N) True where the UE exists
            scores = scores.masked_fill(~key_mask[..., None, None, :], -1e9)
        mixed = torch.softmax(scores, dim=-1) @ vh
        return self.out(mixed.transpose(-2, -3).reshape(query.shape))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg.d_model, cfg.num_heads)
        self.norm1, self.norm2 = LayerNorm(cfg.d_model), LayerNorm(cfg.d_model)
        self.ffn = nn.Sequential(nn.Linear(cfg.d_model, cfg.ffn_dim), nn.GELU(), nn.Linear(cfg.ffn_dim, cfg.d_model))

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(h + self.attn(h, h, mask))
        return self.norm2(h + self.ffn(h))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg.d_model, cfg.num_heads)
        self.cross_attn = Attention(cfg.d_model, cfg.num_heads)
        self.norms = nn.ModuleList(LayerNorm(cfg.d_model) for _ in range(3))
        self.ffn = nn.Sequential(nn.Linear(cfg.d_model, cfg.ffn_dim), nn.GELU(), nn.Linear(cfg.ffn_dim, cfg.d_model))

    def forward(self, h: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norms[0](h + self.self_attn(h, h, mask))
        h = self.norms[1](h + self.cross_attn(h, memory, mask))
        return self.norms[2](h + self.ffn(h))


def cell_slot(edge_id: torch.Tensor, num_slots: int | None = None) -> torch.Tensor:
    """Slot of each UE among the UEs of its edge server, in joint-state order:
    the number of earlier tokens with the same edge id, capped at ``num_slots - 1``
    when given (the size of the table it indexes). (B, N) int64."""
    same = edge_id[..., :, None] == edge_id[..., None, :]  # (B, N, N)
    earlier = torch.ones(same.shape[-2:], dtype=torch.bool, device=edge_id.device).tril(-1)
    slot = (same & earlier).sum(-1)
    return slot if num_slots is None else slot.clamp(max=num_slots - 1)


class Backbone(nn.Module):
    """Encoders then decoders (Fig. 3) over per-UE tokens, position = edge-server id.

    With ``cfg.ue_slot_embedding`` > 0 the position also carries the UE's slot within
    its cell (:func:`cell_slot`). Without it the network is equivariant to permuting
    the UEs of a cell, so two UEs of one cell are told apart only by their states;
    that is what the paper specifies and what every shipped model uses, but it makes
    giving the UEs of a cell distinct channels (5) a symmetry-breaking problem the
    actor rarely solves (see docs/results-dtac.md, N = 4)."""

    def __init__(self, cfg: ModelConfig, in_dim: int) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, cfg.d_model)
        self.position = nn.Embedding(cfg.max_edges, cfg.d_model)
        self.slot = nn.Embedding(cfg.ue_slot_embedding, cfg.d_model) if cfg.ue_slot_embedding > 0 else None
        self.encoders = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_encoders))
        self.decoders = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_decoders))

    def forward(self, tokens: torch.Tensor, edge_id: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(tokens) + self.position(edge_id.clamp(0, self.position.num_embeddings - 1))
        if self.slot is not None:
            h = h + self.slot(cell_slot(edge_id, self.slot.num_embeddings))
        for layer in self.encoders:
            h = layer(h, mask)
        memory = h
        for layer in self.decoders:
            h = layer(h, memory, mask)
        return h


class ActionHeads(nn.Module):
    """p_x (softmax over 3), p_l (softmax over L), a and b (sigmoid)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.offload = nn.Linear(cfg.d_model, 3)
        self.channel = nn.Linear(cfg.d_model, cfg.num_channels)
        self.ratios = nn.Linear(cfg.d_model, 2)

    def forward(self, h: torch.Tensor, channel_bias: torch.Tensor | None = None, cpu_offset: torch.Tensor | None = None,
                offload_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``channel_bias`` (..., L), if given, is added to the channel logits;
        ``cpu_offset`` (...), if given, to the logit of b; ``offload_bias`` (..., 3) to
        the offload logits."""
        logits = self.ratios(h)
        if cpu_offset is not None:
            logits = torch.stack([logits[..., 0], logits[..., 1] + cpu_offset], dim=-1)
        ratios = torch.sigmoid(logits)
        channel_logits = self.channel(h) if channel_bias is None else self.channel(h) + channel_bias
        return (
            torch.softmax(self.offload(h) if offload_bias is None else self.offload(h) + offload_bias, dim=-1),
            torch.softmax(channel_logits, dim=-1),
            ratios[..., 0],
            ratios[..., 1],
        )


CHANNEL_SLOT_INIT = 3.0  # logits; see TACActor.channel_slot


class TACActor(nn.Module):
    """Centralized actor: (batch, N, 6) joint state + (batch, N) edge ids -> A_t (16)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = StateNormalizer()
        self.backbone = Backbone(cfg, LOCAL_STATE_DIM)
        self.heads = ActionHeads(cfg)
        # per-slot channel preference (cfg.channel_slot_bias): lets the UEs of one cell
        # take distinct channels (5) without making the other decisions slot-based
        self.channel_slot = None
        if cfg.channel_slot_bias > 0:
            # initialised to "slot j prefers channel j mod L" (a margin of
            # CHANNEL_SLOT_INIT logits): a cell starts separated instead of having to
            # find a separation through the critic; training can still move it
            # unless cfg.channel_slot_trainable is False
            self.channel_slot = nn.Embedding(cfg.channel_slot_bias, cfg.num_channels)
            with torch.no_grad():
                slots = torch.arange(cfg.channel_slot_bias)
                self.channel_slot.weight.copy_(CHANNEL_SLOT_INIT * nn.functional.one_hot(slots % cfg.num_channels, cfg.num_channels).float())
            self.channel_slot.weight.requires_grad_(cfg.channel_slot_trainable)

    def forward(self, joint_state: torch.Tensor, edge_id: torch.Tensor, ue_mask: torch.Tensor | None = None):
        h = self.backbone(self.normalizer(joint_state), edge_id, ue_mask)
        bias = None if self.channel_slot is None else self.channel_slot(cell_slot(edge_id, self.channel_slot.num_embeddings))
        return self.heads(h, channel_bias=bias)


class TACCritic(nn.Module):
    """Centralized critic: state and action of every UE -> vector Q (batch, N, 2)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = StateNormalizer()
        self.backbone = Backbone(cfg, LOCAL_STATE_DIM + 3 + cfg.num_channels + 2)
        self.q = nn.Linear(cfg.d_model, 2)

    def forward(self, joint_state, edge_id, offload_probs, channel_probs, power_ratio, cpu_ratio, ue_mask=None):
        tokens = torch.cat(
            [self.normalizer(joint_state), offload_probs, channel_probs, power_ratio[..., None], cpu_ratio[..., None]],
            dim=-1,
        )
        return self.q(self.backbone(tokens, edge_id, ue_mask))


class DTACActor(nn.Module):
    """Decentralized actor: (batch, 6) local states -> per-UE action; no cross-UE path."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = StateNormalizer()
        self.backbone = Backbone(cfg, LOCAL_STATE_DIM)
        self.position_bias = nn.Parameter(torch.zeros(cfg.d_model))
        self.heads = ActionHeads(cfg)
        self.backbone.position = None  # replaced by position_bias (no cells to tell apart)
        self.backbone.slot = None  # a UE alone has no slot among others
        for module in self.backbone.modules():
            if isinstance(module, Attention):
                module.identity = True
        if cfg.cpu_ratio_head == "round_budget":  # R in seconds, set by from_tac and fit_round_budget
            self.register_buffer("round_budget_s", torch.tensor(1.0))

    @classmethod
    def from_tac(cls, tac: TACActor, **head_options) -> "DTACActor":
        """Algorithm 1, lines 14-15: copy the converged TAC actor, attention -> identity.
        ``head_options`` are the DTAC-only ModelConfig fields: ``cpu_ratio_head`` (with
        "time_budget" the copy gives the TAC's b for a task of the reference size T_ref),
        ``offload_prior`` and ``offload_prior_form`` (the lower-bound-time prior on the
        copy's offload logits), ``offload_mask``; with "round_budget" R starts at three
        times the geometric-mean T1* of the normalizer's statistics, until a fit."""
        dtac = cls(replace(tac.cfg, **head_options))
        result = dtac.load_state_dict(copy.deepcopy(tac.state_dict()), strict=False)
        own = {"position_bias"} | ({"round_budget_s"} if dtac.cfg.cpu_ratio_head == "round_budget" else set())
        if set(result.missing_keys) != own:  # unexpected keys: TAC-only parts (channel_slot), which the DTAC never uses
            raise RuntimeError(f"TAC -> DTAC copy mismatch: {result}")
        with torch.no_grad():
            dtac.position_bias.copy_(tac.backbone.position.weight.mean(0))
            if dtac.cfg.cpu_ratio_head == "round_budget":  # a start only: the transfer fits R before it trains
                dtac.round_budget_s.fill_(3.0 * float(torch.exp(dtac.normalizer.mean[LOCAL_TIME_FIELD])))
        return dtac

    def forward(self, local_state: torch.Tensor):
        x = self.normalizer(local_state)
        h = self.backbone.embed(x) + self.position_bias
        for layer in self.backbone.encoders:
            h = layer(h, None)
        memory = h
        for layer in self.backbone.decoders:
            h = layer(h, memory, None)
        offset = None
        if self.cfg.cpu_ratio_head == "time_budget":  # ln((T1* + floor) / T_ref), from the normalized feature
            offset = x[..., LOCAL_TIME_FIELD] * self.normalizer.std[LOCAL_TIME_FIELD]
        raw = local_state.clamp_min(0)  # the heads below read the raw state, not the normalized one
        lb = lower_bound_times(raw) if self.cfg.offload_prior > 0 or self.cfg.offload_mask else None
        bias = None
        if self.cfg.offload_prior > 0:
            log_t = torch.log(lb + _PRIOR_FLOOR_S)
            if self.cfg.offload_prior_form == "above_local":  # local: relu(0) = 0
                log_t = torch.relu(log_t - log_t[..., :1])
            bias = -self.cfg.offload_prior * log_t
        if self.cfg.offload_mask:  # local is never masked: its lower bound is not above itself
            mask = -OFFLOAD_MASK_LOGIT * (lb > lb[..., :1]).to(h.dtype)
            bias = mask if bias is None else bias + mask
        p_x, p_l, a, b = self.heads(h, cpu_offset=offset, offload_bias=bias)
        if self.cfg.cpu_ratio_head == "round_budget":
            b = (raw[..., LOCAL_TIME_FIELD] / self.round_budget_s).clamp(ROUND_BUDGET_MIN_B, 1.0)
        return p_x, p_l, a, b


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------
# Baseline networks (issue 3): MLP actors on the HAPPO / TL local state (24) and the
# HAPPO critic on the padded global state (25). Not exported to devices.
HAPPO_STATE_DIM = LOCAL_STATE_DIM + 2  # (24): UE id n, edge id k, then s_t^n (14)


@dataclass
class MLPConfig:
    num_channels: int = 4
    hidden: int = 64
    max_ues: int = 42  # N_max of the padded global state (25)
    max_edges: int = 16
    num_agents: int = 1  # > 1: one parameter set per UE slot (heterogeneous agents, HAPPO)

    def to_dict(self) -> dict:
        return asdict(self)


class _AgentLinear(nn.Module):
    """A linear layer with one weight matrix per agent (agent axis = second-to-last
    token axis, i.e. the UE slot). ``num_agents == 1`` shares the weights."""

    def __init__(self, num_agents: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_agents, d_in, d_out) / math.sqrt(d_in))
        self.bias = nn.Parameter(torch.zeros(num_agents, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (..., A, d_in)
        if self.weight.shape[0] == 1:
            return x @ self.weight[0] + self.bias[0]
        return torch.einsum("...ai,aio->...ao", x, self.weight) + self.bias


class LocalMLPActor(nn.Module):
    """MLP actor on the local state (24) of each UE (HAPPO and TL baselines).

    Input: raw local states (B, N, 6) with slot ids; output p_x, p_l, a, b like the TAC
    actor, plus (for HAPPO's stochastic policy) the Gaussian mean and log-std of the
    pre-sigmoid a, b."""

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = StateNormalizer()
        a, h = cfg.num_agents, cfg.hidden
        self.l1 = _AgentLinear(a, HAPPO_STATE_DIM, h)
        self.l2 = _AgentLinear(a, h, h)
        self.out = _AgentLinear(a, h, 3 + cfg.num_channels + 2)
        self.log_std = nn.Parameter(torch.full((a, 2), -0.5))

    def features(self, local_state: torch.Tensor, edge_id: torch.Tensor) -> torch.Tensor:
        n = local_state.shape[-2]
        ue_id = torch.arange(n, dtype=torch.float32).expand(local_state.shape[:-1]) / max(1, self.cfg.max_ues)
        k = edge_id.float() / max(1, self.cfg.max_edges)
        return torch.cat([ue_id[..., None], k[..., None], self.normalizer(local_state)], dim=-1)

    def logits(self, local_state: torch.Tensor, edge_id: torch.Tensor):
        x = self.features(local_state, edge_id)
        h = torch.tanh(self.l2(torch.tanh(self.l1(x))))
        o = self.out(h)
        L = self.cfg.num_channels
        return o[..., :3], o[..., 3 : 3 + L], o[..., 3 + L :]

    def forward(self, local_state: torch.Tensor, edge_id: torch.Tensor, ue_mask: torch.Tensor | None = None):
        lx, ll, mu = self.logits(local_state, edge_id)
        ratios = torch.sigmoid(mu)
        return torch.softmax(lx, -1), torch.softmax(ll, -1), ratios[..., 0], ratios[..., 1]


class GlobalMLPCritic(nn.Module):
    """HAPPO's centralized value function V(s_g) on the zero-padded global state (25)."""

    def __init__(self, cfg: MLPConfig, hidden: int = 128) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = StateNormalizer()
        self.net = nn.Sequential(
            nn.Linear(HAPPO_STATE_DIM * cfg.max_ues, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )

    def forward(self, local_state: torch.Tensor, edge_id: torch.Tensor, ue_mask: torch.Tensor) -> torch.Tensor:
        n = local_state.shape[-2]
        ue_id = torch.arange(n, dtype=torch.float32).expand(local_state.shape[:-1]) / max(1, self.cfg.max_ues)
        feats = torch.cat([ue_id[..., None], edge_id.float()[..., None] / self.cfg.max_edges, self.normalizer(local_state)], -1)
        feats = feats * ue_mask[..., None]  # (25): padded UEs are zeros
        if n < self.cfg.max_ues:
            feats = torch.cat([feats, feats.new_zeros(feats.shape[:-2] + (self.cfg.max_ues - n, HAPPO_STATE_DIM))], -2)
        return self.net(feats.flatten(-2)).squeeze(-1)
