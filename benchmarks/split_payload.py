"""Payload and accuracy of client-edge co-inference against the paper's baselines
(Table II) on the official Fashion-MNIST test split, with ratios against edge-only
lossless (PNG) measured in the same run, plus median per-image codec times.

    .venv/bin/python benchmarks/split_payload.py --sweep runs/split/bundles

Checks the issue's targets and says which hold: payload >= 6x smaller than PNG, at most
0.5 points of accuracy lost, and the rate-accuracy curve above JPEG's at every rate.

Integrity: every request carries ``bitstream_crc32`` (a protobuf fixed32 field: 1 tag
byte + 4 bytes). Its cost is measured on the serialized requests of the operating point
and of PNG, and shown as extra rows of Table II ("+ CRC-32": bytes on the wire for the
payload and its checksum).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgepilot.cloud_trainer.split import bench as B  # noqa: E402  (no torch)
from edgepilot.cloud_trainer.split.data import load_official  # noqa: E402
from edgepilot.edge_agent.split.bundle import SplitBundle  # noqa: E402
from edgepilot.edge_agent.split.client import SplitClient, as_model_input  # noqa: E402
from edgepilot.edge_agent.split.codec import ImageCodec  # noqa: E402


def codec_times(bundle: SplitBundle, images: np.ndarray, n: int = 300) -> dict:
    imgs = images[:n]
    symbols = bundle.head_symbols(as_model_input(imgs))
    png = ImageCodec("image/png")

    def per_image(fn, items):
        out = []
        for it in items:
            t0 = time.perf_counter()
            fn(it)
            out.append(time.perf_counter() - t0)
        return statistics.median(out)

    bits = [bundle.codec.encode(s) for s in symbols]
    pngs = [png.encode(i) for i in imgs]
    return {
        "co_inference_encode_seconds_median": per_image(bundle.codec.encode, symbols),
        "co_inference_decode_seconds_median": per_image(lambda b: bundle.codec.decode(b, bundle.latent_shape), bits),
        "head_seconds_median": per_image(lambda i: bundle.model("head").run(as_model_input(i[None])), imgs),
        "png_encode_seconds_median": per_image(png.encode, imgs),
        "png_decode_seconds_median": per_image(lambda b: png.decode(b, (1, 28, 28)), pngs),
    }


def checksum_cost(bundle: SplitBundle, images: np.ndarray, n: int = 1000) -> dict:
    """Bytes the CRC-32 field adds to serialized requests (co-inference and PNG)."""
    client = SplitClient("127.0.0.1:9", bundle)   # builds requests only; never connects
    try:
        out = {}
        for name, build in (("co_inference", lambda img: client.co_inference_request(img)[0]),
                            ("edge_only_png", lambda img: client.edge_only_request(img, "image/png")[0])):
            with_crc, without, payload = [], [], []
            for img in images[:n]:
                req = build(img)
                with_crc.append(req.ByteSize())
                payload.append(len(req.bitstream))
                req.ClearField("bitstream_crc32")
                without.append(req.ByteSize())
            extra = float(np.mean(np.subtract(with_crc, without)))
            out[name] = {"checksum_bytes": extra, "payload_bytes_mean": float(np.mean(payload)),
                         "request_bytes_mean_without_checksum": float(np.mean(without)),
                         "request_bytes_mean_with_checksum": float(np.mean(with_crc)),
                         "checksum_share_of_payload": extra / float(np.mean(payload))}
        return out
    finally:
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=None, help="operating-point bundle (default: shipped)")
    ap.add_argument("--sweep", type=Path, default=None, help="directory of per-lambda bundles")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--qualities", default="5,10,20,30,50,75,90")
    ap.add_argument("--out", type=Path, default=ROOT / "results/split/split_payload.json")
    args = ap.parse_args()

    bundle = SplitBundle.load(args.bundle) if args.bundle else SplitBundle.load()
    sweep = [SplitBundle.load(p.parent) for p in sorted(args.sweep.glob("*/manifest.json"))] if args.sweep else []
    test = load_official("test")
    imgs, labels = test.images[: args.images], test.labels[: args.images]
    qs = [int(q) for q in args.qualities.split(",")]
    table = B.payload_table(bundle, sweep, imgs, labels, qs)
    times = codec_times(bundle, imgs)
    crc = checksum_cost(bundle, imgs)
    rows = {"co_inference": "co-inference (operating point) + CRC-32 field", "edge_only_png": "edge-only PNG + CRC-32 field"}
    base = {"co_inference": table["co_inference_operating_point"], "edge_only_png": table["edge_only_lossless_png"]}
    for key, label in rows.items():
        table["table_ii"].append({"method": label, "payload_bytes": base[key]["payload_bytes_mean"] + crc[key]["checksum_bytes"],
                                  "accuracy": base[key]["accuracy"]})
    op = table["co_inference_operating_point"]
    png = table["edge_only_lossless_png"]
    checks = {
        "payload_at_least_6x_smaller_than_png": table["payload_ratio_png_over_co_inference"] >= 6,
        "accuracy_drop_at_most_0.5_points": table["accuracy_drop_points_vs_png"] <= 0.5,
        "curve_above_jpeg_at_every_rate": table["curve_above_jpeg_at_every_rate"],
    }
    result = {"images": len(imgs), "table": table, "codec_times": times, "checksum": crc, "checks": checks}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"Table II (Fashion-MNIST test split, {len(imgs)} images)")
    print(f"{'method':55s} {'bytes/image':>12s} {'accuracy':>9s}")
    for row in table["table_ii"]:
        print(f"{row['method']:55s} {row['payload_bytes']:12.1f} {100 * row['accuracy']:8.2f}%")
    print("\nrate-accuracy curve (co-inference, one point per lambda):")
    for p in table["co_inference"]:
        print(f"  lambda={p['lambda']}: {p['payload_bytes_mean']:.1f} B (median {p['payload_bytes_median']:.0f}), "
              f"{100 * p['accuracy']:.2f}%")
    for name in ("edge_only_jpeg", "edge_only_webp"):
        print(f"{name}: " + ", ".join(f"q{p['quality']}: {p['payload_bytes_mean']:.0f} B {100 * p['accuracy']:.2f}%"
                                      for p in table[name]))
    print(f"\npayload: PNG {png['payload_bytes_mean']:.1f} B (median {png['payload_bytes_median']:.0f}) vs co-inference "
          f"{op['payload_bytes_mean']:.1f} B (median {op['payload_bytes_median']:.0f}) -> "
          f"{table['payload_ratio_png_over_co_inference']:.1f}x smaller")
    print(f"accuracy: PNG {100 * png['accuracy']:.2f}% vs co-inference {100 * op['accuracy']:.2f}% "
          f"({table['accuracy_drop_points_vs_png']:+.2f} points lost)")
    print("integrity: CRC-32 field costs " + ", ".join(
        f"{k} {v['checksum_bytes']:.0f} B/request ({100 * v['checksum_share_of_payload']:.1f}% of its payload)"
        for k, v in crc.items()))
    print("median per-image times: " + ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in times.items()))
    print("checks: " + json.dumps(checks))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
