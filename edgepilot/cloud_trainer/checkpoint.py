"""Checkpoints of TAC / DTAC (and baseline) training.

A checkpoint is one ``torch.save`` file holding a dict:

``kind``            "tac" | "dtac" | a baseline name
``model_config``    :class:`edgepilot.cloud_trainer.models.ModelConfig` as a dict
``actor``           state dict of the actor (TACActor for "tac", DTACActor for "dtac")
``critic``          state dict of the centralized critic (optional)
``optimizers``      name -> optimizer state dict (for ``--resume``)
``scenario``        the resolved scenario as a dict; ``scenario_hash`` its SHA-256
``progress``        episode counter, noise variance, ... (trainer-defined)
``metrics``         final figures (trainer-defined)
``environment``     CPU, Python, numpy / torch versions of the run
                    (:func:`edgepilot.cloud_trainer.environment.run_environment`; a training
                    seed reproduces a run only in the same environment)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from edgepilot.cloud_trainer.environment import run_environment
from edgepilot.cloud_trainer.models import DTACActor, ModelConfig, TACActor, TACCritic

FORMAT_VERSION = 1
ACTOR_CLASSES = {"tac": TACActor, "dtac": DTACActor}


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file beside ``path``, then rename: an interrupted save never
    leaves a truncated file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_checkpoint(path: str | os.PathLike, **payload) -> Path:
    """Write a trainer checkpoint atomically (:func:`atomic_torch_save`)."""
    if "kind" not in payload or "model_config" not in payload or "actor" not in payload:
        raise ValueError("a checkpoint needs at least kind, model_config and actor")
    payload = {"format_version": FORMAT_VERSION, "environment": run_environment(), **payload}
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not an edgepilot checkpoint (format {FORMAT_VERSION})")
    return ckpt


def load_actor(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """The actor of a "tac" or "dtac" checkpoint, in eval mode, and the checkpoint dict."""
    ckpt = load_checkpoint(path)
    kind = ckpt["kind"]
    if kind not in ACTOR_CLASSES:
        raise ValueError(f"{path}: checkpoint kind {kind!r} has no exportable actor (expected one of {sorted(ACTOR_CLASSES)})")
    actor = ACTOR_CLASSES[kind](ModelConfig(**ckpt["model_config"]))
    actor.load_state_dict(ckpt["actor"])
    return actor.eval(), ckpt


def load_critic(ckpt: dict) -> TACCritic:
    if ckpt.get("critic") is None:
        raise ValueError("checkpoint holds no critic")
    critic = TACCritic(ModelConfig(**ckpt["model_config"]))
    critic.load_state_dict(ckpt["critic"])
    return critic.eval()
