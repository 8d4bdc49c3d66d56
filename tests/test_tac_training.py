"""TAC centralized training (Algorithm 1 lines 1-12) on a tiny scenario."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from edgepilot.cloud_trainer.checkpoint import load_actor, load_checkpoint
from edgepilot.cloud_trainer.common import RewardTransform, actor_objective
from edgepilot.cloud_trainer.models import ModelConfig, TACActor, TACCritic
from edgepilot.cloud_trainer.scenario import scenario_from_dict
from edgepilot.cloud_trainer.tac import QUICK_OVERRIDES, TACConfig, train_tac
from tests.tb_events import tensorboard_scalars


def _benchmark_refine():
    """refine_with_critic lives in the N = 4 benchmark, its only user."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "dtac_exhaustive_n4.py"
    spec = importlib.util.spec_from_file_location("dtac_exhaustive_n4", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.refine_with_critic

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
    env = ckpt["environment"]  # the run is attributable: a seed reproduces it only here
    assert env["numpy"] == np.__version__ and env["torch"] == torch.__version__ and env["cpus"] == os.cpu_count()
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
    # the same curve as TensorBoard events, at each row's round, the resumed rows after the first run's
    events = tensorboard_scalars(tmp_path / "tensorboard" / "tac")
    assert [(s, v) for s, v in events["tac/weighted_reward"]] == [(h["round"], pytest.approx(h["weighted_reward"])) for h in res2.history]
    assert "tac/critic_loss" in events and "tac/noise_std" in events


def test_training_is_seeded(tmp_path):
    scen = scenario_from_dict(TINY)
    a = train_tac(scen, tiny_cfg(episodes=1), tmp_path / "a")
    b = train_tac(scen, tiny_cfg(episodes=1), tmp_path / "b")
    sa, sb = load_checkpoint(a.checkpoint)["actor"], load_checkpoint(b.checkpoint)["actor"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


_ROUND_ENVS, _ROUND_SEED = 6, 5  # the played round of the two helpers below


def _played_round():
    """A tiny scenario (1-2 UEs per edge server: padded rounds), its first round of
    _ROUND_ENVS envs and an untrained actor's actions there."""
    from edgepilot.cloud_trainer.envs.simulator import BatchSimulator
    from edgepilot.cloud_trainer.play import observation_tensors

    scen = scenario_from_dict(TINY)
    obs = BatchSimulator(scen, batch_size=_ROUND_ENVS, seed=_ROUND_SEED).reset()
    s, e, m = observation_tensors(obs)
    with torch.no_grad():
        acts = TACActor(ModelConfig(num_channels=scen.radio.num_channels))(s, e, m)
    return scen, obs, m, acts


def _assert_scored_like_the_simulator(scen, played, changed, env, reward, rows_to_check):
    """Row j of ``changed`` played in round env[j] (the other envs as ``played``) gets the
    reward the simulator gives there."""
    import numpy as np

    from edgepilot.cloud_trainer.envs.simulator import BatchSimulator

    for j in rows_to_check:
        twin = BatchSimulator(scen, batch_size=_ROUND_ENVS, seed=_ROUND_SEED)
        twin.reset()
        rows = lambda f, j=j: np.where(np.arange(_ROUND_ENVS)[:, None] == int(env[j]), getattr(changed, f)[j], getattr(played, f))  # noqa: E731
        step = twin.step(type(played)(*(rows(f) for f in ("offload", "channel", "transmit_power_ratio", "cpu_freq_ratio"))))
        assert np.allclose(step.reward[int(env[j])], reward[j].numpy(), rtol=1e-5)


def _subset_deviations(deviations, seed: int):
    """40 copies of each of the 6 envs of :func:`_played_round` from ``deviations`` (a
    tac.*_deviations function): the scenario, the played and changed decisions, the env
    index, the reward and the real-UE mask of each copy."""
    from edgepilot.cloud_trainer.play import decision_from_actions

    scen, obs, m, acts = _played_round()
    env, dev, reward = deviations(scen.network_params, obs.tasks, acts, 40, torch.Generator().manual_seed(seed))
    assert len(env) == 240 and reward.shape == (240, scen.max_ues, 2)
    return scen, acts, dev, decision_from_actions(*acts), decision_from_actions(*dev), env, reward, m[env].numpy()


def test_local_deviations_switch_real_ues_to_local_at_a_drawn_b_and_score_like_the_simulator():
    from edgepilot.cloud_trainer.counterfactuals import local_deviations
    from edgepilot.edge_agent.actions import MIN_RATIO
    from edgepilot.edge_agent.system_model import LOCAL

    scen, _, _, played, changed, env, reward, real = _subset_deviations(local_deviations, 1)
    switched = (changed.cpu_freq_ratio != played.cpu_freq_ratio[env]) & real
    # a switched UE computes locally at a b drawn from the range; the rest is as played
    assert (changed.offload[switched] == LOCAL).all()
    assert (changed.cpu_freq_ratio[switched] >= MIN_RATIO).all() and changed.cpu_freq_ratio[switched].std() > 0.2
    keep = ~switched
    assert (changed.offload[keep] == played.offload[env][keep]).all() and (changed.channel == played.channel[env]).all()
    assert (changed.transmit_power_ratio == played.transmit_power_ratio[env]).all()
    assert not switched[~real].any()  # padded UEs keep theirs
    # rows range from a few switched UEs to every real UE of the round
    share = switched.sum(1) / real.sum(1)
    assert share.min() < 0.5 and (share == 1).any()
    _assert_scored_like_the_simulator(scen, played, changed, env, reward, (0, 7, 239))


def test_offload_deviations_give_a_random_subset_of_real_ues_another_offload_choice():
    import numpy as np

    from edgepilot.cloud_trainer.counterfactuals import offload_deviations

    scen, acts, dev, played, changed, env, reward, real = _subset_deviations(offload_deviations, 2)
    switched = changed.offload != played.offload[env]
    assert not switched[~real].any()  # padded UEs keep theirs
    # a switched UE draws either of its two other choices, and the vector keeps its values
    # (argmax = what is stored)
    was = played.offload[env][switched]
    common = np.bincount(was).argmax()
    assert set(changed.offload[switched][was == common].tolist()) == {0, 1, 2} - {common}
    assert torch.allclose(dev[0].sort(-1).values, acts[0][env].sort(-1).values)
    assert (changed.channel == played.channel[env]).all() and (changed.cpu_freq_ratio == played.cpu_freq_ratio[env]).all()
    share = switched.sum(1) / real.sum(1)
    assert share.min() < 0.5 and (share == 1).any()
    _assert_scored_like_the_simulator(scen, played, changed, env, reward, (0, 11, 239))


def test_local_ratio_loss_trains_b_as_if_ues_computed_locally():
    from edgepilot.cloud_trainer.common import actor_loss
    from edgepilot.cloud_trainer.counterfactuals import local_ratio_loss

    class Critic(torch.nn.Module):  # b matters only to a local UE, a only to an offloading one
        def forward(self, s, e, p_x, p_l, a, b, m):
            energy = -p_x[..., 0] * (b - 0.3) ** 2 - p_x[..., 1:].sum(-1) * 0.1 * a
            return torch.stack([torch.zeros_like(energy), energy], -1)

    cfg = TACConfig(entropy_coef=0.0)
    p_x = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]).repeat(64, 1, 1)  # every UE offloads
    b = torch.tensor([[0.9, 0.05, 0.6]]).repeat(64, 1).requires_grad_(True)
    a = torch.ones(64, 3, requires_grad=True)
    acts = (p_x, torch.full((64, 3, 4), 0.25), a, b)
    s, e = torch.rand(64, 3, 6), torch.zeros(64, 3, dtype=torch.int64)
    m = torch.tensor([[True, True, False]]).repeat(64, 1)  # the third UE is padding
    actor_loss(Critic(), s, e, m, acts, cfg).backward()
    assert b.grad.abs().max() == 0 and a.grad.abs().max() > 0  # at the played action (22) trains a, not b
    a.grad = None
    local_ratio_loss(Critic(), s, e, m, acts, cfg, torch.Generator().manual_seed(0)).backward()
    # descending the loss moves each real UE's b toward 0.3, the best b if it computed locally
    assert (b.grad[:, 0] >= 0).all() and b.grad[:, 0].sum() > 0
    assert (b.grad[:, 1] <= 0).all() and b.grad[:, 1].sum() < 0
    assert b.grad[:, 2].abs().max() == 0 and a.grad is None  # padding never switches; a is not trained here


