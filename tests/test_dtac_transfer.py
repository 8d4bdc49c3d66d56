"""DTAC decentralized transfer (Algorithm 1 lines 13-19, eq. 20-22)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgepilot.cloud_trainer.checkpoint import load_actor, load_checkpoint
from edgepilot.cloud_trainer.dtac import (
    TRANSFER_QUICK_OVERRIDES,
    TransferConfig,
    train_transfer,
)
from edgepilot.cloud_trainer.envs.simulator import BatchSimulator
from edgepilot.cloud_trainer.evaluate import load_policy
from edgepilot.cloud_trainer.models import DTACActor
from edgepilot.cloud_trainer.play import per_ue
from edgepilot.cloud_trainer.scenario import scenario_from_dict
from edgepilot.cloud_trainer.tac import QUICK_OVERRIDES, TACConfig, train_tac

TINY = {"name": "tiny", "topology": {"num_edge_servers": 2, "edge_radius_m": 100, "cloud_radius_m": 300, "ues_per_edge_min": 1, "ues_per_edge_max": 2},
        "tasks": {"num_task_types": 10}, "episode": {"rounds": 10}}


def tiny_cfg(**kw) -> TACConfig:
    return TACConfig.from_dict({**QUICK_OVERRIDES, "episodes": 2, "rounds_per_episode": 12, "normalizer_samples": 300, "checkpoint_every": 6, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("dtac")
    scen = scenario_from_dict(TINY)
    tac = train_tac(scen, tiny_cfg(episodes=1), out)
    cfg = TransferConfig(**{**TRANSFER_QUICK_OVERRIDES, "steps": 12, "log_every": 4})
    dtac = train_transfer(scen, tac.checkpoint, cfg, out, method="dtac")
    return scen, tac, dtac


def test_dtac_checkpoint_holds_a_dtac_actor_that_changed(trained):
    _, tac, dtac = trained
    actor, ckpt = load_actor(dtac.checkpoint)
    assert isinstance(actor, DTACActor) and ckpt["kind"] == "dtac"
    last, _ = load_actor(dtac.checkpoint.parent / "dtac_last.pt")  # the final one may be the copy (step 0) if it validated best
    start = DTACActor.from_tac(load_actor(tac.checkpoint)[0])
    assert any(not torch.equal(start.state_dict()[k], v) for k, v in last.state_dict().items())  # (26) then (22) moved it


def test_dtac_without_validation_keeps_the_student_of_its_best_training_window(trained, tmp_path):
    from edgepilot.cloud_trainer.checkpoint import load_checkpoint

    scen, tac, _ = trained
    cfg = TransferConfig(**{**TRANSFER_QUICK_OVERRIDES, "steps": 12, "log_every": 4, "validation_rounds": 0})
    dtac = train_transfer(scen, tac.checkpoint, cfg, tmp_path, method="dtac")
    final, last = load_checkpoint(dtac.checkpoint), load_checkpoint(dtac.checkpoint.parent / "dtac_last.pt")
    rewards = [h["weighted_reward"] for h in dtac.history]
    best = dtac.history[int(np.argmax(rewards))]
    assert final["metrics"]["selected_step"] == best["round"] and final["metrics"]["selected_weighted_reward"] == max(rewards)
    assert "validation_reward" not in best
    assert last["progress"]["step"] == 12 and final.get("best_actor") is None
    assert all(torch.equal(final["actor"][k], v) for k, v in last["best_actor"].items())
    if best["round"] == 12:
        assert all(torch.equal(final["actor"][k], v) for k, v in last["actor"].items())


def test_changing_other_ues_never_changes_a_ues_dtac_action(trained):
    scen, _, dtac = trained
    policy = load_policy("dtac", dtac.checkpoint)
    sim = BatchSimulator(scen, batch_size=4, seed=5)
    obs = sim.reset()
    original = obs.local_state.copy()
    base = [t.clone() for t in policy.actions(obs)]
    rng = np.random.default_rng(0)
    n = obs.local_state.shape[1]
    for ue in range(n):
        perturbed = original.copy()
        others = [j for j in range(n) if j != ue]
        perturbed[:, others] *= rng.uniform(0.01, 100.0, size=perturbed[:, others].shape)
        obs.local_state = perturbed
        new = policy.actions(obs)
        for a, b in zip(base, new):
            assert torch.equal(a[:, ue], b[:, ue])
        obs.local_state = original


@pytest.mark.parametrize("option, field, head", [({"cpu_ratio_head": "round_budget"}, 1, 3), ({"offload_mask": True}, 3, 0)])
def test_head_options_train_reload_and_stay_local(trained, tmp_path, option, field, head):
    """TransferConfig head options: cpu_ratio_head "round_budget" gives b from the UE's own
    T1* (local state field 1); offload_mask masks the options its own lower-bound times
    (field 3: the uplink) make slower than local. The checkpoint records the option, the
    decisions still depend on the UE's local state alone, and the UE's own field moves
    the head the option feeds. TL-transformer keeps the paper's offload head (and b)."""
    scen, tac, _ = trained
    cfg = TransferConfig(**{**TRANSFER_QUICK_OVERRIDES, "steps": 8, "log_every": 4, **option})
    res = train_transfer(scen, tac.checkpoint, cfg, tmp_path, method="dtac")
    actor, ckpt = load_actor(res.checkpoint)
    for key, value in option.items():
        assert ckpt["model_config"][key] == value == getattr(actor.cfg, key) and ckpt["train_config"][key] == value
    states = torch.rand(2, 5, 6) * torch.tensor([1e-9, 20.0, 5.0, 5.0, 1.0, 5.0])
    with torch.no_grad():
        base = per_ue(actor, states)
        moved = states.clone()
        moved[:, 1:, field] *= 30.0  # the other UEs' states
        assert all(torch.equal(x[:, 0], y[:, 0]) for x, y in zip(base, per_ue(actor, moved)))
        own = states.clone()
        own[:, 0, field] *= 30.0  # the UE's own state
        assert not torch.allclose(base[head][:, 0], per_ue(actor, own)[head][:, 0])
    tl = train_transfer(scen, tac.checkpoint, cfg, tmp_path / "tl", method="tl_transformer")
    tl_cfg = load_checkpoint(tl.checkpoint)["model_config"]
    assert (tl_cfg["offload_mask"], tl_cfg["cpu_ratio_head"]) == (False, "sigmoid")
    key = next(iter(option))
    with pytest.raises(ValueError, match=key):
        TransferConfig(**{key: "deadline" if key == "cpu_ratio_head" else -1.0})


