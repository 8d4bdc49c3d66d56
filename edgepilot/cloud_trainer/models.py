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
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from edgepilot.cloud_trainer.state_bounds import lower_bound_times
from edgepilot.cloud_trainer.config_base import TrainerConfig
from edgepilot.edge_agent.system_model import LOCAL_STATE_DIM, LOCAL_STATE_FIELDS

# Floors of the log transform: watts for the received power, seconds for the times.
_LOG_FLOOR = (1e-18, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3)


ROUND_BUDGET_MIN_B = 1e-3  # floor of b = T1* / R (a UE with no work still gets a valid ratio)
OFFLOAD_MASK_LOGIT = 1e4  # subtracted from a masked option's offload logit (exp(-1e4) = 0, no inf / nan)
LOCAL_TIME_FIELD = LOCAL_STATE_FIELDS.index("local_compute_time_s")  # T1* = W / F_UE in the local state (14)


class ModelConfig(TrainerConfig):
    """Sizes of the TAC / DTAC networks and the DTAC actor's heads. The default sizes
    give about 8k parameters per network, near the paper's Table IV (8.17k actor, 8.52k
    critic)."""

    RETIRED: ClassVar[dict] = {"ue_slot_embedding": 0, "channel_slot_bias": 0, "channel_slot_trainable": True,
                               "offload_prior": 0.0, "offload_prior_form": "above_local"}

    num_channels: int = Field(4, ge=1)  # L
    d_model: int = Field(16, ge=1)
    num_heads: int = Field(2, ge=1)
    num_encoders: int = Field(2, ge=0)
    num_decoders: int = Field(1, ge=0)
    ffn_dim: int = Field(32, ge=1)
    max_edges: int = Field(16, ge=1)  # size of the edge-id position embedding table
    # DTAC actor only (the TAC actor and the critic never use it): how it gives the CPU
    # frequency ratio b. "sigmoid": the paper's b = sigmoid(z). "round_budget": b = min(1,
    # T1* / R), T1* the UE's full-speed local time and R one planned round time per model
    # (the buffer DTACActor.round_budget_s), fitted by the transfer with the system model
    # (edgepilot.cloud_trainer.dtac.fit_round_budget); docs/decisions.md says why.
    cpu_ratio_head: Literal["sigmoid", "round_budget"] = "sigmoid"
    # DTAC actor only: an offload option whose lower-bound time T_lb(x) (no interference,
    # no queue, full power) exceeds the UE's full-speed local time T1* gets probability 0.
    offload_mask: bool = False


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


class Backbone(nn.Module):
    """Encoders then decoders (Fig. 3) over per-UE tokens, position = edge-server id.
    The network is equivariant to permuting the UEs of a cell, as the paper specifies."""

    def __init__(self, cfg: ModelConfig, in_dim: int) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, cfg.d_model)
        self.position = nn.Embedding(cfg.max_edges, cfg.d_model)
        self.encoders = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_encoders))
        self.decoders = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_decoders))

    def forward(self, tokens: torch.Tensor, edge_id: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(tokens) + self.position(edge_id.clamp(0, self.position.num_embeddings - 1))
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

    def forward(self, h: torch.Tensor, offload_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``offload_bias`` (..., 3), if given, is added to the offload logits."""
        ratios = torch.sigmoid(self.ratios(h))
        return (
            torch.softmax(self.offload(h) if offload_bias is None else self.offload(h) + offload_bias, dim=-1),
            torch.softmax(self.channel(h), dim=-1),
            ratios[..., 0],
            ratios[..., 1],
        )


class TACActor(nn.Module):
    """Centralized actor: (batch, N, 6) joint state + (batch, N) edge ids -> A_t (16)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalizer = StateNormalizer()
        self.backbone = Backbone(cfg, LOCAL_STATE_DIM)
        self.heads = ActionHeads(cfg)

    def forward(self, joint_state: torch.Tensor, edge_id: torch.Tensor, ue_mask: torch.Tensor | None = None):
        return self.heads(self.backbone(self.normalizer(joint_state), edge_id, ue_mask))


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
        for module in self.backbone.modules():
            if isinstance(module, Attention):
                module.identity = True
        if cfg.cpu_ratio_head == "round_budget":  # R in seconds, set by from_tac and fit_round_budget
            self.register_buffer("round_budget_s", torch.tensor(1.0))

    @classmethod
    def from_tac(cls, tac: TACActor, **head_options) -> "DTACActor":
        """Algorithm 1, lines 14-15: copy the converged TAC actor, attention -> identity.
        ``head_options`` are the DTAC-only ModelConfig fields ``cpu_ratio_head`` and
        ``offload_mask``; with "round_budget" R starts at three times the geometric-mean
        T1* of the normalizer's statistics, until a fit."""
        dtac = cls(ModelConfig(**{**tac.cfg.to_dict(), **head_options}))
        result = dtac.load_state_dict(copy.deepcopy(tac.state_dict()), strict=False)
        own = {"position_bias"} | ({"round_budget_s"} if dtac.cfg.cpu_ratio_head == "round_budget" else set())
        if set(result.missing_keys) != own:  # the unexpected key is the TAC's position table, replaced by position_bias
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
        raw = local_state.clamp_min(0)  # the heads below read the raw state, not the normalized one
        bias = None
        if self.cfg.offload_mask:  # local is never masked: its lower bound is not above itself
            lb = lower_bound_times(raw)
            bias = -OFFLOAD_MASK_LOGIT * (lb > lb[..., :1]).to(h.dtype)
        p_x, p_l, a, b = self.heads(h, offload_bias=bias)
        if self.cfg.cpu_ratio_head == "round_budget":
            b = (raw[..., LOCAL_TIME_FIELD] / self.round_budget_s).clamp(ROUND_BUDGET_MIN_B, 1.0)
        return p_x, p_l, a, b


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------
# Baseline networks (issue 3): MLP actors on the HAPPO / TL local state (24) and the
# HAPPO critic on the padded global state (25). Not exported to devices.
HAPPO_STATE_DIM = LOCAL_STATE_DIM + 2  # (24): UE id n, edge id k, then s_t^n (14)


class MLPConfig(TrainerConfig):
    num_channels: int = Field(4, ge=1)
    hidden: int = Field(64, ge=1)
    max_ues: int = Field(42, ge=1)  # N_max of the padded global state (25)
    max_edges: int = Field(16, ge=1)
    num_agents: int = Field(1, ge=1)  # > 1: one parameter set per UE slot (heterogeneous agents, HAPPO)


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
