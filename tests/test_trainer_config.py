"""Trainer configs: pydantic models loaded from YAML and ``--set``; retired trial options
in old checkpoints load only at the value that kept today's behaviour."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from edgepilot.cli import app
from edgepilot.cloud_trainer.checkpoint import (
    load_actor,
    load_checkpoint,
    save_checkpoint,
)
from edgepilot.cloud_trainer.dtac import TransferConfig
from edgepilot.cloud_trainer.models import ModelConfig
from edgepilot.cloud_trainer.tac import TACConfig
from edgepilot.config import ConfigError, load_config

runner = CliRunner()


class Captured(Exception):
    pass


def capture(monkeypatch, module: str, name: str) -> dict:
    seen = {}

    def fake(scenario, *args, **kwargs):
        seen["cfg"] = next(a for a in args if hasattr(a, "model_dump"))
        raise Captured

    import importlib

    monkeypatch.setattr(importlib.import_module(module), name, fake)
    return seen


def test_yaml_config_and_set_overrides_reach_the_tac_config(tmp_path, monkeypatch):
    seen = capture(monkeypatch, "edgepilot.cloud_trainer.tac", "train_tac")
    cfg = tmp_path / "tac.yaml"
    cfg.write_text("actor_lr: 0.001\nepisodes: 3\nmodel:\n  d_model: 32\n")
    r = runner.invoke(app, ["train", "tac", "--quick", "--out", str(tmp_path), "--config", str(cfg), "--set", "actor_lr=1e-4",
                            "--set", "model.ffn_dim=64", "--seed", "7"])
    assert isinstance(r.exception, Captured), r.output
    got = seen["cfg"]
    assert isinstance(got, TACConfig)
    assert got.actor_lr == 1e-4 and got.episodes == 3 and got.seed == 7  # --set wins over the file
    assert got.model.d_model == 32 and got.model.ffn_dim == 64 and got.model.num_heads == 2
    assert got.rounds_per_episode == 30  # --quick sizes stay where neither file nor --set says otherwise


def test_set_reaches_the_transfer_and_happo_configs(tmp_path, monkeypatch):
    seen = capture(monkeypatch, "edgepilot.cloud_trainer.baselines.happo", "train_happo")
    r = runner.invoke(app, ["train", "happo", "--quick", "--out", str(tmp_path), "--set", "iterations=5"])
    assert isinstance(r.exception, Captured), r.output
    assert seen["cfg"].iterations == 5 and seen["cfg"].ppo_epochs == 1
    seen = capture(monkeypatch, "edgepilot.cloud_trainer.dtac", "train_transfer")
    (tmp_path / "fig5").mkdir()
    (tmp_path / "fig5" / "tac.pt").write_bytes(b"")  # the path is checked before training; the fake never reads it
    r = runner.invoke(app, ["train", "dtac", "--out", str(tmp_path), "--set", "steps=12", "--set", "offload_mask=false"])
    assert isinstance(r.exception, Captured), r.output
    assert isinstance(seen["cfg"], TransferConfig) and seen["cfg"].steps == 12 and seen["cfg"].offload_mask is False


@pytest.mark.parametrize("args, key", [
    (["--set", "lr_actorr=1e-4"], "lr_actorr"),
    (["--set", "episodes=many"], "episodes"),
    (["--set", "model.cpu_ratio_head=deadline"], "model.cpu_ratio_head"),
    (["--set", "restarts=2"], "restarts"),  # a removed trial option, at another value than the kept one
    (["--set", "noequals"], "noequals"),
])
def test_unknown_key_or_bad_value_exits_2_naming_the_key(tmp_path, args, key):
    r = runner.invoke(app, ["train", "tac", "--quick", "--out", str(tmp_path), *args])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0]


def test_bad_yaml_file_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 10\nretry_offload_counterfactuals: -1\n")
    r = runner.invoke(app, ["train", "dtac", "--out", str(tmp_path), "--config", str(bad)])
    assert r.exit_code == 2 and "retry_offload_counterfactuals" in r.output and str(bad) in r.output
    r = runner.invoke(app, ["train", "greedy", "--out", str(tmp_path), "--set", "steps=1"])
    assert r.exit_code == 2 and "nothing to train" in r.output


def test_retired_options_load_only_at_the_kept_value():
    assert load_config(TACConfig, None, ["restarts=1", "channel_epsilon=0"]) == TACConfig()
    assert ModelConfig(offload_prior=0.0, channel_slot_bias=0) == ModelConfig()
    with pytest.raises(ConfigError, match="restarts"):
        load_config(TACConfig, None, ["restarts=3"])
    with pytest.raises(ValueError, match="offload_prior = 1.5: this trial option was removed"):
        ModelConfig(offload_prior=1.5)
    with pytest.raises(ValueError, match="retry_local_share"):
        TransferConfig.model_validate({"retry_local_share": 0.9})


def test_an_old_checkpoint_loads_with_retired_keys_at_their_kept_value_and_is_refused_otherwise(tmp_path):
    actor, ckpt = load_actor("edgepilot/models/policies/dtac_fig5.pt")
    old = {k: v for k, v in ckpt.items() if k not in ("format_version", "environment")}
    kept = save_checkpoint(tmp_path / "kept.pt", **{**old, "model_config": {**old["model_config"], "ue_slot_embedding": 0,
                                                                             "offload_prior": 0.0, "offload_prior_form": "above_local"}})
    again, _ = load_actor(kept)
    states = torch.rand(64, 6) * torch.tensor([1e-9, 20.0, 5.0, 5.0, 1.0, 5.0])
    with torch.no_grad():
        assert all(torch.equal(x, y) for x, y in zip(actor(states), again(states)))  # the shipped policy, unchanged
    moved = save_checkpoint(tmp_path / "prior.pt", **{**old, "model_config": {**old["model_config"], "offload_prior": 1.0}})
    with pytest.raises(ValueError, match="offload_prior"):
        load_actor(moved)
    assert load_checkpoint(kept)["model_config"]["ue_slot_embedding"] == 0  # the file itself is left as it was