def test_round_budget_b_finishes_local_tasks_with_the_fitted_round_time(trained, tmp_path):
    """cpu_ratio_head "round_budget": b = min(1, T1* / R) with the one R of the model, which
    the transfer fits on the training scenario's rounds (checkpoint metrics, kept by the
    reload); the fitted R plays better than half or twice it on those rounds."""
    from edgepilot.cloud_trainer.dtac import fit_round_budget
    from edgepilot.cloud_trainer.play import ActorPolicy, evaluate_policy

    scen, tac, _ = trained
    cfg = TransferConfig(**{**TRANSFER_QUICK_OVERRIDES, "steps": 8, "log_every": 4, "cpu_ratio_head": "round_budget"})
    res = train_transfer(scen, tac.checkpoint, cfg, tmp_path, method="dtac")
    actor, ckpt = load_actor(res.checkpoint)
    r = float(actor.round_budget_s)
    assert ckpt["metrics"]["round_budget_s"] == pytest.approx(r) and r > 0
    states = torch.rand(64, 6) * torch.tensor([1e-9, 20.0, 5.0, 5.0, 1.0, 5.0])
    with torch.no_grad():
        b = actor(states)[3]
    torch.testing.assert_close(b, (states[:, 1] / r).clamp(1e-3, 1.0))
    assert (b < 1).any() and (b == 1).any()

    fresh = DTACActor.from_tac(load_actor(tac.checkpoint)[0], cpu_ratio_head="round_budget")
    fitted = fit_round_budget(fresh, scen, 6, 8, 77)
    assert float(fresh.round_budget_s) == pytest.approx(fitted)

    def played(budget: float) -> float:
        fresh.round_budget_s.fill_(budget)
        return evaluate_policy(ActorPolicy("dtac", fresh, "local"), scen, 6, 8, 77)["weighted_reward"]

    assert played(fitted) >= max(played(fitted / 2), played(fitted * 2))


