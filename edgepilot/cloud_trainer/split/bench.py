"""The paper's Table II and Fig. 3 for our Fashion-MNIST model (no torch needed).

Table II: payload bytes per image and accuracy of
  * edge-only inference with lossless input compression (PNG),
  * edge-only inference with lossy input compression (JPEG, WebP at several qualities),
  * client-edge co-inference (the entropy-coded latent; one point per lambda),
  * client-only inference (nothing sent).
Fig. 3: end-to-end latency against link rate, with the link emulated (sleeps) in front
of a real gRPC edge server on 127.0.0.1.

Only the final figures use the official test split.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgepilot.edge_agent.split.bundle import SplitBundle
from edgepilot.edge_agent.split.client import SplitClient, as_model_input
from edgepilot.edge_agent.split.codec import ImageCodec
from edgepilot.edge_agent.split.link import EmulatedLink

DEFAULT_QUALITIES = (5, 10, 20, 30, 50, 75, 90)
DEFAULT_RATES_KBPS = (2, 5, 10, 20, 50, 100, 200, 500)   # kilobytes per second, as the paper's Fig. 3
Progress = Callable[[str, int, int], None]


def _noop(stage: str, done: int, total: int) -> None:
    pass


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def _batched(fn, x: np.ndarray, batch: int = 500) -> np.ndarray:
    return np.concatenate([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


def image_baseline(bundle: SplitBundle, images: np.ndarray, labels: np.ndarray, codec_id: str,
                   quality: int | None, progress: Progress = _noop) -> dict:
    codec = ImageCodec(codec_id)
    sizes, decoded = [], np.empty((len(images), 1, *images.shape[1:]), dtype=np.float32)
    for i, img in enumerate(images):
        data = codec.encode(img, quality)
        sizes.append(len(data))
        decoded[i] = codec.decode(data, (1, *img.shape))
        if i % 1000 == 0:
            progress(f"{codec_id} q={quality}", i, len(images))
    acc = _accuracy(_batched(bundle.full_logits, decoded), labels)
    return {"payload_bytes_mean": float(np.mean(sizes)), "payload_bytes_median": float(np.median(sizes)),
            "accuracy": acc}


def co_inference_point(bundle: SplitBundle, images: np.ndarray, labels: np.ndarray, progress: Progress = _noop) -> dict:
    """Encode every latent, decode it again (what the server sees), run the tail."""
    x = as_model_input(images)
    symbols = _batched(bundle.head_symbols, x)
    sizes, decoded = [], np.empty_like(symbols)
    for i, s in enumerate(symbols):
        bits = bundle.codec.encode(s)
        sizes.append(len(bits))
        decoded[i] = bundle.codec.decode(bits, s.shape)
        if i % 1000 == 0:
            progress(f"co-inference {bundle.root.name}", i, len(symbols))
    if not np.array_equal(decoded, symbols):
        raise AssertionError("entropy codec round trip is not exact")
    acc = _accuracy(_batched(bundle.tail_logits, decoded), labels)
    lam = bundle.manifest.get("training", {}).get("lambda")
    return {"bundle": str(bundle.root), "lambda": lam, "payload_bytes_mean": float(np.mean(sizes)),
            "payload_bytes_median": float(np.median(sizes)), "accuracy": acc}


def dominates(curve: list[dict], baseline: list[dict]) -> list[dict]:
    """For each baseline point (rate r, accuracy a): the best co-inference accuracy at a
    rate <= r, and whether it is >= a (the curve is 'above' the baseline at r)."""
    out = []
    for b in baseline:
        under = [c["accuracy"] for c in curve if c["payload_bytes_mean"] <= b["payload_bytes_mean"]]
        best = max(under) if under else None
        out.append({"baseline_bytes": b["payload_bytes_mean"], "baseline_accuracy": b["accuracy"],
                    "co_inference_best_accuracy": best, "above": best is not None and best >= b["accuracy"]})
    return out


def payload_table(bundle: SplitBundle, sweep: list[SplitBundle], images: np.ndarray, labels: np.ndarray,
                  qualities=DEFAULT_QUALITIES, progress: Progress = _noop) -> dict:
    full_acc = _accuracy(_batched(bundle.full_logits, as_model_input(images)), labels)
    png = image_baseline(bundle, images, labels, "image/png", None, progress)
    jpeg = [{"quality": q, **image_baseline(bundle, images, labels, "image/jpeg", q, progress)} for q in qualities]
    webp = [{"quality": q, **image_baseline(bundle, images, labels, "image/webp", q, progress)} for q in qualities]
    seen, points = set(), []
    for b in [bundle, *sweep]:
        key = b.manifest["files"]["tail"]["sha256"] + b.manifest["files"]["codec_tables"]["sha256"]  # same model, other path
        if key not in seen:
            seen.add(key)
            points.append(co_inference_point(b, images, labels, progress))
    points.sort(key=lambda p: p["payload_bytes_mean"])
    main = points[0] if len(points) == 1 else next(p for p in points if p["bundle"] == str(bundle.root))
    # The paper's lossy row: the smallest JPEG within 1.5 points of lossless, else the best JPEG.
    near = [j for j in jpeg if j["accuracy"] >= png["accuracy"] - 0.015]
    lossy = min(near, key=lambda j: j["payload_bytes_mean"]) if near else max(jpeg, key=lambda j: j["accuracy"])
    table = [
        {"method": "Edge-only, lossless (PNG)", "payload_bytes": png["payload_bytes_mean"], "accuracy": png["accuracy"]},
        {"method": f"Edge-only, lossy (JPEG q={lossy['quality']})", "payload_bytes": lossy["payload_bytes_mean"],
         "accuracy": lossy["accuracy"]},
        {"method": f"Client-edge co-inference (lambda={main['lambda']})", "payload_bytes": main["payload_bytes_mean"],
         "accuracy": main["accuracy"]},
        {"method": "Client-only", "payload_bytes": 0.0, "accuracy": full_acc},
    ]
    return {
        "images": int(len(images)),
        "table_ii": table,
        "edge_only_lossless_png": png,
        "edge_only_jpeg": jpeg,
        "edge_only_webp": webp,
        "co_inference": points,
        "co_inference_operating_point": main,
        "full_precision_accuracy": full_acc,
        "payload_ratio_png_over_co_inference": png["payload_bytes_mean"] / main["payload_bytes_mean"],
        "accuracy_drop_points_vs_png": 100 * (png["accuracy"] - main["accuracy"]),
        "above_jpeg": dominates(points, jpeg),
        "above_webp": dominates(points, webp),
        "curve_above_jpeg_at_every_rate": all(d["above"] for d in dominates(points, jpeg)),
    }


@dataclass
class LatencyConfig:
    rates_kbps: tuple = DEFAULT_RATES_KBPS
    rtt_seconds: float = 0.005
    downlink_factor: float = 2.0         # downlink rate / uplink rate (the paper: 500 vs 250 KB/s)
    images: int = 10
    device_slowdown: float = 1.0         # multiply device compute (emulate a slower board)
    jpeg_quality: int = 50


def latency_vs_rate(bundle: SplitBundle, target: str, images: np.ndarray, cfg: LatencyConfig,
                    progress: Progress = _noop) -> dict:
    """Median end-to-end latency per method and link rate, measured through the server
    at ``target`` with the link emulated on the client."""
    imgs = images[: cfg.images]
    # client-only: the full model on the device
    client_only = []
    for img in imgs:
        t0 = time.perf_counter()
        bundle.full_logits(as_model_input(img[None]))
        client_only.append((time.perf_counter() - t0) * cfg.device_slowdown)
    methods = {
        "co-inference": lambda c, img: c.co_inference_request(img),
        "edge-only PNG": lambda c, img: c.edge_only_request(img, "image/png"),
        f"edge-only JPEG q={cfg.jpeg_quality}": lambda c, img: c.edge_only_request(img, "image/jpeg", cfg.jpeg_quality),
    }
    results = {name: [] for name in methods}
    results["client-only"] = []
    total = len(cfg.rates_kbps)
    for k, rate in enumerate(cfg.rates_kbps):
        progress("latency vs rate", k, total)
        link = EmulatedLink(rate * 1000.0, rate * 1000.0 * cfg.downlink_factor, cfg.rtt_seconds)
        with SplitClient(target, bundle, link=link) as client:
            client.call(client.co_inference_request(imgs[0])[0])  # warm the channel
            for name, build in methods.items():
                samples, payload = [], []
                for img in imgs:
                    req, dev = build(client, img)
                    r = client.call(req, dev)
                    samples.append(dev * cfg.device_slowdown + r.round_trip_seconds)
                    payload.append(r.payload_bytes)
                results[name].append({"rate_kbps": rate, "latency_seconds_median": statistics.median(samples),
                                      "payload_bytes_median": statistics.median(payload)})
        results["client-only"].append({"rate_kbps": rate, "latency_seconds_median": statistics.median(client_only),
                                       "payload_bytes_median": 0})
    progress("latency vs rate", total, total)
    return {"config": cfg.__dict__ | {"rates_kbps": list(cfg.rates_kbps)}, "methods": results}


def plot(results: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    t = results["payload"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, marker in (("co_inference", "co-inference (entropy model)", "o"),
                               ("edge_only_jpeg", "edge-only JPEG", "s"), ("edge_only_webp", "edge-only WebP", "^")):
        pts = sorted(t[key], key=lambda p: p["payload_bytes_mean"])
        ax.plot([p["payload_bytes_mean"] for p in pts], [100 * p["accuracy"] for p in pts], marker=marker, label=label)
    png = t["edge_only_lossless_png"]
    ax.scatter([png["payload_bytes_mean"]], [100 * png["accuracy"]], marker="*", s=120, color="k", label="edge-only PNG")
    ax.set_xscale("log")
    ax.set_xlabel("payload per image (bytes, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Rate-accuracy on Fashion-MNIST (Table II)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "rate_accuracy.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if "latency" in results:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, pts in results["latency"]["methods"].items():
            ax.plot([p["rate_kbps"] for p in pts], [1000 * p["latency_seconds_median"] for p in pts], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("uplink rate (KB/s)")
        ax.set_ylabel("end-to-end latency, median (ms)")
        ax.set_title("Latency vs link rate (Fig. 3, link emulated)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / "latency_vs_rate.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def write_json(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
    return path
