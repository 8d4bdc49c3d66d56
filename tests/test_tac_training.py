"""TAC centralized training (Algorithm 1 lines 1-12) on a tiny scenario."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from edgepilot.cloud_trainer.checkpoint import load_actor, load_checkpoint
from edgepilot.cloud_trainer.baselines import lower_bound_times
from edgepilot.cloud_trainer.models import DTACActor, ModelConfig, TACActor, TACCritic, cell_slot
from edgepilot.cloud_trainer.scenario import scenario_from_dict
from edgepilot.cloud_trainer.tac import QUICK_OVERRIDES, RewardTransform, TACConfig, actor_objective, add_discrete_exploration, train_tac
from tests.tb_events import tensorboard_scalars

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


def test_softclip_transform_keeps_the_order_of_costs_beyond_the_floor():
    t = RewardTransform([2.0, 2.0], "softclip", 5.0, soft_cap=3.0)
    costs = torch.tensor([0.5, 5.0, 9.0, 42.0, 1e6])
    out = t(-torch.stack([costs, costs], -1))[:, 0]
    # unchanged up to the floor (like "clip"), then c * (1 + ln(cost / c)), capped at 3c
    assert torch.allclose(out[:2], torch.tensor([-0.25, -2.5]))
    assert torch.isclose(out[2], torch.tensor(-5.0 * (1 + math.log(9 / 5)) / 2))
    assert out[3] < out[2] < out[1]  # a hard floor at 5 scores 9 and 42 alike
    assert torch.isclose(out[4], torch.tensor(-7.5))
    clip = RewardTransform([2.0, 2.0], "clip", 5.0)(-torch.stack([costs, costs], -1))[:, 0]
    assert clip[2] == clip[3]
    with pytest.raises(ValueError, match="soft_cap"):
        RewardTransform([2.0, 2.0], "softclip", 5.0, soft_cap=1.0)


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


def test_validation_keeps_the_best_actor_and_critic_and_resume_carries_it(tmp_path):
    from edgepilot.cloud_trainer.evaluate import evaluate_policy, load_policy
    from edgepilot.cloud_trainer.tac import VALIDATION_SEED_OFFSET

    scen = scenario_from_dict(TINY)
    plain = load_checkpoint(train_tac(scen, tiny_cfg(episodes=1), tmp_path / "plain").checkpoint)
    assert "selected_round" not in plain["metrics"]  # off by default: tac.pt is the last actor (Algorithm 1)
    last = load_checkpoint(tmp_path / "plain" / "tac_last.pt")
    assert all(torch.equal(plain["actor"][k], v) for k, v in last["actor"].items())

    validated = dict(validation_rounds=3, validation_envs=4, seed=3)
    res = train_tac(scen, tiny_cfg(**validated), tmp_path / "v")
    scores = {h["round"]: h["validation_reward"] for h in res.history}
    assert sorted(scores) == [3, 6, 9, 12, 15, 18, 21, 24] and len(set(scores.values())) > 1
    final = load_checkpoint(res.checkpoint)
    chosen = final["metrics"]["selected_round"]
    assert final["metrics"]["selected_weighted_reward"] == max(scores.values()) == scores[chosen]
    # tac.pt is that actor: played like `edgepilot evaluate` plays TAC, on the validation seed
    replayed = evaluate_policy(load_policy("tac", res.checkpoint), scen, 3, 4, 3 + VALIDATION_SEED_OFFSET)["weighted_reward"]
    assert replayed == pytest.approx(scores[chosen], rel=1e-6)
    last = load_checkpoint(tmp_path / "v" / "tac_last.pt")
    assert last["progress"]["best"] == {"reward": scores[chosen], "round": chosen}
    if chosen != 24:  # the last round's pair stays in tac_last.pt for --resume
        for part in ("actor", "critic"):
            assert any(not torch.equal(final[part][k], v) for k, v in last[part].items())
            assert all(torch.equal(final[part][k], v) for k, v in last[f"best_{part}"].items())
    # resume: the candidates before the interruption still compete
    res2 = train_tac(scen, tiny_cfg(**validated, episodes=3), tmp_path / "v", resume=True)
    more = {h["round"]: h["validation_reward"] for h in res2.history}
    assert len(more) == 12 and {k: more[k] for k in scores} == scores
    assert load_checkpoint(res2.checkpoint)["metrics"]["selected_weighted_reward"] == max(more.values())


def test_delayed_actor_updates_step_the_actor_every_kth_critic_step(tmp_path):
    scen = scenario_from_dict(TINY)
    cfg = tiny_cfg(episodes=1, updates_per_round=3, actor_update_every=2)
    res = train_tac(scen, cfg, tmp_path)
    opts = load_checkpoint(res.checkpoint)["optimizers"]
    steps = {k: int(next(iter(opts[k]["state"].values()))["step"]) for k in ("actor", "critic")}
    critic_steps = (12 - cfg.warmup_rounds) * 3  # 3 critic steps per round after the warm-up
    assert steps == {"critic": critic_steps, "actor": critic_steps // 2}
    with pytest.raises(ValueError, match="actor_update_every"):
        tiny_cfg(actor_update_every=0)


def test_discrete_search_picks_each_ues_best_option_under_the_critic():
    from edgepilot.cloud_trainer.tac import discrete_search_loss, discrete_search_targets

    cost = torch.tensor([[[3.0, 1.0, 2.0], [0.5, 2.0, 1.0], [2.0, 2.5, 0.1]]])  # (1, N=3, 3): UE n's energy per offload option
    channel_cost = torch.tensor([[[1.0, 0.0, 2.0, 3.0], [4.0, 3.0, 2.0, 1.0], [0.0, 1.0, 1.0, 1.0]]])

    class Critic(torch.nn.Module):  # Q_energy of UE n = -(p_x[n] . cost[n]) - (p_l[n] . channel_cost[n]) + a term from UE 0's choice
        def forward(self, s, e, p_x, p_l, a, b, m):
            energy = -(p_x * cost).sum(-1) - (p_l * channel_cost).sum(-1) - 0.1 * p_x[..., :1, 2]
            return torch.stack([torch.zeros_like(energy), energy], -1)

    cfg = TACConfig()
    p_x = torch.softmax(torch.randn(1, 3, 3, requires_grad=True), -1)
    acts = (p_x, torch.full((1, 3, 4), 0.25), torch.ones(1, 3), torch.ones(1, 3))
    s, e, m = torch.rand(1, 3, 6), torch.zeros(1, 3, dtype=torch.int64), torch.tensor([[True, True, True]])
    assert discrete_search_targets(Critic(), s, e, m, acts, cfg, head=0).tolist() == [[1, 0, 2]]
    assert discrete_search_targets(Critic(), s, e, m, acts, cfg, head=1).tolist() == [[1, 3, 0]]
    loss = discrete_search_loss(Critic(), s, e, m, acts, cfg, head=0)
    assert torch.isclose(loss, -torch.log(p_x[0, [0, 1, 2], [1, 0, 2]]).mean())
    loss.backward()  # the gradient reaches the actor's output


_ROUND_ENVS, _ROUND_SEED = 6, 5  # the played round of the two helpers below


def _played_round():
    """A tiny scenario (1-2 UEs per edge server: padded rounds), its first round of
    _ROUND_ENVS envs and an untrained actor's actions there."""
    from edgepilot.cloud_trainer.envs.simulator import BatchSimulator
    from edgepilot.cloud_trainer.tac import observation_tensors

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
        rows = lambda f: np.where(np.arange(_ROUND_ENVS)[:, None] == int(env[j]), getattr(changed, f)[j], getattr(played, f))  # noqa: E731
        step = twin.step(type(played)(*(rows(f) for f in ("offload", "channel", "transmit_power_ratio", "cpu_freq_ratio"))))
        assert np.allclose(step.reward[int(env[j])], reward[j].numpy(), rtol=1e-5)


