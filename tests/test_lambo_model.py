"""LAMBO input embedding and AED: the prompt tokenizer, masked decoding (every decision
feasible), the paper's sizes on the meta device, and a short ACL run that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgepilot.cloud_trainer.lambo.acl import ACLConfig, load_checkpoint, train_acl
from edgepilot.cloud_trainer.lambo.embedding import VOCABULARY, mec_feature_dim, tokenize, ue_feature_dim, ue_features
from edgepilot.cloud_trainer.lambo.model import AED, PAPER_PARAMETERS, AEDConfig, meta_parameter_count
from edgepilot.cloud_trainer.lambo.scenario import LamboScenario
from edgepilot.cloud_trainer.lambo.system import PromptError, evaluate, sample_instances

TINY = {"d_model": 32, "nhead": 2, "dim_feedforward": 64, "encoder_layers": 1}


def test_tokenizer_maps_the_prompts_and_refuses_unknown_words_naming_the_vocabulary():
    lat, en = tokenize("Minimum latency"), tokenize("  minimum   ENERGY ")
    assert lat != en and len(lat) == len(en)
    assert [VOCABULARY[i] for i in lat if i] == ["minimum", "latency"]
    with pytest.raises(PromptError, match="vocabulary is minimum, latency, energy"):
        tokenize("Minimum throughput")
    with pytest.raises(PromptError, match="vocabulary"):
        tokenize("")
    with pytest.raises(PromptError, match="the prompts are"):
        tokenize("minimum minimum")  # known words, no objective


def test_ue_features_are_normalized():
    scen = LamboScenario()
    inst = sample_instances(scen, 16, np.random.default_rng(0))
    f = ue_features(inst, 2e8, 1e9)
    assert f.shape == (16, 50, ue_feature_dim(4)) and f.dtype == np.float32
    assert np.isfinite(f).all() and np.abs(f).max() <= 3.0
    assert mec_feature_dim(4) == 13


def _check_feasible(scen: LamboScenario, seed: int):
    torch.manual_seed(seed)
    model = AED(AEDConfig(**TINY), scen.num_servers)
    inst = sample_instances(scen, 100, np.random.default_rng(seed))
    masked = 0
    for prompt in ("Minimum latency", "Minimum energy"):
        for greedy in (False, True):
            ro = model.rollout(inst, prompt, greedy=greedy, generator=torch.Generator().manual_seed(seed))
            ev = evaluate(inst, ro.assign, ro.share)
            assert ev.feasible.all(), f"{(~ev.feasible).sum()} infeasible of 100 ({prompt}, greedy={greedy})"
            assert ro.mask[..., 0].all()  # local always offered
            chosen = np.take_along_axis(ro.mask, ro.assign[..., None], -1)[..., 0]
            assert chosen.all()
            masked += int((~ro.mask).sum())
            if not greedy:  # sampling explores the servers (greedy may keep everything local untrained)
                assert (ro.assign > 0).any()
    return masked


def test_masked_decoding_is_100_percent_feasible_on_random_instances():
    assert _check_feasible(LamboScenario(tasks={"num_ues": 20}), 0) > 0
    # scarce servers: masks bite (capacity runs out, uploads too slow for some servers)
    scarce = LamboScenario(tasks={"num_ues": 20}, servers={"cpu_hz": [2e9, 3e9]}, radio={"bandwidth_hz": 5e6})
    assert _check_feasible(scarce, 1) > 1000


def test_an_unknown_prompt_is_refused_by_the_model():
    scen = LamboScenario(tasks={"num_ues": 4})
    model = AED(AEDConfig(**TINY), scen.num_servers)
    with pytest.raises(PromptError):
        model.rollout(sample_instances(scen, 2, np.random.default_rng(0)), "Maximum fun")


@pytest.mark.parametrize("preset,enc,dec", [("m", 60, 6), ("l", 120, 12)])
def test_paper_sizes_on_the_meta_device(preset, enc, dec):
    counts = meta_parameter_count(preset)
    layers = counts["encoder"] + counts["decoder"]
    # d_model 1024 / feed-forward 2048: the layers are the paper's count less its 326,662
    # embedding-and-head parameters (579,920,902 - 326,662 and 1,159,515,142 - 326,662)
    assert layers == PAPER_PARAMETERS[preset] - 326_662
    assert counts["total"] == layers + counts["embedding_and_heads"]
    assert abs(counts["total"] - PAPER_PARAMETERS[preset]) / PAPER_PARAMETERS[preset] < 0.01
    assert (counts["encoder"], counts["decoder"]) == (enc * 8_399_872, dec * 12_600_320)  # per layer at d 1024, ff 2048


def test_a_short_acl_run_improves_both_prompts_over_the_untrained_model(tmp_path):
    scen = LamboScenario(tasks={"num_ues": 10})
    cfg = ACLConfig(steps=100, batch_size=32, eval_every=50, eval_instances=64, model=AEDConfig(**TINY),
                    critic=AEDConfig(**TINY))
    rows = []
    res = train_acl(scen, cfg, tmp_path, progress=rows.append)
    first, last = res.history[0], res.history[-1]
    assert rows == res.history and last["step"] == 100
    for key in ("latency", "energy"):
        assert last[key] < first[key] * 0.97, (key, first[key], last[key])
        assert last[f"{key}_feasible"] == 1.0
    assert last["energy"] < last["energy_random"]
    actor, loaded = load_checkpoint(res.checkpoint)
    assert loaded == scen
    inst = sample_instances(scen, 4, np.random.default_rng(123))
    a = actor.rollout(inst, "Minimum energy", greedy=True)
    b = res.actor.rollout(inst, "Minimum energy", greedy=True)
    np.testing.assert_array_equal(a.assign, b.assign)


def test_the_teacher_forced_pass_sees_what_the_step_by_step_decoder_saw():
    """Training recomputes a rollout in one causal pass: its per-step offloading
    distribution must be the one the decisions were sampled from."""
    scen = LamboScenario(tasks={"num_ues": 12})
    torch.manual_seed(0)
    model = AED(AEDConfig(**TINY), scen.num_servers)
    inst = sample_instances(scen, 8, np.random.default_rng(2))
    ro = model.rollout(inst, "Minimum latency", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logp, entropy, _ = model.teacher_forced(inst, "Minimum latency", ro)
    np.testing.assert_allclose(entropy.numpy(), ro.entropy, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(logp).all()  # every recorded decision was unmasked
