"""The asymmetric encoder-decoder (AED, section IV-C) and its masked UE-by-UE decoding.

* IE: UE features -> d_model (2-layer MLP), MEC features -> d_model (linear), prompt
  tokens -> d_model (embedding, averaged). The prompt embedding is added to every UE
  token of the encoder and to every decoder token.
* Deep encoder: ``encoder_layers`` x ``nn.TransformerEncoderLayer`` (self-attention,
  feed-forward, residual + LayerNorm) over the N UE tokens.
* Shallow decoder: ``decoder_layers`` x ``nn.TransformerDecoderLayer`` (causal
  self-attention over the decisions so far, encoder-decoder attention over all UEs).
  The decoder token of UE t is its encoder output + the MEC embedding of the remaining
  server resources *after the decisions of UEs 0..t-1* + the embedding of UE t-1's
  decision + the prompt.
* Two heads: softmax over {local, server 1..K}, and per option the mean of a logit-
  normal whose sigmoid w_t in (0, 1) is the UE's resource weight. Choosing server k
  reserves the UE's least share m_{t,k} (the share that just meets T_max); R_k, the
  remaining share the MEC embedding sees, drops by it. When every UE is decided, the
  room left on each server is split among its UEs in proportion to their weights:
  s_t = m_{t,k} + R_k w_t / sum_{u on k} w_u, so every server is used to the full.
* Masking: server k is offered only when its remaining share R_k covers m_{t,k}
  (which is infinite when the upload alone breaks T_max); local is always feasible
  (the scenario validates it). So every decoded decision meets every constraint.

Rollouts run the decoder step by step (no grad); training recomputes the log-
probabilities of a recorded rollout in one causal pass (:meth:`AED.teacher_forced`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Literal, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgepilot.cloud_trainer.lambo.embedding import (
    VOCABULARY,
    mec_feature_dim,
    mec_features,
    tokenize,
    ue_feature_dim,
    ue_features,
)
from edgepilot.cloud_trainer.lambo.system import Instances


class AEDConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    d_model: int = Field(64, ge=8, description="width of every embedding and layer")
    nhead: int = Field(4, ge=1)
    dim_feedforward: int = Field(128, ge=8)
    encoder_layers: int = Field(3, ge=1, le=1024, description="depth of the deep encoder")
    decoder_layers: int = Field(1, ge=1, le=1024, description="depth of the shallow decoder")
    dropout: float = Field(0.0, ge=0, lt=1)
    share_log_std: float = Field(-0.5, description="initial log std of the logit-normal exploration of the share weight")


#: The paper's sizes. d_model 1024 and feed-forward 2048 (torch's default) make the
#: 60 + 6 layers exactly 579,594,240 parameters, the paper's 579,920,902 less 326,662
#: (which is also its 120 + 12-layer count less twice the layers): the embeddings and
#: heads of the paper hold 326,662 parameters, ours fewer (see docs/lambo.md).
PRESETS: Dict[str, AEDConfig] = {
    "m": AEDConfig(d_model=1024, nhead=16, dim_feedforward=2048, encoder_layers=60, decoder_layers=6),
    "l": AEDConfig(d_model=1024, nhead=16, dim_feedforward=2048, encoder_layers=120, decoder_layers=12),
}
PAPER_PARAMETERS = {"m": 579_920_902, "l": 1_159_515_142}


class InputEmbedding(nn.Module):
    """UE, MEC and prompt embeddings: each a learnable layer to d_model."""

    def __init__(self, num_servers: int, d_model: int):
        super().__init__()
        self.ue = nn.Sequential(nn.Linear(ue_feature_dim(num_servers), d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        self.mec = nn.Linear(mec_feature_dim(num_servers), d_model)
        self.prompt = nn.Embedding(len(VOCABULARY), d_model, padding_idx=0)

    def embed_prompt(self, token_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, d): mean of the non-pad token embeddings."""
        e = self.prompt(token_ids)
        keep = (token_ids != 0).unsqueeze(-1).to(e.dtype)
        return (e * keep).sum(1) / keep.sum(1).clamp(min=1.0)