def test_counterfactual_deviations_change_one_real_ue_and_score_like_the_simulator():
    from edgepilot.cloud_trainer.tac import counterfactual_deviations, decision_from_actions

    scen, obs, m, acts = _played_round()
    env, dev, reward = counterfactual_deviations(scen.network_params, obs.tasks, acts, torch.Generator().manual_seed(1))
    real = int(m.sum())
    assert len(env) == 3 * real and reward.shape == (3 * real, scen.max_ues, 2)
    played, changed = decision_from_actions(*acts), decision_from_actions(*dev)
    diff = (played.offload[env] != changed.offload) | (played.channel[env] != changed.channel)
    assert (diff.sum(1) == 1).all() and m[env][torch.as_tensor(diff)].all()  # one real UE each
    # each real UE plays both other offload choices and one other channel
    ue = torch.as_tensor(diff).float().argmax(1)
    for e_i, u in zip(*m.nonzero(as_tuple=True)):
        mine = (env == e_i) & (ue == u)
        assert sorted(changed.offload[mine.numpy(), int(u)].tolist()[:2]) == sorted({0, 1, 2} - {int(played.offload[e_i, u])})
        assert int(mine.sum()) == 3 and changed.channel[mine.numpy(), int(u)][2] != played.channel[e_i, u]
    _assert_scored_like_the_simulator(scen, played, changed, env, reward, (0, real + 1, 3 * real - 1))


