"""Load test of `edgepilot serve`: closed-loop load generator at a fixed concurrency for a
fixed time, micro-batching on vs off in the same run (same machine, same requests).

Each mode starts a fresh server process (`edgepilot serve --port 0`), warms up, then
`--concurrency` asyncio workers each send co-inference requests (precomputed from
validation images with the shipped head + codec) back to back for `--duration` seconds.
Prints and writes requests per second, p50 / p99 latency, failed requests, the mean
micro-batch size (from the server's Prometheus metrics) and the on / off ratios.

    .venv/bin/python benchmarks/server_load.py --concurrency 32 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgepilot.cloud_trainer.split.data import train_validation  # noqa: E402  (numpy only)
from edgepilot.edge_agent.split.bundle import SplitBundle  # noqa: E402
from edgepilot.edge_agent.split.client import SplitClient  # noqa: E402
from edgepilot.v1 import split_inference_pb2_grpc as pb_grpc  # noqa: E402


def start_server(max_batch: int, max_wait_ms: float, bundle: Path | None) -> tuple[subprocess.Popen, dict]:
    ready = Path(tempfile.mkdtemp()) / "ready.json"
    cmd = [sys.executable, "-m", "edgepilot", "serve", "--port", "0", "--metrics-port", "0", "--max-batch", str(max_batch),
           "--max-wait-ms", str(max_wait_ms), "--ready-file", str(ready), "--grace-seconds", "5"]
    if bundle:
        cmd += ["--bundle", str(bundle)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    time.sleep(0.1)
    return proc, json.loads(ready.read_text())


def metric_sum_count(text: str, name: str) -> tuple[float, float]:
    s = sum(float(m) for m in re.findall(rf"^{name}_sum{{[^}}]*}} (\S+)$", text, re.M))
    c = sum(float(m) for m in re.findall(rf"^{name}_count{{[^}}]*}} (\S+)$", text, re.M))
    return s, c


async def load(target: str, requests: list, concurrency: int, duration: float, warmup: float) -> dict:
    latencies, failures, codes = [], 0, {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.SplitInferenceStub(channel)
        t_warm_end = time.monotonic() + warmup
        t_end = t_warm_end + duration

        async def worker(k: int):
            nonlocal failures
            i = k
            while True:
                now = time.monotonic()
                if now >= t_end:
                    return
                req = requests[i % len(requests)]
                i += concurrency
                t0 = time.perf_counter()
                try:
                    await stub.Infer(req, timeout=10)
                    ok = True
                except grpc.aio.AioRpcError as err:
                    ok = False
                    code = err.code().name
                dt = time.perf_counter() - t0
                if now >= t_warm_end:
                    if ok:
                        latencies.append(dt)
                    else:
                        failures += 1
                        codes[code] = codes.get(code, 0) + 1

        await asyncio.gather(*[worker(k) for k in range(concurrency)])
    lat = np.array(latencies)
    return {"ok": int(len(lat)), "failed": failures, "failed_codes": codes, "duration_seconds": duration,
            "requests_per_second": len(lat) / duration,
            "latency_p50_ms": float(np.percentile(lat, 50) * 1000) if len(lat) else None,
            "latency_p99_ms": float(np.percentile(lat, 99) * 1000) if len(lat) else None,
            "latency_mean_ms": float(lat.mean() * 1000) if len(lat) else None}


def run_mode(name: str, max_batch: int, args, requests) -> dict:
    proc, info = start_server(max_batch, args.max_wait_ms, args.bundle)
    try:
        result = asyncio.run(load(f"127.0.0.1:{info['port']}", requests, args.concurrency, args.duration, args.warmup))
        text = urllib.request.urlopen(f"http://127.0.0.1:{info['metrics_port']}/metrics", timeout=5).read().decode()
        s, c = metric_sum_count(text, "edgepilot_batch_size")
        result["mean_batch_size"] = s / c if c else None
        result["server_batches"] = c
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    result.update({"mode": name, "max_batch": max_batch, "max_wait_ms": args.max_wait_ms if max_batch > 1 else 0})
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60.0, help="measured seconds per mode")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per mode")
    ap.add_argument("--max-batch", type=int, default=16, help="micro-batch limit of the 'on' mode")
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=512, help="distinct precomputed requests")
    ap.add_argument("--out", type=Path, default=ROOT / "results/split/server_load.json")
    args = ap.parse_args()

    bundle = SplitBundle.load(args.bundle) if args.bundle else SplitBundle.load()
    _, va = train_validation()
    client = SplitClient("127.0.0.1:1", bundle)  # only builds requests; never connects
    requests = [client.co_inference_request(img)[0] for img in va.images[: args.requests]]
    payload = float(np.mean([len(r.bitstream) for r in requests]))
    client.close()

    results = {"concurrency": args.concurrency, "payload_bytes_mean": payload, "cpu_count": os.cpu_count(), "modes": []}
    for name, mb in (("batching off", 1), ("batching on", args.max_batch)):
        print(f"[{name}] {args.duration:.0f} s at concurrency {args.concurrency} ...", flush=True)
        r = run_mode(name, mb, args, requests)
        results["modes"].append(r)
        print(f"[{name}] {r['requests_per_second']:.1f} req/s, p50 {r['latency_p50_ms']:.2f} ms, "
              f"p99 {r['latency_p99_ms']:.2f} ms, failed {r['failed']}, mean batch {r['mean_batch_size']}", flush=True)
    off, on = results["modes"]
    results["ratio_rps_on_over_off"] = on["requests_per_second"] / off["requests_per_second"]
    results["ratio_p99_on_over_off"] = on["latency_p99_ms"] / off["latency_p99_ms"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "modes"} | {
        m["mode"]: {k: m[k] for k in ("requests_per_second", "latency_p50_ms", "latency_p99_ms", "failed", "mean_batch_size")}
        for m in results["modes"]}, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(m["failed"] == 0 for m in results["modes"]) else 1


if __name__ == "__main__":
    sys.exit(main())
