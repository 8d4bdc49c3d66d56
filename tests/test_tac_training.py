"""TAC centralized training (Algorithm 1 lines 1-12) on a tiny scenario."""

from __future__ import annotations

import torch

from cloud_trainer.checkpoint import load_actor, load_checkpoint
from cloud_trainer.scenario import scenario_from_dict
from cloud_trainer.tac import QUICK_OVERRIDES, RewardTransform, TACConfig, actor_objective, train_tac

TINY = {"name": "tiny", "topology": {"num_edge_servers": 2, "edge_radius_m": 100, "cloud_radius_m": 300, "ues_per_edge_min": 1, "ues_per_edge_max": 2},
        "tasks": {"num_task_types": 10}, "episode": {"rounds": 10}}


def tiny_cfg(**kw) -> TACConfig:
    return TACConfig.from_dict({**QUICK_OVERRIDES, "episodes": 2, "rounds_per_episode": 12, "normalizer_samples": 300, "checkpoint_every": 6, **kw})


def test_actor_objective_takes_worst_ue_time_and_sums_energy():
    q = torch.tensor([[[-1.0, -0.5], [-4.0, -0.25], [-100.0, -7.0]]])
    mask = torch.tensor([[True, True, False]])  # the third UE is padding
    assert actor_objective(q, mask, 1.0, 1.0).item() == -4.0 - 0.75


def test_clip_transform_keeps_the_time_energy_ratio():
    t = RewardTransform([10.0, 10.0], "clip", 100.0)
    out = t(torch.tensor([[-5.0, -2.0], [-1e6, -1e6]]))
    assert torch.allclose(out, torch.tensor([[-0.5, -0.2], [-10.0, -10.0]]))


def test_train_tac_writes_a_checkpoint_the_exporter_loads_and_resumes(tmp_path):
    scen = scenario_from_dict(TINY)
    res = train_tac(scen, tiny_cfg(), tmp_path)
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["kind"] == "tac" and ckpt["scenario_hash"] == scen.scenario_hash()
    assert ckpt["progress"]["round"] == 24 and ckpt["optimizers"]["actor"]["state"]
    actor, _ = load_actor(res.checkpoint)
    for n in (1, 3, 7):  # any N without retraining
        p_x, p_l, a, b = actor(torch.rand(2, n, 6), torch.zeros(2, n, dtype=torch.int64))
        assert p_x.shape == (2, n, 3) and p_l.shape == (2, n, scen.radio.num_channels)
        assert torch.allclose(p_x.sum(-1), torch.ones(2, n)) and bool(((a > 0) & (a <= 1)).all())
    assert (tmp_path / "curve_tac.csv").read_text().count("\n") >= 2
    # resume: more episodes continue from the stored round, not from zero
    res2 = train_tac(scen, tiny_cfg(episodes=3), tmp_path, resume=True)
    assert load_checkpoint(res2.checkpoint)["progress"]["round"] == 36
    assert res2.history[0]["round"] == res.history[0]["round"]  # history carried over


def test_training_is_seeded(tmp_path):
    scen = scenario_from_dict(TINY)
    a = train_tac(scen, tiny_cfg(episodes=1), tmp_path / "a")
    b = train_tac(scen, tiny_cfg(episodes=1), tmp_path / "b")
    sa, sb = load_checkpoint(a.checkpoint)["actor"], load_checkpoint(b.checkpoint)["actor"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