def test_ratio_deviations_redraw_a_and_b_of_real_ues_only_and_score_like_the_simulator():
    from edgepilot.cloud_trainer.tac import decision_from_actions, ratio_deviations
    from edgepilot.edge_agent.actions import MIN_RATIO

    scen, obs, m, acts = _played_round()
    env, dev, reward = ratio_deviations(scen.network_params, obs.tasks, acts, 3, torch.Generator().manual_seed(1))
    assert len(env) == 18 and sorted(env.tolist()) == sorted(list(range(6)) * 3) and reward.shape == (18, scen.max_ues, 2)
    played, changed = decision_from_actions(*acts), decision_from_actions(*dev)
    assert (changed.offload == played.offload[env]).all() and (changed.channel == played.channel[env]).all()
    real = m[env].numpy()
    for f in ("transmit_power_ratio", "cpu_freq_ratio"):
        new, old = getattr(changed, f), getattr(played, f)[env]
        assert (new[real] >= MIN_RATIO).all() and (new[real] <= 1).all() and (new[real] != old[real]).all()
        assert (new[~real] == old[~real]).all()  # padded UEs keep theirs
        assert new[real].std() > 0.2  # spread over the range, not near the played value
    _assert_scored_like_the_simulator(scen, played, changed, env, reward, (0, 7, 17))


def test_conditional_ratio_loss_trains_b_of_ues_the_actor_offloads():
    from edgepilot.cloud_trainer.tac import actor_loss, conditional_ratio_loss

    class Critic(torch.nn.Module):  # a UE's energy depends on b only as far as it computes locally
        def forward(self, s, e, p_x, p_l, a, b, m):
            energy = -p_x[..., 0] * (b - 0.3) ** 2 - p_x[..., 1:].sum(-1) * 0.1
            return torch.stack([torch.zeros_like(energy), energy], -1)

    cfg = TACConfig(entropy_coef=0.0)
    p_x = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])  # every UE offloads
    b = torch.tensor([[0.9, 0.05, 0.6]], requires_grad=True)
    acts = (p_x, torch.full((1, 3, 4), 0.25), torch.ones(1, 3), b)
    s, e = torch.rand(1, 3, 6), torch.zeros(1, 3, dtype=torch.int64)
    m = torch.tensor([[True, True, False]])  # the third UE is padding
    actor_loss(Critic(), s, e, m, acts, cfg).backward()
    assert b.grad.abs().max() == 0  # at the played action (19) says nothing about b
    conditional_ratio_loss(Critic(), s, e, m, acts, cfg).backward()
    # descending the loss moves each real UE's b toward 0.3, the best b if it computed locally
    assert b.grad[0, 0] > 0 and b.grad[0, 1] < 0
    # 2 real UEs x 3 options: UE n local scores -(b_n - 0.3)^2 - 0.1 (the other real UE
    # offloads), UE n on the edge or the cloud -0.2; the padded UE's candidates do not count
    b0 = torch.tensor([[0.9, 0.05, 0.6]])
    value = -((b0[0, :2] - 0.3) ** 2).sum() - 0.1 * 2 - 0.2 * 4
    assert torch.isclose(conditional_ratio_loss(Critic(), s, e, m, (p_x, acts[1], acts[2], b0), cfg), -value / 6)


