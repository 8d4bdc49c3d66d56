"""TL-transformer baseline (DTAC paper section IV-A): the DTAC network and
initialisation (TAC copy, identity attention), trained by behaviour cloning (MSE, eq. 26)
of the TAC's actions instead of DTAC's critic-guided loss (22)."""

from __future__ import annotations

from edgepilot.cloud_trainer.dtac import TransferConfig, train_transfer


def train_tl_transformer(scenario, tac_checkpoint, cfg: TransferConfig, out_dir, resume=False, progress=None):
    return train_transfer(scenario, tac_checkpoint, cfg, out_dir, method="tl_transformer", resume=resume, progress=progress)
