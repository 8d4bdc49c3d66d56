"""Policies that ship with edgepilot.

``policies/dtac_fig5.pt`` is the DTAC of the Fig. 5 scenario (a trainer checkpoint);
``policies/dtac_fig5-laptop.bundle`` is that checkpoint exported for the ``laptop``
profile (FP32 ONNX, parity-checked, unsigned), so ``edgepilot demo`` runs without torch:
it signs a copy with a key generated on the spot. ``make policies`` re-exports the
bundle from the checkpoint; ``tests/test_shipped_policy.py`` checks that they agree.
"""

from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parent / "policies"
SHIPPED_DTAC_CHECKPOINT = POLICY_DIR / "dtac_fig5.pt"
SHIPPED_DTAC_BUNDLE = POLICY_DIR / "dtac_fig5-laptop.bundle"