def _subset_deviations(deviations, seed: int):
    """40 copies of each of the 6 envs of :func:`_played_round` from ``deviations`` (a
    tac.*_deviations function): the scenario, the played and changed decisions, the env
    index, the reward and the real-UE mask of each copy."""
    from edgepilot.cloud_trainer.tac import decision_from_actions

    scen, obs, m, acts = _played_round()
    env, dev, reward = deviations(scen.network_params, obs.tasks, acts, 40, torch.Generator().manual_seed(seed))
    assert len(env) == 240 and reward.shape == (240, scen.max_ues, 2)
    return scen, acts, dev, decision_from_actions(*acts), decision_from_actions(*dev), env, reward, m[env].numpy()


def test_local_deviations_switch_real_ues_to_local_at_a_drawn_b_and_score_like_the_simulator():
    from edgepilot.cloud_trainer.tac import local_deviations
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

    from edgepilot.cloud_trainer.tac import offload_deviations

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
    from edgepilot.cloud_trainer.tac import actor_loss, local_ratio_loss

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


def test_discrete_epsilon_plays_uniform_choices_and_keeps_the_stored_vector_consistent():
    gen = torch.Generator().manual_seed(0)
    p_x = torch.softmax(torch.randn(4000, 4, 3, generator=gen), -1)
    p_l = torch.softmax(torch.randn(4000, 4, 4, generator=gen) * 5, -1)
    a = b = torch.full((4000, 4), 0.5)
    same = add_discrete_exploration((p_x, p_l, a, b), 0.0, 0.0, gen)
    assert all(torch.equal(u, v) for u, v in zip(same, (p_x, p_l, a, b)))  # off: untouched
    out_x, out_l, out_a, _ = add_discrete_exploration((p_x, p_l, a, b), 0.0, 1.0, gen)
    assert torch.equal(out_x, p_x) and torch.equal(out_a, a)  # channel epsilon only touches p_l
    # the vector keeps its values (argmax = what is played), and the played channel is uniform
    assert torch.equal(out_l.sort(-1).values, p_l.sort(-1).values)
    freq = torch.bincount(out_l.argmax(-1).flatten(), minlength=4) / out_l[..., 0].numel()
    assert torch.allclose(freq, torch.full((4,), 0.25), atol=0.02)
    # with epsilon 0.3 about 30% * 3/4 of the UEs change channel
    _, half, _, _ = add_discrete_exploration((p_x, p_l, a, b), 0.0, 0.3, gen)
    changed = (half.argmax(-1) != p_l.argmax(-1)).float().mean().item()
    assert 0.19 < changed < 0.26


def test_slot_embedding_tells_same_cell_ues_apart_and_is_off_by_default():
    assert cell_slot(torch.tensor([[0, 0, 0, 1, 1], [1, 0, 1, 0, 0]])).tolist() == [[0, 1, 2, 0, 1], [0, 0, 1, 1, 2]]
    torch.manual_seed(0)
    same_state = torch.rand(1, 1, 6).expand(2, 4, 6)  # four identical UEs of one cell
    edge = torch.zeros(2, 4, dtype=torch.int64)
    p_l = TACActor(ModelConfig())(same_state, edge)[1]
    assert torch.allclose(p_l[0], p_l[0, :1].expand(4, -1), atol=1e-6)  # paper's network: equivariant, identical UEs act alike
    slot_cfg = ModelConfig(ue_slot_embedding=4)
    p_l = TACActor(slot_cfg)(same_state, edge)[1]
    assert not torch.allclose(p_l[0, 0], p_l[0, 1], atol=1e-4)  # with the slot: they can differ
    # the default networks have no new parameters (shipped checkpoints still load strictly)
    assert not any("slot" in k for k in TACActor(ModelConfig()).state_dict())
    assert not any("slot" in k for k in TACCritic(ModelConfig()).state_dict())
    # DTAC has no slot: transferred from a slot TAC it is a plain local-state actor
    dtac = DTACActor.from_tac(TACActor(slot_cfg))
    assert not any("slot" in k for k in dtac.state_dict()) and dtac(torch.rand(3, 6))[0].shape == (3, 3)


