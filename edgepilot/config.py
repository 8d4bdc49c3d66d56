"""One config style for every part: a pydantic model, loaded from YAML (or JSON, which
is YAML) and overridden from the command line with ``--set key=value``.

``load_config(TACConfig, "tac.yaml", ["lr_actor=1e-4", "model.d_model=64"])`` reads the
file (optional), applies each override (dotted keys reach nested models; values are
parsed as YAML, so ``1e-4``, ``true``, ``[1, 2]`` and ``null`` mean what they say) and
validates the result; unknown keys and bad values raise :class:`ConfigError` naming the
key. Runs on Python 3.8 (device code uses it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Type, TypeVar, Union

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def _parse_override(item: str) -> "tuple[list[str], Any]":
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({err.__class__.__name__})") from None
    return key.split("."), value


def read_config_file(path: Union[str, Path]) -> Dict[str, Any]:
    """The mapping in a YAML / JSON config file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as err:
        raise ConfigError(f"{p}: cannot read ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings, got {type(data).__name__}")
    return data


def apply_overrides(data: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """``data`` with every ``key=value`` override applied (dotted keys nest)."""
    out = dict(data)
    for item in overrides or ():
        path, value = _parse_override(item)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[path[-1]] = value
    return out


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``source: key.path: message``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ())) or "(root)"
        lines.append(f"{source}: {loc}: {e.get('msg', 'invalid')}")
    return "; ".join(lines)


def load_config(model: Type[M], path: Optional[Union[str, Path]] = None, overrides: Iterable[str] = (),
                base: Optional[Dict[str, Any]] = None) -> M:
    """``model`` validated from ``base`` (defaults of a caller), the file at ``path`` and
    the ``--set`` overrides, in that order of precedence (later wins)."""
    data: Dict[str, Any] = dict(base or {})
    source = "config"
    if path is not None:
        data.update(read_config_file(path))
        source = str(path)
    data = apply_overrides(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source if not overrides else f"{source} + --set")) from None
