"""The base of every trainer config (ModelConfig, TACConfig, TransferConfig, HAPPOConfig,
MLPConfig): a pydantic model that refuses unknown keys, loadable from YAML with
``edgepilot.config.load_config`` and overridable with ``--set key=value``.

Retired options: a config class lists in ``RETIRED`` the options it no longer has, each
with the value that kept the behaviour the code still has (the option's old default).
Checkpoints written before the option was removed carry it in their saved config; such
a key is accepted (and dropped) only when it holds that value, so loading never silently
gives a model other behaviour than it was trained with. docs/decisions.md ("Trainer")
says what each retired option tried.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict

from pydantic import BaseModel, ConfigDict, model_validator


class RetiredOptionError(ValueError):
    """A saved config sets a removed option to a value other than the kept behaviour."""


class TrainerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    RETIRED: ClassVar[Dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not cls.RETIRED:
            return data
        out = dict(data)
        for key, kept in cls.RETIRED.items():
            if key in out:
                value = out.pop(key)
                if value != kept:
                    raise RetiredOptionError(
                        f"{cls.__name__}.{key} = {value!r}: this trial option was removed (docs/decisions.md, Trainer); "
                        f"only {kept!r}, the behaviour kept, can still be loaded")
        return out

    def to_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict):
        return cls.model_validate(data)