def test_channel_slot_bias_only_separates_the_channels():
    torch.manual_seed(0)
    cfg = ModelConfig(channel_slot_bias=4)
    same_state = torch.rand(1, 1, 6).expand(2, 4, 6)
    edge = torch.zeros(2, 4, dtype=torch.int64)
    p_x, p_l, a, b = TACActor(cfg)(same_state, edge)
    # offload, a, b stay functions of the states (identical UEs decide alike) ...
    for t in (p_x, a, b):
        assert torch.allclose(t[0], t[0, :1].expand_as(t[0]), atol=1e-6)
    # ... the channel probabilities differ by slot and still sum to one
    assert not torch.allclose(p_l[0, 0], p_l[0, 1], atol=1e-4) and torch.allclose(p_l.sum(-1), torch.ones(2, 4))
    assert p_l[0].argmax(-1).tolist() == [0, 1, 2, 3]  # starts separated: slot j prefers channel j
    assert not any("slot" in k for k in TACCritic(cfg).state_dict())  # the critic never sees the slot
    dtac = DTACActor.from_tac(TACActor(cfg))
    assert not any("slot" in k for k in dtac.state_dict()) and dtac(torch.rand(3, 6))[1].shape == (3, 4)


def test_time_budget_head_makes_b_proportional_to_the_local_time_at_a_fixed_output():
    """cpu_ratio_head "time_budget": b = T1* / (T1* + T_ref e^-z). With the ratio head's
    weights at zero (z = its bias for every state), b / (1 - b) grows exactly like T1*, so
    every local task finishes at the same time T1* / b = T1* + T_ref e^-z."""
    torch.manual_seed(0)
    tac = TACActor(ModelConfig())
    states = torch.rand(400, 6) * torch.tensor([1e-9, 20.0, 5.0, 5.0, 1.0, 5.0])
    tac.normalizer.fit(states)
    with torch.no_grad():
        tac.heads.ratios.weight.zero_()
        tac.heads.ratios.bias.copy_(torch.tensor([0.3, -0.7]))
    plain, tb = DTACActor.from_tac(tac), DTACActor.from_tac(tac, cpu_ratio_head="time_budget")
    assert tb.cfg.cpu_ratio_head == "time_budget" and tac.cfg.cpu_ratio_head == "sigmoid"  # the TAC keeps its head
    probe = states[:5].clone()
    probe[:, 1] = torch.tensor([0.5, 2.0, 4.0, 8.0, 16.0])  # T1* in seconds
    p_x, p_l, a, b = tb(probe)
    p_x0, p_l0, a0, b0 = plain(probe)
    assert torch.allclose(p_x, p_x0) and torch.allclose(p_l, p_l0) and torch.allclose(a, a0)  # only b changes
    assert torch.allclose(b0, torch.sigmoid(torch.tensor(-0.7)).expand(5))  # the paper's head: the same b for all
    floor = tb.normalizer.floor[1]
    odds = b / (1 - b)
    assert torch.allclose(odds / odds[0], (probe[:, 1] + floor) / (probe[0, 1] + floor), rtol=1e-4)
    finish = probe[:, 1] / b  # local execution time (2) at F_UE * b
    t_ref = torch.exp(tb.normalizer.mean[1])
    t1 = probe[:, 1]
    assert torch.allclose(finish, t1 + t1 / (t1 + floor) * t_ref * math.exp(0.7), rtol=1e-4)  # T1* + T_ref e^-z, up to the log floor
    with pytest.raises(ValueError, match="cpu_ratio_head"):
        ModelConfig(cpu_ratio_head="deadline")