def test_offload_mask_removes_exactly_the_options_slower_than_local(trained):
    """offload_mask: p_x of an option whose lower-bound time exceeds T1* is 0; a UE with no
    such option gets the unmasked head's p_x."""

    from edgepilot.cloud_trainer.state_bounds import lower_bound_times

    scen, tac, _ = trained
    plain = DTACActor.from_tac(load_actor(tac.checkpoint)[0])
    masked = DTACActor(plain.cfg.model_copy(update={"offload_mask": True}))
    masked.load_state_dict(plain.state_dict())
    states = torch.rand(400, 6) * torch.tensor([1e-9, 20.0, 5.0, 15.0, 1.0, 15.0])
    with torch.no_grad():
        p_plain, p_masked = plain(states)[0], masked(states)[0]
    lb = lower_bound_times(states)
    slower = lb[:, 1:] > lb[:, :1]
    assert slower.any() and (~slower).all(1).any()
    assert torch.all(p_masked[:, 1:][slower] == 0)
    free = (~slower).all(1)
    torch.testing.assert_close(p_masked[free], p_plain[free])
    torch.testing.assert_close(p_masked.sum(1), torch.ones(400))


def _option_moves_the_student(trained, tmp_path, off: dict, on: dict, head: int, match: str, common: dict | None = None):
    """Two short dtac transfers, with the TransferConfig fields ``off`` and ``on`` (and
    ``common`` in both): ``on`` is recorded in the checkpoint and the student's output
    ``head`` (0 p_x, 3 b) differs between them; a negative value of each field is
    refused with ``match``."""
    scen, tac, _ = trained
    base = {**TRANSFER_QUICK_OVERRIDES, "steps": 14, "log_every": 7, "align_steps": 4, "keep_best": False, **(common or {})}
    plain = train_transfer(scen, tac.checkpoint, TransferConfig(**{**base, **off}), tmp_path / "off", method="dtac")
    res = train_transfer(scen, tac.checkpoint, TransferConfig(**{**base, **on}), tmp_path / "on", method="dtac")
    assert {k: load_actor(res.checkpoint)[1]["train_config"][k] for k in on} == on
    states = torch.as_tensor(BatchSimulator(scen, batch_size=4, seed=5).reset().local_state, dtype=torch.float32)
    with torch.no_grad():
        out_off = per_ue(load_actor(plain.checkpoint)[0], states)[head]
        out_on = per_ue(load_actor(res.checkpoint)[0], states)[head]
    assert not torch.allclose(out_off, out_on)
    for key in on:
        with pytest.raises(ValueError, match=key):  # pydantic names the field
            TransferConfig(**{key: -1})


def test_local_counterfactuals_and_local_ratio_loss_train_and_are_recorded(trained, tmp_path):
    """local_counterfactuals / local_ratio_coef (TransferConfig, on by default): the refit
    critic also fits system-model-scored local copies of each round, and (22) also trains
    b as if UEs computed locally; a learned b (the paper's sigmoid head) moves away from
    the run without them (0, 0)."""
    assert TransferConfig().local_counterfactuals > 0 and TransferConfig().local_ratio_coef > 0
    _option_moves_the_student(trained, tmp_path, {"local_counterfactuals": 0, "local_ratio_coef": 0.0},
                              {"local_counterfactuals": 2, "local_ratio_coef": 1.0}, 3, "local_counterfactuals and local_ratio_coef",
                              common={"cpu_ratio_head": "sigmoid"})


def test_per_ue_matches_single_ue_calls(trained):
    _, _, dtac = trained
    actor, _ = load_actor(dtac.checkpoint)
    states = torch.rand(3, 5, 6) * 10
    joint = per_ue(actor, states)
    single = actor(states[1, 2][None])
    assert torch.allclose(joint[0][1, 2], single[0][0], atol=1e-6)


def test_tl_transformer_and_tl_train_from_the_same_tac(trained, tmp_path):
    scen, tac, _ = trained
    cfg = TransferConfig(**{**TRANSFER_QUICK_OVERRIDES, "steps": 8, "log_every": 4})
    for method in ("tl_transformer", "tl"):
        res = train_transfer(scen, tac.checkpoint, cfg, tmp_path, method=method)
        pol = load_policy(method, res.checkpoint)
        obs = BatchSimulator(scen, batch_size=2, seed=1).reset()
        d = pol.act(obs)
        assert d.offload.shape == obs.edge_id.shape and set(np.unique(d.offload)) <= {0, 1, 2}


