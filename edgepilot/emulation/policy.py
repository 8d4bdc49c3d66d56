"""The default policy of ``edgepilot emulate`` and ``edgepilot demo``: the shipped DTAC
bundle (``edgepilot/models/policies/dtac_fig5-laptop.bundle``, unsigned), signed on the
spot with a key generated here, so neither needs torch nor a key of the user's."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Tuple

from edgepilot.models import SHIPPED_DTAC_BUNDLE

BUNDLE_NAME = "dtac-laptop.bundle"


def signed_shipped_bundle(directory: Path, shipped: Path = SHIPPED_DTAC_BUNDLE,
                          progress: Callable[[str], None] = print) -> Tuple[Path, Path]:
    """(bundle, public key) under ``directory``: the shipped bundle signed once (key in
    ``directory/keys``), reused afterwards. FileNotFoundError when the install lacks it."""
    directory = Path(directory)
    bundle = directory / BUNDLE_NAME
    keys = directory / "keys"
    pub = keys / "demo.pub"
    if bundle.exists() and pub.exists():
        return bundle, pub
    from edgepilot.export.bundle import generate_keypair, sign_bundle

    if not Path(shipped).is_file():
        raise FileNotFoundError(f"no shipped DTAC bundle at {shipped} (a broken install: reinstall edgepilot)")
    directory.mkdir(parents=True, exist_ok=True)
    priv, pub = generate_keypair(keys, "demo", overwrite=True)
    progress(f"signing the shipped DTAC bundle ({Path(shipped).name}) with a key made here -> {bundle}")
    sign_bundle(shipped, priv, out=bundle)
    return bundle, pub
