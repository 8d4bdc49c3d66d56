"""Input embedding (IE, section IV-B): the prompt tokenizer and the normalized UE and MEC
features (numpy); the learnable layers mapping them to d_model vectors are
``model.InputEmbedding``.

Normalization (fixed by the scenario, so a model carries it in its checkpoint):
* UE features (channel and task), per UE: D_n / mean D, C_n / mean C, the local
  latency / T_max, and per server k: the upload time / T_max (capped at 2), the least
  share m_{n,k} (capped at 2; >1 means the server cannot take the UE), and
  log2(1 + r_{n,k} / 1 Mbit/s) / 10.
* MEC features, per server: the remaining share R_k (1 at the start, lowered by each
  decision), the remaining capacity R_k F_k / max F and the demand of the UEs still to
  decide (log1p of the sum of their least shares); plus the fraction of UEs still to
  decide.
* Prompt: token ids over a fixed vocabulary, embedded and averaged.
"""

from __future__ import annotations

import re
from typing import List, Sequence

import numpy as np

from edgepilot.cloud_trainer.lambo.system import Instances, PromptError, objective_of

PAD = "<pad>"
#: the fixed vocabulary of the prompt tokenizer
VOCABULARY = (PAD, "minimum", "latency", "energy")
MAX_PROMPT_TOKENS = 4


def tokenize(prompt: str) -> List[int]:
    """Token ids of a prompt (lower-cased words), padded to MAX_PROMPT_TOKENS.

    A word outside the vocabulary, or a prompt the system has no objective for, is
    refused with :class:`PromptError` naming the vocabulary and the prompts.
    """
    words = re.findall(r"[a-z]+", str(prompt).lower())
    unknown = [w for w in words if w not in VOCABULARY or w == PAD]
    if unknown or not words:
        raise PromptError(f"prompt {prompt!r}: unknown word(s) {unknown or ['(empty)']}; the vocabulary is "
                          f"{', '.join(VOCABULARY[1:])}")
    objective_of(" ".join(words))  # refuses in-vocabulary prompts that name no objective
    ids = [VOCABULARY.index(w) for w in words][:MAX_PROMPT_TOKENS]
    return ids + [0] * (MAX_PROMPT_TOKENS - len(ids))


def ue_feature_dim(num_servers: int) -> int:
    return 3 + 3 * num_servers


def mec_feature_dim(num_servers: int) -> int:
    return 3 * num_servers + 1


def ue_features(inst: Instances, data_mean: float, cycles_mean: float) -> np.ndarray:
    """(B, N, 3 + 3K) normalized UE embedding inputs (float32)."""
    t_max = inst.max_latency_s
    b, n = inst.cycles.shape
    per_ue = np.stack([inst.data_bits / data_mean, inst.cycles / cycles_mean, inst.local_latency_s / t_max], axis=-1)
    tx = np.minimum(inst.tx_time_s / t_max, 2.0)
    m = np.minimum(inst.min_share, 2.0)
    rate = np.log2(1.0 + inst.rate_bps / 1e6) / 10.0
    return np.concatenate([per_ue, tx, m, rate], axis=-1).astype(np.float32)


def mec_features(remaining_share: np.ndarray, server_hz: Sequence[float], demand: np.ndarray,
                 left_fraction: np.ndarray) -> np.ndarray:
    """(..., 3K + 1) normalized MEC embedding inputs: the remaining shares R_k (..., K),
    the remaining capacity R_k F_k / max F, the demand still to come
    log1p(sum of the undecided UEs' least shares m_{u,k}, each capped at 2) (..., K), and
    the fraction of UEs still undecided (...,)."""
    f = np.asarray(server_hz, dtype=np.float64)
    r = np.asarray(remaining_share, dtype=np.float64)
    left = np.asarray(left_fraction, dtype=np.float64)[..., None]
    return np.concatenate([r, r * f / f.max(), np.log1p(demand), left], axis=-1).astype(np.float32)