def _joint_value(critic, s, e, m, x, l, a, b, cfg):
    onehot = lambda idx, k: torch.nn.functional.one_hot(torch.as_tensor(idx), k).float()[None]  # noqa: E731
    return actor_objective(critic(s, e, onehot(x, 3), onehot(l, 2), a, b, m), m, cfg.actor_w_time, cfg.actor_w_energy).item()


def test_critic_refinement_over_every_ue_finds_the_critics_best_joint_choice():
    import itertools

    refine_with_critic = _benchmark_refine()

    torch.manual_seed(3)
    critic, cfg = TACCritic(ModelConfig(num_channels=2, d_model=16, ffn_dim=32)).eval(), TACConfig()
    s, e, m = torch.rand(1, 2, 6), torch.zeros(1, 2, dtype=torch.int64), torch.tensor([[True, True]])
    acts = (torch.softmax(torch.randn(1, 2, 3), -1), torch.softmax(torch.randn(1, 2, 2), -1), torch.rand(1, 2), torch.rand(1, 2))
    x, l, a, b = refine_with_critic(critic, s, e, m, acts, cfg, sweeps=1, group=2)
    assert torch.equal(a, acts[2]) and torch.equal(b, acts[3])  # only the discrete choices move
    opts = list(itertools.product(range(3), range(2)))
    values = {(o0, o1): _joint_value(critic, s, e, m, [o0[0], o1[0]], [o0[1], o1[1]], a, b, cfg) for o0 in opts for o1 in opts}
    best = max(values, key=values.get)
    got = tuple((int(x[0, n].argmax()), int(l[0, n].argmax())) for n in range(2))
    assert values[got] == pytest.approx(values[best]) and sorted(set(values.values()))[-1] > sorted(set(values.values()))[0]