@pytest.mark.parametrize("form", ["above_local", "two_sided"])
def test_offload_prior_lowers_options_by_their_lower_bound_times(form):
    """offload_prior w: "two_sided" adds -w ln(T_lb + floor) to every offload logit (T_lb:
    the greedy baseline's lower bounds); "above_local" adds -w max(0, ln((T_lb + floor) /
    (T1* + floor))) to edge and cloud only. Either way an option whose lower bound grows
    beyond any training state keeps losing probability, and the channel, a and b heads
    are untouched."""
    torch.manual_seed(0)
    tac = TACActor(ModelConfig())
    states = torch.rand(400, 6) * torch.tensor([1e-9, 20.0, 5.0, 5.0, 1.0, 5.0])
    tac.normalizer.fit(states)
    plain, prior = DTACActor.from_tac(tac), DTACActor.from_tac(tac, offload_prior=1.5, offload_prior_form=form)
    assert prior.cfg.offload_prior == 1.5 and prior.cfg.offload_prior_form == form and tac.cfg.offload_prior == 0.0
    probe = states[:6].clone()
    with torch.no_grad():
        p_x, p_l, a, b = prior(probe)
        p_x0, p_l0, a0, b0 = plain(probe)
    assert torch.allclose(p_l, p_l0) and torch.allclose(a, a0) and torch.allclose(b, b0)
    log_t = torch.log(torch.tensor(lower_bound_times(probe.numpy()), dtype=torch.float32) + 1e-3)  # the greedy baseline's rule
    if form == "above_local":
        log_t = (log_t - log_t[:, :1]).clamp_min(0)
    assert torch.allclose(p_x, torch.softmax(torch.log(p_x0) - 1.5 * log_t, dim=-1), atol=1e-5)
    near = probe.clone()
    near[:, 1], near[:, 3] = 2.0, 1.0  # T1* and the UE-edge transfer lower bound, s
    far = near.clone()
    far[:, 3] = 1e3  # far beyond the states the normalizer saw
    with torch.no_grad():  # how much the prior lowers edge / cloud against local (log-odds)
        shift_near, shift_far = (torch.log(prior(s)[0] / plain(s)[0]) for s in (near, far))
    for option in (1, 2):  # edge and cloud both go through the uplink
        drop = (shift_near[:, option] - shift_near[:, 0]) - (shift_far[:, option] - shift_far[:, 0])
        assert (drop > 1.5 * math.log(100)).all()
    if form == "above_local":  # offloading that may beat local: the network alone decides
        quick = probe.clone()
        quick[:, 1], quick[:, 2:] = 30.0, 0.1
        with torch.no_grad():
            assert torch.equal(prior(quick)[0], plain(quick)[0])
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="offload_prior"):
            ModelConfig(offload_prior=bad)
    with pytest.raises(ValueError, match="offload_prior_form"):
        ModelConfig(offload_prior=1.0, offload_prior_form="one_sided")


def test_train_tac_with_slot_embedding_and_discrete_epsilon(tmp_path):
    scen = scenario_from_dict(TINY)
    cfg = tiny_cfg(episodes=1, channel_epsilon=0.3, offload_epsilon=0.1)
    cfg.model = ModelConfig(ue_slot_embedding=2, channel_slot_bias=2)
    res = train_tac(scen, cfg, tmp_path)
    actor, ckpt = load_actor(res.checkpoint)
    assert ckpt["model_config"]["channel_slot_bias"] == 2 and ckpt["train_config"]["channel_epsilon"] == 0.3
    assert actor.backbone.slot is not None and actor.channel_slot is not None