def test_dtac_refits_the_critic_by_default_and_keeps_it_frozen_when_asked(trained, tmp_path):
    from edgepilot.cloud_trainer.checkpoint import load_checkpoint

    scen, tac, dtac = trained
    tac_critic = load_checkpoint(tac.checkpoint)["critic"]
    refit = load_checkpoint(dtac.checkpoint)
    assert any(not torch.equal(refit["critic"][k], v) for k, v in tac_critic.items())  # (18) steps on the student's rounds
    assert "critic" in refit["optimizers"]
    assert all(np.isfinite(h["critic_loss"]) for h in dtac.history)

    cfg = TransferConfig(**{**TRANSFER_QUICK_OVERRIDES, "steps": 6, "log_every": 3, "checkpoint_every": 3, "critic_updates": 0})
    frozen = load_checkpoint(train_transfer(scen, tac.checkpoint, cfg, tmp_path / "frozen", method="dtac").checkpoint)
    assert all(torch.equal(frozen["critic"][k], v) for k, v in tac_critic.items())  # (22): the paper's frozen critic
    assert "critic" not in frozen["optimizers"]

    cfg = TransferConfig(**{**TRANSFER_QUICK_OVERRIDES, "steps": 6, "log_every": 3, "checkpoint_every": 3})
    first = load_checkpoint(train_transfer(scen, tac.checkpoint, cfg, tmp_path, method="dtac").checkpoint)
    # --resume continues with the refitted critic and its optimizer, not the TAC's
    resumed = train_transfer(scen, tac.checkpoint, TransferConfig(**{**cfg.to_dict(), "steps": 9}), tmp_path, method="dtac", resume=True)
    after = load_checkpoint(resumed.checkpoint.parent / "dtac_last.pt")
    assert after["progress"]["step"] == 9
    assert any(not torch.equal(after["critic"][k], v) for k, v in first["critic"].items())


def test_align_steps_are_the_imitation_of_26_before_22(trained, tmp_path):
    scen, tac, _ = trained
    base = {**TRANSFER_QUICK_OVERRIDES, "steps": 6, "log_every": 3, "checkpoint_every": 3, "keep_best": False, "critic_updates": 0,
            "offload_mask": False, "cpu_ratio_head": "sigmoid"}  # on the same heads as TL-transformer
    aligned = train_transfer(scen, tac.checkpoint, TransferConfig(**{**base, "align_steps": 6}), tmp_path / "a", method="dtac")
    cloned = train_transfer(scen, tac.checkpoint, TransferConfig(**base), tmp_path / "t", method="tl_transformer")
    critic = train_transfer(scen, tac.checkpoint, TransferConfig(**{**base, "align_steps": 3}), tmp_path / "c", method="dtac")
    from edgepilot.cloud_trainer.dtac import load_transfer_actor

    a, t, c = (load_transfer_actor(r.checkpoint)[0].state_dict() for r in (aligned, cloned, critic))
    assert all(torch.equal(a[k], v) for k, v in t.items())  # all steps aligned: exactly the tl_transformer student
    assert any(not torch.equal(c[k], v) for k, v in t.items())  # from step 3 on, (22) moves it elsewhere