def test_one_ue_refinement_reaches_a_point_no_single_ue_change_improves_and_skips_padding():
    refine_with_critic = _benchmark_refine()

    torch.manual_seed(4)
    critic, cfg = TACCritic(ModelConfig(num_channels=2, d_model=16, ffn_dim=32)).eval(), TACConfig()
    s, e = torch.rand(1, 4, 6), torch.zeros(1, 4, dtype=torch.int64)
    m = torch.tensor([[True, True, True, False]])
    acts = (torch.softmax(torch.randn(1, 4, 3), -1), torch.softmax(torch.randn(1, 4, 2), -1), torch.rand(1, 4), torch.rand(1, 4))
    x, l, a, b = refine_with_critic(critic, s, e, m, acts, cfg, sweeps=20, group=1)
    xs, ls = x[0].argmax(-1).tolist(), l[0].argmax(-1).tolist()
    assert xs[3] == acts[0][0, 3].argmax() and ls[3] == acts[1][0, 3].argmax()  # the padded UE keeps the actor's choice
    start = _joint_value(critic, s, e, m, acts[0][0].argmax(-1), acts[1][0].argmax(-1), a, b, cfg)
    here = _joint_value(critic, s, e, m, xs, ls, a, b, cfg)
    assert here >= start - 1e-6
    for n in range(3):
        for ox in range(3):
            for ol in range(2):
                dx, dl = list(xs), list(ls)
                dx[n], dl[n] = ox, ol
                assert _joint_value(critic, s, e, m, dx, dl, a, b, cfg) <= here + 1e-6