def test_a_frozen_channel_slot_bias_stays_at_its_initial_separation(tmp_path):
    from edgepilot.cloud_trainer.models import CHANNEL_SLOT_INIT

    scen = scenario_from_dict(TINY)
    init = CHANNEL_SLOT_INIT * torch.eye(scen.radio.num_channels)[:2]  # slot j prefers channel j
    tables = {}
    for trainable in (True, False):
        cfg = tiny_cfg(episodes=1)
        cfg.model = ModelConfig(channel_slot_bias=2, channel_slot_trainable=trainable)
        res = train_tac(scen, cfg, tmp_path / str(trainable))
        actor, ckpt = load_actor(res.checkpoint)
        assert ckpt["model_config"]["channel_slot_trainable"] is trainable
        tables[trainable] = actor.channel_slot.weight.detach()
        torch.manual_seed(cfg.seed)  # the actor train_tac started from
        start = TACActor(ModelConfig(**ckpt["model_config"])).state_dict()
        assert torch.equal(start["channel_slot.weight"], init)
        assert any(not torch.equal(v, start[k]) for k, v in actor.state_dict().items() if k.startswith("heads."))  # the rest trains
    assert not torch.allclose(tables[True], init)  # trained: (19) moves it
    assert torch.equal(tables[False], init)


def test_train_tac_with_counterfactuals_ratio_search_and_softclip(tmp_path):
    scen = scenario_from_dict(TINY)
    cfg = tiny_cfg(episodes=1, counterfactuals=True, ratio_counterfactuals=2, ratio_search_coef=1.0, offload_search_coef=0.5,
                   reward_transform="softclip", reward_clip=5.0, reward_soft_cap=10.0)
    res = train_tac(scen, cfg, tmp_path)
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["progress"]["reward_transform"] == {"scale": [10.0, 10.0], "kind": "softclip", "clip": 5.0, "soft_cap": 10.0}
    assert ckpt["train_config"]["counterfactuals"] is True and ckpt["train_config"]["ratio_counterfactuals"] == 2
    # the same seed without the counterfactual samples trains another critic
    plain = train_tac(scen, tiny_cfg(episodes=1, ratio_search_coef=1.0, offload_search_coef=0.5, reward_transform="softclip",
                                     reward_clip=5.0, reward_soft_cap=10.0), tmp_path / "plain")
    other = load_checkpoint(plain.checkpoint)["critic"]
    assert any(not torch.equal(v, other[k]) for k, v in ckpt["critic"].items())


def _joint_value(critic, s, e, m, x, l, a, b, cfg):
    onehot = lambda idx, k: torch.nn.functional.one_hot(torch.as_tensor(idx), k).float()[None]  # noqa: E731
    return actor_objective(critic(s, e, onehot(x, 3), onehot(l, 2), a, b, m), m, cfg.actor_w_time, cfg.actor_w_energy).item()


def test_critic_refinement_over_every_ue_finds_the_critics_best_joint_choice():
    import itertools

    from edgepilot.cloud_trainer.tac import refine_with_critic

    torch.manual_seed(3)
    critic, cfg = TACCritic(ModelConfig(num_channels=2, d_model=16, ffn_dim=32)).eval(), TACConfig()
    s, e, m = torch.rand(1, 2, 6), torch.zeros(1, 2, dtype=torch.int64), torch.tensor([[True, True]])
    acts = (torch.softmax(torch.randn(1, 2, 3), -1), torch.softmax(torch.randn(1, 2, 2), -1), torch.rand(1, 2), torch.rand(1, 2))
    x, l, a, b = refine_with_critic(critic, s, e, m, acts, cfg, sweeps=1, group=2)
    assert torch.equal(a, acts[2]) and torch.equal(b, acts[3])  # only the discrete choices move
    from edgepilot.cloud_trainer.evaluate import load_policy

    with pytest.raises(ValueError, match="only TAC has a centralized critic"):
        load_policy("dtac", "any.pt", refine_sweeps=2)
    opts = list(itertools.product(range(3), range(2)))
    values = {(o0, o1): _joint_value(critic, s, e, m, [o0[0], o1[0]], [o0[1], o1[1]], a, b, cfg) for o0 in opts for o1 in opts}
    best = max(values, key=values.get)
    got = tuple((int(x[0, n].argmax()), int(l[0, n].argmax())) for n in range(2))
    assert values[got] == pytest.approx(values[best]) and sorted(set(values.values()))[-1] > sorted(set(values.values()))[0]


