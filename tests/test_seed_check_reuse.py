"""benchmarks/dtac_seed_check.py --reuse-from: a candidate retrains only what it changes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import dtac_seed_check as sc  # noqa: E402


def _default_run(root: Path) -> Path:
    for name, methods in sc.TRAIN.items():
        (root / name).mkdir(parents=True)
        for m in methods:
            (root / name / f"{m}.pt").write_text(f"default {name} {m}")
    return root


def test_a_dtac_candidate_reuses_everything_but_the_dtacs(tmp_path):
    src, runs, log = _default_run(tmp_path / "default"), tmp_path / "cand", []
    copied = sc.reuse_checkpoints(src, runs, {}, {"offload_prior": 1.5}, log.append)
    assert sorted(copied) == ["fig6/happo", "fig6/tac", "fig6/tl", "fig6/tl_transformer", "fig7/tac"]
    assert not (runs / "fig6" / "dtac.pt").exists() and not (runs / "fig7" / "dtac.pt").exists()
    assert (runs / "fig6" / "tac.pt").read_text() == "default fig6 tac" and len(log) == 5


def test_a_tac_candidate_reuses_happo_only_and_keeps_what_runs_already_has(tmp_path):
    src, runs = _default_run(tmp_path / "default"), tmp_path / "cand"
    (runs / "fig6").mkdir(parents=True)
    (runs / "fig6" / "happo.pt").write_text("candidate's own")
    assert sc.reuse_checkpoints(src, runs, {"episodes": 14}, {}, lambda m: None) == []
    assert (runs / "fig6" / "happo.pt").read_text() == "candidate's own"
    assert sorted(p.name for p in runs.rglob("*.pt")) == ["happo.pt"]
    # no candidate setting at all: every checkpoint is the default run's (a re-evaluation)
    assert len(sc.reuse_checkpoints(src, tmp_path / "again", {}, {}, lambda m: None)) == 7


def test_a_source_without_the_checkpoint_is_a_clear_error(tmp_path):
    src = _default_run(tmp_path / "default")
    (src / "fig7" / "tac.pt").unlink()
    with pytest.raises(SystemExit, match="fig7/tac.pt is missing"):
        sc.reuse_checkpoints(src, tmp_path / "cand", {}, {"offload_prior": 1.5}, lambda m: None)
