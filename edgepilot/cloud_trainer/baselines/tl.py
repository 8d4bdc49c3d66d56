"""TL baseline (DTAC paper section IV-A, eq. 26): the HAPPO-sized MLP actor on the
local state (24), trained by behaviour cloning (MSE) of the centralized TAC's actions
on the same joint states DTAC's transfer sees. See :func:`edgepilot.cloud_trainer.dtac.train_transfer`."""

from __future__ import annotations

from edgepilot.cloud_trainer.dtac import TransferConfig, train_transfer


def train_tl(scenario, tac_checkpoint, cfg: TransferConfig, out_dir, resume=False, progress=None):
    return train_transfer(scenario, tac_checkpoint, cfg, out_dir, method="tl", resume=resume, progress=progress)
