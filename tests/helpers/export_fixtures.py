"""Shared, cached builders for the export / bundle / runtime tests and the benchmark:
a quickly fitted reference checkpoint (see :mod:`tests.helpers.reference_actor`), a key pair
and exported bundles. Each is built once per process and directory."""

from __future__ import annotations

from pathlib import Path

_CACHE: dict[tuple, object] = {}


def reference_checkpoint(directory: Path, kind: str = "dtac", scenario: str = "fig5", steps: int | None = None, fit: bool | None = None) -> Path:
    """DTAC: fitted by default; TAC: freshly initialised (normaliser fitted) by default."""
    fit = (kind == "dtac") if fit is None else fit
    key = ("ckpt", str(directory), kind, scenario, steps, fit)
    if key in _CACHE:
        return _CACHE[key]
    import torch

    from edgepilot.cloud_trainer.checkpoint import save_checkpoint
    from edgepilot.cloud_trainer.envs.simulator import sample_local_states
    from edgepilot.cloud_trainer.models import DTACActor, ModelConfig, TACActor
    from edgepilot.cloud_trainer.scenario import load_scenario
    from tests.helpers.reference_actor import fit_reference_actor

    torch.manual_seed(0)
    sc = load_scenario(scenario)
    states = sample_local_states(sc, 1000, seed=11)
    cfg = ModelConfig()
    actor = (DTACActor if kind == "dtac" else TACActor)(cfg)
    if fit:
        fit_reference_actor(actor, states, steps=steps or 150)
    else:
        actor.normalizer.fit(torch.as_tensor(states))
    path = Path(directory) / f"{kind}-{scenario}-{'fit' if fit else 'init'}.pt"
    save_checkpoint(path, kind=kind, model_config=cfg.to_dict(), actor=actor.state_dict(),
                    scenario=sc.model_dump(mode="json"), scenario_hash=sc.scenario_hash())
    _CACHE[key] = path
    return path


def keypair(directory: Path, name: str = "test") -> tuple[Path, Path]:
    key = ("keys", str(directory), name)
    if key not in _CACHE:
        from edgepilot.export.bundle import generate_keypair

        _CACHE[key] = generate_keypair(directory, name, overwrite=True)
    return _CACHE[key]


def reference_bundle(directory: Path, target: str, kind: str = "dtac", precisions: tuple[str, ...] | None = None,
                     min_agreement: float = 0.5, states: int = 2000, sign: bool = True) -> tuple[Path, dict]:
    key = ("bundle", str(directory), target, kind, precisions, min_agreement, states, sign)
    if key in _CACHE:
        return _CACHE[key]
    from edgepilot.export.pipeline import export_checkpoint

    directory = Path(directory)
    ckpt = reference_checkpoint(directory, kind)
    priv, _ = keypair(directory)
    out = directory / f"{kind}-{target}-{'-'.join(precisions or ('all',))}.bundle"
    report = export_checkpoint(ckpt, target, out, precisions=list(precisions) if precisions else None,
                               parity_count=states, calibration_count=1000, min_agreement=min_agreement,
                               signing_key=priv if sign else None)
    _CACHE[key] = (out, report)
    return out, report
