"""The shipped laptop bundle (edgepilot/models/policies/dtac_fig5-laptop.bundle, what
`edgepilot demo` runs) decides like the shipped checkpoint it was exported from
(dtac_fig5.pt): the checkpoint's actor in torch and the bundle in the device runtime,
on simulator local states of the checkpoint's own scenario. `make policies` re-exports
the bundle; this test catches a checkpoint and a bundle that drifted apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # the trainer extra (edgepilot[dev], what `make test` installs)

from edgepilot.models import SHIPPED_DTAC_BUNDLE, SHIPPED_DTAC_CHECKPOINT


@pytest.fixture(scope="module")
def decisions(tmp_path_factory):
    from edgepilot.cloud_trainer.checkpoint import load_actor
    from edgepilot.cloud_trainer.envs.simulator import sample_local_states
    from edgepilot.cloud_trainer.scenario import scenario_from_dict
    from edgepilot.edge_agent.runtime import PolicyRuntime
    from edgepilot.export.bundle import generate_keypair, sign_bundle

    actor, ckpt = load_actor(SHIPPED_DTAC_CHECKPOINT)
    assert ckpt["kind"] == "dtac"
    scenario = scenario_from_dict(ckpt["scenario"], "checkpoint scenario")
    states = sample_local_states(scenario, 400, seed=11).astype(np.float32)[:400]
    with torch.inference_mode():
        ref = [t.numpy() for t in actor(torch.as_tensor(states))]
    # the shipped bundle is unsigned: sign a copy with a throwaway key, as the demo does
    tmp = tmp_path_factory.mktemp("shipped")
    priv, pub = generate_keypair(tmp, "test")
    signed, _ = sign_bundle(SHIPPED_DTAC_BUNDLE, priv, out=tmp / "dtac.bundle")
    runtime = PolicyRuntime.from_bundle(signed, [pub], profile="laptop")
    got = [runtime.infer(s) for s in states]  # one UE's decision at a time, as an agent decides
    return states, ref, got


def test_shipped_bundle_offload_decisions_agree_with_the_checkpoint(decisions) -> None:
    states, ref, got = decisions
    assert len(states) == 400
    offload_ref = ref[0].argmax(-1)
    offload_bundle = np.array([g[0].argmax() for g in got])
    assert len(set(offload_ref.tolist())) > 1  # the states exercise more than one decision
    agreement = float((offload_ref == offload_bundle).mean())
    assert agreement >= 0.99, f"offload decisions agree on {agreement:.1%} of {len(states)} states"


def test_shipped_bundle_channels_agree_with_the_checkpoint(decisions) -> None:
    _, ref, got = decisions
    agreement = float((ref[1].argmax(-1) == np.array([g[1].argmax() for g in got])).mean())
    assert agreement >= 0.99, f"channel decisions agree on {agreement:.1%}"
