"""Trainer, exporter and bundle on a tiny model (a few hundred images, one epoch): the
mechanics, not the accuracy. Data set from the Debian package dataset-fashion-mnist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgepilot.cloud_trainer.split.data import load_official, split_indices, to_float, train_validation
from edgepilot.cloud_trainer.split.model import CodecConfig, SplitCNN
from edgepilot.cloud_trainer.split.train import TrainConfig, choose_operating_point, train_base, train_codec
from edgepilot.edge_agent.split.bundle import BundleError, SplitBundle
from edgepilot.export.split_model import export_bundle

TINY = TrainConfig(epochs=1, codec_epochs=1, batch_size=64, threads=1)


@pytest.fixture(scope="module")
def data():
    return train_validation(limit=384)


@pytest.fixture(scope="module")
def trained(data):
    tr, va = data
    base, base_metrics = train_base(tr, va, tc=TINY)
    codec, metrics = train_codec(base, tr, va, lam=1e-2, codec=CodecConfig(split_point=2, latent_channels=4), tc=TINY)
    return base, codec, metrics


@pytest.fixture(scope="module")
def bundle_dir(trained, tmp_path_factory) -> Path:
    base, codec, metrics = trained
    return export_bundle(codec, base, tmp_path_factory.mktemp("bundle"), training={"lambda": 1e-2})


def test_validation_is_carved_from_train_and_test_is_separate(data) -> None:
    tr, va = train_validation()
    assert len(tr) + len(va) == 60000 and len(va) == 5000
    assert tr.images.shape[1:] == (28, 28) and set(np.unique(va.labels)) == set(range(10))
    train_idx, val_idx = split_indices(60000)
    assert not set(train_idx) & set(val_idx) and len(set(train_idx) | set(val_idx)) == 60000
    assert np.array_equal(split_indices(60000)[1], val_idx)  # fixed: the same every run
    tiny_tr, tiny_va = data
    assert len(tiny_tr) == 384
    test = load_official("test")
    assert len(test) == 10000


def test_split_points_partition_the_network() -> None:
    torch.manual_seed(0)
    cnn = SplitCNN().eval()
    x = torch.rand(3, 1, 28, 28)
    full = cnn(x)
    for k in (1, 2, 3):
        h = cnn.head(x, k)
        assert tuple(h.shape[1:]) == SplitCNN.feature_shape(cnn.config, k)
        torch.testing.assert_close(cnn.tail(h, k), full)
    with pytest.raises(ValueError):
        SplitCNN.feature_shape(cnn.config, 4)


def test_rate_term_trains_the_entropy_model(trained) -> None:
    base, codec, metrics = trained
    assert metrics["val_bits_per_image"] > 0
    history = metrics["history"]
    assert np.isfinite(history[-1]["val_bits_per_image"])
    # the head is the base model's (frozen during the codec fine-tune)
    for (name, p), (_, q) in zip(base.blocks[:2].named_parameters(), codec.cnn.blocks[:2].named_parameters()):
        torch.testing.assert_close(p, q, msg=name)


def test_bundle_reproduces_the_torch_model(trained, bundle_dir, data) -> None:
    base, codec, _ = trained
    bundle = SplitBundle.load(bundle_dir)
    _, va = data
    x = to_float(va.images[:32])
    with torch.no_grad():
        y = codec.encode(torch.from_numpy(x))
        symbols_torch = torch.round(y).numpy().astype(np.int32)
        logits_torch = codec.decode(torch.round(y)).numpy()
        full_torch = base(torch.from_numpy(x)).numpy()
    symbols = bundle.head_symbols(x)
    clamped = np.stack([bundle.codec.clamp(s) for s in symbols_torch])
    # float differences between torch and onnxruntime may move a value across a .5 boundary
    assert np.mean(symbols == clamped) > 0.99
    for s in symbols:
        assert np.array_equal(bundle.codec.decode(bundle.codec.encode(s), s.shape), s)
    np.testing.assert_allclose(bundle.tail_logits(clamped), logits_torch, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(bundle.full_logits(x), full_torch, atol=1e-3, rtol=1e-3)
    for err in bundle.manifest["onnx_parity_max_abs_error"].values():
        assert err < 1e-3


def test_cdf_tables_are_integer_and_cover_the_latents(bundle_dir, data) -> None:
    tables = json.loads((bundle_dir / "codec_tables.json").read_text())
    assert tables["codec_id"] == "ep-factorized-range"
    for ch in tables["channels"]:
        assert all(isinstance(f, int) and f >= 1 for f in ch["frequencies"])
        assert sum(ch["frequencies"]) == 1 << tables["precision_bits"]
    bundle = SplitBundle.load(bundle_dir)
    _, va = data
    x = to_float(va.images[:64])
    raw = np.rint(bundle.model("head").run(x)).astype(np.int64)
    inside = np.mean([(raw[:, c] >= t.low) & (raw[:, c] <= t.high) for c, t in enumerate(bundle.codec.tables)])
    assert inside > 0.99


def test_tampered_bundle_is_refused(bundle_dir, tmp_path) -> None:
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle_dir, copy)
    with open(copy / "tail.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="tail.onnx"):
        SplitBundle.load(copy)


def test_operating_point_choice() -> None:
    pts = [{"val_accuracy": 0.90, "val_bits_per_image": 100}, {"val_accuracy": 0.925, "val_bits_per_image": 300},
           {"val_accuracy": 0.93, "val_bits_per_image": 900}]
    assert choose_operating_point(pts, 0.93, 0.006)["val_bits_per_image"] == 300
    assert choose_operating_point(pts, 0.99, 0.001)["val_accuracy"] == 0.93


def test_train_and_bench_commands(tmp_path) -> None:
    """`edgepilot split train` on 200 images, then `split bench` on 50 test images."""
    out = tmp_path / "run"
    env_cmd = [sys.executable, "-m", "edgepilot"]
    r = subprocess.run(env_cmd + ["split", "train", "--out", str(out), "--limit", "200", "--epochs", "1",
                                  "--lambdas", "1e-3,1e-2", "--latent-channels", "4", "--threads", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert len(summary["points"]) == 2 and Path(summary["chosen"]["bundle"]).is_dir()
    res = tmp_path / "bench"
    r = subprocess.run(env_cmd + ["split", "bench", "--bundle", summary["chosen"]["bundle"], "--sweep", str(out / "bundles"),
                                  "--images", "50", "--qualities", "10,75", "--rates", "20,200", "--latency-images", "2",
                                  "--out", str(res)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    bench = json.loads((res / "bench.json").read_text())
    methods = [row["method"] for row in bench["payload"]["table_ii"]]
    assert methods[0].startswith("Edge-only, lossless") and methods[-1] == "Client-only"
    assert len(bench["payload"]["co_inference"]) == 2
    assert set(bench["latency"]["methods"]) >= {"co-inference", "edge-only PNG", "client-only"}
    assert (res / "rate_accuracy.png").stat().st_size > 0 and (res / "latency_vs_rate.png").stat().st_size > 0
    r = subprocess.run(env_cmd + ["split", "train", "--lambdas", "abc"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--lambdas" in r.stderr