def test_validation_keeps_the_best_student_on_one_fixed_set_of_rounds(trained, tmp_path):
    from edgepilot.cloud_trainer.checkpoint import load_checkpoint
    from edgepilot.cloud_trainer.common import VALIDATION_SEED_OFFSET
    from edgepilot.cloud_trainer.play import ActorPolicy, evaluate_policy

    scen, tac, _ = trained
    cfg = TransferConfig(**{**TRANSFER_QUICK_OVERRIDES, "steps": 8, "log_every": 2, "validation_rounds": 3, "validation_envs": 4, "seed": 3})
    res = train_transfer(scen, tac.checkpoint, cfg, tmp_path, method="dtac")
    scores = {h["round"]: h["validation_reward"] for h in res.history}
    assert sorted(scores) == [2, 4, 6, 8]
    import csv

    from edgepilot.cloud_trainer.plots import curve_series

    with open(tmp_path / "curve_dtac.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["validation_reward"]) for r in rows] == [scores[k] for k in sorted(scores)]  # the curve has them too
    from tests.tb_events import tensorboard_scalars

    events = tensorboard_scalars(tmp_path / "tensorboard" / "dtac")  # and TensorBoard, at each gradient step
    assert events["dtac/validation_reward"] == [(k, pytest.approx(scores[k])) for k in sorted(scores)]
    series = curve_series(rows)
    assert sorted(series) == ["dtac", "dtac (validation set)"] and len(series["dtac (validation set)"][1]) == 4
    assert sorted(curve_series([{**r, "validation_reward": ""} for r in rows])) == ["dtac"]  # tac / tl curves: one line
    final = load_checkpoint(res.checkpoint)
    replayed = evaluate_policy(load_policy("dtac", res.checkpoint), scen, 3, 4, 3 + VALIDATION_SEED_OFFSET)["weighted_reward"]
    assert replayed == pytest.approx(final["metrics"]["selected_weighted_reward"], rel=1e-6)
    from edgepilot.cloud_trainer.dtac import fit_round_budget

    first = DTACActor.from_tac(load_actor(tac.checkpoint)[0], cpu_ratio_head=cfg.cpu_ratio_head, offload_mask=cfg.offload_mask)
    fit_round_budget(first, scen, 3, 4, 3 + VALIDATION_SEED_OFFSET)  # its R, as the transfer fits it before validating
    copy0 = ActorPolicy("dtac", first, "local")
    step0 = evaluate_policy(copy0, scen, 3, 4, 3 + VALIDATION_SEED_OFFSET)["weighted_reward"]
    assert final["metrics"]["selected_weighted_reward"] == max([step0, *scores.values()])  # the copy (step 0) competes too


def test_a_transfer_that_keeps_its_copy_runs_once_more_with_offload_counterfactuals(trained, tmp_path):
    """TransferConfig.retry_offload_counterfactuals: with lr 0 no student can beat the
    copy, so the first attempt selects step 0 and the transfer runs again with offload
    counterfactuals in the refit critic's pool; the first attempt's files stay beside
    it, --resume continues the retry, and with the option at 0 there is one attempt."""
    scen, tac, _ = trained
    base = {**TRANSFER_QUICK_OVERRIDES, "steps": 8, "log_every": 4, "checkpoint_every": 4, "lr": 0.0}
    assert TransferConfig().retry_offload_counterfactuals == 4
    res = train_transfer(scen, tac.checkpoint, TransferConfig(**base), tmp_path, method="dtac")
    first, final = load_checkpoint(tmp_path / "dtac_first.pt"), load_checkpoint(res.checkpoint)
    assert first["metrics"]["selected_step"] == 0 and "retry_offload_counterfactuals" not in first["metrics"]
    assert final["metrics"]["retry_offload_counterfactuals"] == 4 and final["progress"]["attempt"] == 2
    assert final["metrics"]["first_attempt"]["selected_step"] == 0
    assert final["metrics"]["wall_s"] > final["metrics"]["first_attempt"]["wall_s"]
    assert (tmp_path / "curve_dtac_first.csv").exists() and (tmp_path / "curve_dtac.csv").exists()
    last = load_checkpoint(tmp_path / "dtac_last.pt")
    assert last["progress"]["attempt"] == 2
    assert any(not torch.equal(first["critic"][k], v) for k, v in final["critic"].items())  # refit on other rounds
    resumed = train_transfer(scen, tac.checkpoint, TransferConfig(**base), tmp_path, method="dtac", resume=True)
    assert resumed.metrics["first_attempt"] == final["metrics"]["first_attempt"]
    assert load_checkpoint(tmp_path / "dtac_first.pt")["metrics"] == first["metrics"]  # no third attempt
    (tmp_path / "dtac_last.pt").unlink()  # as if stopped after the first attempt, before the retry's first checkpoint
    again = train_transfer(scen, tac.checkpoint, TransferConfig(**base), tmp_path, method="dtac", resume=True)
    assert again.metrics["first_attempt"] == final["metrics"]["first_attempt"] and (tmp_path / "dtac_first_last.pt").exists()
    redone = load_checkpoint(again.checkpoint)
    assert redone["progress"]["attempt"] == 2 and redone["metrics"]["retry_offload_counterfactuals"] == 4  # the retry again
    assert all(torch.equal(redone["critic"][k], v) for k, v in final["critic"].items())  # and the same retry
    once = train_transfer(scen, tac.checkpoint, TransferConfig(**{**base, "retry_offload_counterfactuals": 0}), tmp_path / "once", method="dtac")
    assert once.metrics["selected_step"] == 0 and "first_attempt" not in once.metrics
    assert not (tmp_path / "once" / "dtac_first.pt").exists()
    with pytest.raises(ValueError, match="retry_offload_counterfactuals"):
        TransferConfig(retry_offload_counterfactuals=-1)