@dataclass
class Rollout:
    """One decoded batch: the decisions and what the teacher-forced pass needs."""

    assign: np.ndarray  # (B, N) 0 = local, k = server k-1
    share: np.ndarray  # (B, N)
    z: np.ndarray  # (B, N) the weight's logit (sampled or the mean)
    weight: np.ndarray  # (B, N) sigmoid(z) for offloaded UEs, 0 for local ones
    mec: np.ndarray  # (B, N, 2K) MEC features before each decision
    mask: np.ndarray  # (B, N, K+1) feasible options at each step
    options: np.ndarray  # (B, N, K+1, OPTION_FEATURES) each option's features at each step
    entropy: np.ndarray  # (B, N) entropy of the offloading softmax at each step


class AED(nn.Module):
    def __init__(self, cfg: AEDConfig, num_servers: int, data_mean: float = 2e8, cycles_mean: float = 1e9,
                 value_head: bool = False):
        super().__init__()
        self.cfg = cfg
        self.num_servers = num_servers
        self.data_mean, self.cycles_mean = float(data_mean), float(cycles_mean)
        d, k = cfg.d_model, num_servers
        self.ie = InputEmbedding(k, d)
        enc = nn.TransformerEncoderLayer(d, cfg.nhead, cfg.dim_feedforward, cfg.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(enc, cfg.encoder_layers, enable_nested_tensor=False)
        dec = nn.TransformerDecoderLayer(d, cfg.nhead, cfg.dim_feedforward, cfg.dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(dec, cfg.decoder_layers)
        self.prev = nn.Linear(k + 2, d)  # one-hot of the previous decision + its weight
        self.start = nn.Parameter(torch.zeros(d))
        self.project = nn.Linear(d, d)  # the linear projection before the two heads
        self.offload_head = nn.Linear(d, k + 1)  # softmax head: a logit per option from the state ...
        self.option_state = nn.Linear(d, d)  # ... plus a score of the option's own features against it
        self.option_features = nn.Linear(OPTION_FEATURES, d)
        self.option_score = nn.Linear(d, 1)
        self.share_head = nn.Linear(d, k + 1)  # sigmoid head (logit of the share, per option)
        self.share_log_std = nn.Parameter(torch.tensor(float(cfg.share_log_std)))
        self.value = nn.Linear(d, 1) if value_head else None

    # -- building blocks -----------------------------------------------------------
    def encode(self, ue: torch.Tensor, prompt_ids: torch.Tensor):
        p = self.ie.embed_prompt(prompt_ids)
        return self.encoder(self.ie.ue(ue) + p[:, None]), p

    def _tokens(self, memory, p, mec, prev):
        """Decoder tokens (B, T, d) for UEs 0..T-1 from their MEC features and the
        previous decisions' one-hot + share (prev[:, 0] is unused: the start token)."""
        t = mec.shape[1]
        prev_e = self.prev(prev)
        prev_e = torch.cat([self.start.expand(prev.shape[0], 1, -1), prev_e[:, 1:]], dim=1)
        return memory[:, :t] + self.ie.mec(mec) + prev_e + p[:, None]

    def _heads(self, h, mask, options):
        h = torch.relu(self.project(h))
        fit = torch.tanh(self.option_state(h).unsqueeze(-2) + self.option_features(options))
        logits = (self.offload_head(h) + self.option_score(fit)[..., 0]).masked_fill(~mask, float("-inf"))
        return logits, self.share_head(h), h

    def inputs(self, inst: Instances, prompt: str):
        ue = torch.from_numpy(ue_features(inst, self.data_mean, self.cycles_mean))
        ids = torch.tensor([tokenize(prompt)] * inst.batch_size, dtype=torch.long)
        return ue, ids

    # -- decoding --------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, inst: Instances, prompt: str, greedy: bool = False,
                generator: Optional[torch.Generator] = None) -> Rollout:
        """Decide UE by UE, masking infeasible options; every decision is feasible."""
        if inst.num_servers != self.num_servers:
            raise ValueError(f"model has {self.num_servers} servers, instances {inst.num_servers}")
        b, n, k = inst.batch_size, inst.num_ues, inst.num_servers
        ue, ids = self.inputs(inst, prompt)
        memory, p = self.encode(ue, ids)
        m_share = inst.min_share  # (B, N, K)
        remaining = np.ones((b, k))
        assign = np.zeros((b, n), dtype=np.int64)
        share, z_all, ent, weights = np.zeros((b, n)), np.zeros((b, n)), np.zeros((b, n)), np.zeros((b, n))
        mec = np.zeros((b, n, mec_feature_dim(k)), dtype=np.float32)
        prev = np.zeros((b, n, k + 2), dtype=np.float32)
        mask = np.zeros((b, n, k + 1), dtype=bool)
        opts = np.zeros((b, n, k + 1, OPTION_FEATURES), dtype=np.float32)
        std = float(torch.exp(self.share_log_std))
        rows = np.arange(b)
        # demand_to_come[:, t]: sum over UEs u >= t of min(m_{u,k}, 2)
        capped = np.minimum(m_share, 2.0)
        demand_to_come = np.cumsum(capped[:, ::-1], axis=1)[:, ::-1]
        for t in range(n):
            mec[:, t] = mec_features(remaining, inst.server_hz, demand_to_come[:, t], np.full(b, (n - t) / n))
            mask[:, t, 0] = True
            mask[:, t, 1:] = m_share[:, t] <= remaining
            tok = self._tokens(memory, p, torch.from_numpy(mec[:, : t + 1]), torch.from_numpy(prev[:, : t + 1]))
            h = self.decoder(tok, memory, tgt_mask=_causal(t + 1), tgt_is_causal=True)[:, -1]
            opts[:, t] = option_features(inst, t, remaining)
            logits, mu, _ = self._heads(h, torch.from_numpy(mask[:, t]), torch.from_numpy(opts[:, t]))
            probs = torch.softmax(logits, -1)
            ent[:, t] = (-(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)).numpy()
            a = probs.argmax(-1) if greedy else torch.multinomial(probs, 1, generator=generator)[:, 0]
            a = a.numpy()
            mu_a = mu.gather(1, torch.from_numpy(a)[:, None])[:, 0].numpy()
            z = mu_a if greedy else mu_a + std * torch.randn(b, generator=generator).numpy()
            weight = 1.0 / (1.0 + np.exp(-z))
            srv = np.clip(a - 1, 0, k - 1)
            on = a > 0
            least = np.where(on, m_share[rows, t, srv], 0.0)
            remaining[rows[on], srv[on]] -= least[on]
            remaining = np.maximum(remaining, 0.0)
            assign[:, t], share[:, t], z_all[:, t], weights[:, t] = a, least, z, np.where(on, weight, 0.0)
            if t + 1 < n:
                prev[rows, t + 1, a] = 1.0
                prev[:, t + 1, k + 1] = weights[:, t]
        share = share + _split_room(assign, weights, remaining)
        return Rollout(assign, share, z_all, weights, mec, mask, opts, ent)

    def teacher_forced(self, inst: Instances, prompt: str, ro: Rollout):
        """Log-probabilities (B, N) of a recorded rollout's decisions (offload + share),
        the offloading entropy (B, N), and the decoder states (B, N, d), with grad."""
        b, n, k = inst.batch_size, inst.num_ues, inst.num_servers
        ue, ids = self.inputs(inst, prompt)
        memory, p = self.encode(ue, ids)
        prev = np.zeros((b, n, k + 2), dtype=np.float32)
        if n > 1:
            prev[np.arange(b)[:, None], np.arange(1, n)[None, :], ro.assign[:, :-1]] = 1.0
            prev[:, 1:, k + 1] = ro.weight[:, :-1]
        tok = self._tokens(memory, p, torch.from_numpy(ro.mec), torch.from_numpy(prev))
        h = self.decoder(tok, memory, tgt_mask=_causal(n), tgt_is_causal=True)
        logits, mu, hidden = self._heads(h, torch.from_numpy(ro.mask), torch.from_numpy(ro.options))
        logp_all = torch.log_softmax(logits, -1)
        a = torch.from_numpy(ro.assign)
        logp = logp_all.gather(-1, a[..., None])[..., 0]
        probs = logp_all.exp()
        entropy = -(probs * logp_all.masked_fill(~torch.from_numpy(ro.mask), 0.0)).sum(-1)
        mu_a = mu.gather(-1, a[..., None])[..., 0]
        std = torch.exp(self.share_log_std)
        z = torch.from_numpy(ro.z).to(mu_a.dtype)
        logp_z = -0.5 * ((z - mu_a) / std) ** 2 - torch.log(std)
        logp = logp + torch.where(a > 0, logp_z, torch.zeros_like(logp_z))
        return logp, entropy, hidden

    def values(self, inst: Instances, prompt: str, ro: Rollout) -> torch.Tensor:
        """Critic use: (B, N) predicted cost-to-go after each decoder state."""
        if self.value is None:
            raise ValueError("this AED has no value head (build it with value_head=True to use it as the critic)")
        _, _, hidden = self.teacher_forced(inst, prompt, ro)
        return self.value(hidden)[..., 0]


OPTION_FEATURES = 6


def option_features(inst: Instances, t: int, remaining: np.ndarray) -> np.ndarray:
    """(B, K+1, 6) what each option (local, server 1..K) means for UE t now: its latency
    if it got all the remaining room, / T_max (capped at 2); its energy / that of running
    the mean task locally; its least share (capped at 2); the remaining share; the CPU
    speed / the fastest server's; 1 for local."""
    b, k = remaining.shape
    t_max = inst.max_latency_s
    c = inst.cycles[:, t]
    tx = inst.tx_time_s[:, t]
    with np.errstate(divide="ignore"):
        remote = tx + c[:, None] / (inst.server_hz * remaining)
    lat = np.concatenate([inst.local_latency_s[:, t, None], remote], 1) / t_max
    ref = inst.compute_power_w * float(np.mean(inst.cycles)) / inst.local_hz
    energy = np.concatenate([inst.local_energy_j[:, t, None], inst.tx_power_w * tx], 1) / ref
    least = np.concatenate([np.zeros((b, 1)), inst.min_share[:, t]], 1)
    room = np.concatenate([np.ones((b, 1)), remaining], 1)
    speed = np.concatenate([np.full((b, 1), inst.local_hz), np.broadcast_to(inst.server_hz, (b, k))], 1) / inst.server_hz.max()
    local = np.zeros((b, k + 1))
    local[:, 0] = 1.0
    feats = np.stack([np.minimum(lat, 2.0), np.minimum(energy, 4.0), np.minimum(least, 2.0), room, speed, local], -1)
    return feats.astype(np.float32)


def _split_room(assign: np.ndarray, weight: np.ndarray, room: np.ndarray) -> np.ndarray:
    """(B, N) each offloaded UE's part of its server's leftover room (B, K), in
    proportion to the weights of the server's UEs."""
    b, k = room.shape
    on = assign > 0
    srv = np.clip(assign - 1, 0, k - 1)
    total = np.zeros((b, k))
    rows = np.broadcast_to(np.arange(b)[:, None], assign.shape)
    np.add.at(total, (rows[on], srv[on]), weight[on])
    tot = np.take_along_axis(total, srv, 1)
    part = np.take_along_axis(room, srv, 1) * np.where(tot > 0, weight / np.where(tot > 0, tot, 1.0), 0.0)
    return np.where(on, part, 0.0)


def _causal(t: int) -> torch.Tensor:
    return nn.Transformer.generate_square_subsequent_mask(t)


def count_parameters(model: nn.Module) -> Dict[str, int]:
    enc = sum(p.numel() for p in model.encoder.parameters())
    dec = sum(p.numel() for p in model.decoder.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "encoder": enc, "decoder": dec, "embedding_and_heads": total - enc - dec}


def meta_parameter_count(preset: Literal["m", "l"], num_servers: int = 4) -> Dict[str, int]:
    """The preset's parameter counts, built on the meta device (nothing allocated)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown AED preset {preset!r}; the presets are {', '.join(PRESETS)}")
    with torch.device("meta"):
        model = AED(PRESETS[preset], num_servers)
    counts = count_parameters(model)
    assert all(p.is_meta for p in model.parameters())
    return counts