def test_one_ue_refinement_reaches_a_point_no_single_ue_change_improves_and_skips_padding():
    from edgepilot.cloud_trainer.tac import refine_with_critic

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


def test_soft_time_max_gives_every_ues_time_a_gradient_and_approaches_the_hard_max():
    q = torch.tensor([[[-1.0, -0.2], [-3.0, -0.1], [-2.9, -0.4], [-9.0, -9.0]]], requires_grad=True)
    m = torch.tensor([[True, True, True, False]])
    hard = actor_objective(q, m, 1.0, 1.0)
    hard.sum().backward()
    assert q.grad[0, :, 0].tolist() == [0.0, 1.0, 0.0, 0.0]  # (19): only the worst UE's time
    q.grad = None
    soft = actor_objective(q, m, 1.0, 1.0, time_temperature=0.5)
    soft.sum().backward()
    g = q.grad[0, :, 0]
    assert g[1] > g[2] > g[0] > 0 and g[3] == 0 and torch.isclose(g.sum(), torch.tensor(1.0))  # the runner-up UE gets a share, padding none
    assert soft.item() <= hard.item() and actor_objective(q, m, 1.0, 1.0, time_temperature=1e-3).item() == pytest.approx(hard.item(), abs=1e-2)


def test_restarts_keep_the_run_that_scores_best_on_one_validation_seed(tmp_path):
    from edgepilot.cloud_trainer.evaluate import evaluate_policy, load_policy
    from edgepilot.cloud_trainer.tac import RESTART_SEED_STRIDE, VALIDATION_SEED_OFFSET

    scen = scenario_from_dict(TINY)
    with pytest.raises(ValueError, match="validation_rounds"):
        tiny_cfg(restarts=2)
    validated = dict(validation_rounds=2, validation_envs=4, seed=5, episodes=1)
    res = train_tac(scen, tiny_cfg(**validated, restarts=3), tmp_path / "seq")
    m = res.metrics
    assert m["restart_seeds"] == [5, 5 + RESTART_SEED_STRIDE, 5 + 2 * RESTART_SEED_STRIDE]
    assert len(set(m["restart_validation_rewards"])) == 3  # three different runs
    assert m["selected_restart"] == max(range(3), key=m["restart_validation_rewards"].__getitem__)
    final = load_checkpoint(res.checkpoint)
    kept = load_checkpoint(tmp_path / "seq" / f"restart-{m['selected_restart']}" / "tac.pt")
    assert all(torch.equal(final["actor"][k], v) for k, v in kept["actor"].items())
    assert final["train_config"]["restarts"] == 3 and final["metrics"]["selected_restart"] == m["selected_restart"]
    # every restart is scored on the base run's validation seed: tac.pt replays to its score
    replayed = evaluate_policy(load_policy("tac", res.checkpoint), scen, 2, 4, 5 + VALIDATION_SEED_OFFSET)["weighted_reward"]
    assert replayed == pytest.approx(max(m["restart_validation_rewards"]), rel=1e-6)
    # restart 0 is the run without restarts, bit for bit
    plain = load_checkpoint(train_tac(scen, tiny_cfg(**validated), tmp_path / "plain").checkpoint)
    first = load_checkpoint(tmp_path / "seq" / "restart-0" / "tac.pt")
    assert all(torch.equal(plain["actor"][k], v) for k, v in first["actor"].items())
    # restarts trained in worker processes give the same runs
    par = train_tac(scen, tiny_cfg(**validated, restarts=3, restart_jobs=2), tmp_path / "par")
    assert par.metrics["restart_validation_rewards"] == m["restart_validation_rewards"]
    # --resume on finished restarts re-reads them and keeps the same choice
    again = train_tac(scen, tiny_cfg(**validated, restarts=3), tmp_path / "seq", resume=True)
    assert again.metrics["selected_restart"] == m["selected_restart"]
    assert again.metrics["restart_validation_rewards"] == m["restart_validation_rewards"]
