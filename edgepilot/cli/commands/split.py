"""Split inference: ``edgepilot serve`` (the edge server) and ``edgepilot split
train | export | bench | infer | dev-certs``.

torch is imported only inside ``split train`` / ``split export``, so ``serve``,
``split infer`` and ``split bench`` work on a device or server without it."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import List, Optional

import typer

from edgepilot.cli.errors import failed, usage_error

split_app = typer.Typer(help="Client-edge co-inference: train, export, benchmark and call a split model.",
                        no_args_is_help=True)

DEFAULT_RUN_DIR = Path("runs/split")


class _LineProgress:
    """Progress for a non-terminal stderr (logs, CI): one line per stage change or every 10 s."""

    def __init__(self):
        import sys

        self._err = sys.stderr
        self._last = (None, 0.0)
        self.console = self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, description, total=1):
        return 0

    def log(self, message):
        print(time.strftime("%H:%M:%S"), message, file=self._err, flush=True)

    def update(self, task, description="", completed=0, total=1):
        stage, when = self._last
        now = time.monotonic()
        if description != stage or now - when >= 10 or completed >= total:
            self._last = (description, now)
            self.log(f"{description} {completed}/{total}")


def _progress():
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if not sys.stderr.isatty():
        return _LineProgress()
    # progress on stderr: stdout carries the JSON result
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), transient=False, console=Console(stderr=True))


def _load_bundle(path: Optional[Path]):
    from edgepilot.edge_agent.split.bundle import DEFAULT_BUNDLE, BundleError, SplitBundle

    try:
        return SplitBundle.load(path or DEFAULT_BUNDLE)
    except (BundleError, FileNotFoundError) as err:
        usage_error(f"--bundle: {err}")


# --------------------------------------------------------------------------------------------
def serve_cmd(
    bundle: List[Path] = typer.Option(None, "--bundle", help="Split bundle directory (repeatable); default: the shipped Fashion-MNIST bundle."),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(50051, help="Port to bind (0 picks a free one)."),
    max_batch: int = typer.Option(16, min=1, help="Micro-batch size limit; 1 turns batching off."),
    max_wait_ms: float = typer.Option(2.0, min=0.0, help="How long a micro-batch waits for more requests after its first, milliseconds."),
    queue_capacity: int = typer.Option(256, min=1, help="Bounded queue per model endpoint; a full queue answers RESOURCE_EXHAUSTED."),
    max_workers: int = typer.Option(64, min=1, help="gRPC handler threads."),
    max_message_bytes: int = typer.Option(4 * 1024 * 1024, min=1024, help="gRPC transport message limit, bytes."),
    max_bitstream_bytes: int = typer.Option(256 * 1024, min=1, help="Largest accepted bitstream; larger ones get INVALID_ARGUMENT."),
    grace_seconds: float = typer.Option(10.0, min=0.0, help="Drain time for in-flight calls on SIGTERM / SIGINT."),
    metrics_port: Optional[int] = typer.Option(None, help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics."),
    tls_cert: Optional[Path] = typer.Option(None, help="Server certificate (PEM); enables TLS."),
    tls_key: Optional[Path] = typer.Option(None, help="Server private key (PEM)."),
    tls_client_ca: Optional[Path] = typer.Option(None, help="CA for client certificates; enables mTLS."),
    no_edge_only: bool = typer.Option(False, "--no-edge-only", help="Do not serve split point 0 (edge-only image input)."),
    ready_file: Optional[Path] = typer.Option(None, help="Write {'port': ..., 'metrics_port': ...} as JSON here once serving."),
    max_streams: Optional[int] = typer.Option(None, min=1, help="Open streams at once; more get RESOURCE_EXHAUSTED (default: half of --max-workers)."),
    stream_idle_seconds: float = typer.Option(30.0, min=0.1, help="A stream that reads and sends nothing this long is cut (CANCELLED)."),
    wedge_seconds: float = typer.Option(10.0, min=0.1, help="Every call slot busy, or a model run stalled, this long: health says NOT_SERVING."),
    default_deadline_seconds: float = typer.Option(30.0, min=0.001, help="Deadline of a call that carries none."),
    max_deadline_seconds: float = typer.Option(300.0, min=0.001, help="Later deadlines are cut to this."),
) -> None:
    """Run the gRPC edge server: split-inference tails on ONNX Runtime with dynamic micro-batching,
    health checking, reflection, metrics and graceful shutdown."""
    from edgepilot.edge_agent.server.app import ServerConfig
    from edgepilot.edge_agent.server.split_service import BatchingConfig, build_split_server
    from edgepilot.edge_agent.server.tls import TLSConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if (tls_cert is None) != (tls_key is None):
        usage_error("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        usage_error("--tls-client-ca needs --tls-cert and --tls-key")
    bundles = [_load_bundle(p) for p in (bundle or [None])]
    tls = TLSConfig(tls_cert, tls_key, tls_client_ca) if tls_cert else None
    try:
        config = ServerConfig(host=host, port=port, max_workers=max_workers, max_message_bytes=max_message_bytes,
                              grace_seconds=grace_seconds, metrics_port=metrics_port, tls=tls,
                              max_concurrent_streams=max_streams, stream_idle_seconds=stream_idle_seconds,
                              wedge_seconds=wedge_seconds)
        batching = BatchingConfig(max_batch, max_wait_ms / 1000.0, queue_capacity, max_bitstream_bytes,
                                  default_deadline_seconds=default_deadline_seconds,
                                  max_deadline_seconds=max_deadline_seconds)
        server = build_split_server(bundles, config, batching, edge_only=not no_edge_only)
        bound = server.start()
    except ValueError as err:  # a bundle or setting the server cannot use
        usage_error(str(err))
    except OSError as err:  # the port is taken, a certificate unreadable
        failed(f"cannot start the server on {host}:{port}: {err}")
    server.install_signal_handlers()
    info = {"address": f"{host}:{bound}", "port": bound, "metrics_port": server.metrics_port, "tls": tls is not None,
            "mtls": tls_client_ca is not None, "max_batch": max_batch, "max_wait_ms": max_wait_ms,
            "endpoints": sorted(ep.name for s in server.services for ep in getattr(s, "endpoints", {}).values())}
    typer.echo(json.dumps(info))
    if ready_file:
        ready_file.write_text(json.dumps(info))
    server.wait()


# --------------------------------------------------------------------------------------------
@split_app.command("train")
def train_cmd(
    out: Path = typer.Option(DEFAULT_RUN_DIR, "--out", "-o", help="Run directory: checkpoints, sweep.json, bundles/."),
    epochs: int = typer.Option(4, min=1, help="Epochs of the full-precision CNN."),
    codec_epochs: int = typer.Option(8, min=1, help="Epochs of each lambda's codec training (on precomputed head features: fast)."),
    lambdas: str = typer.Option("3e-4,1e-3,3e-3,1e-2", help="Comma-separated rate weights (loss = CE + lambda * bits)."),
    split_point: int = typer.Option(3, min=1, max=3, help="Cut after this CNN block (1: 32x14x14, 2: 64x7x7, 3: 128x3x3)."),
    latent_channels: int = typer.Option(16, min=1, help="Channels of the transmitted latent."),
    limit: Optional[int] = typer.Option(None, min=10, help="Use only this many training images (smoke runs)."),
    threads: int = typer.Option(2, min=1, help="torch CPU threads."),
    max_drop: float = typer.Option(0.003, min=0.0, help="Operating point: lowest rate within this validation-accuracy drop."),
    base: Optional[Path] = typer.Option(None, help="Reuse this base checkpoint instead of training one."),
    install: bool = typer.Option(False, help="Copy the chosen bundle to edge_agent/split/assets/fmnist-cnn."),
) -> None:
    """Train the Fashion-MNIST split CNN and a lambda sweep of entropy-model codecs (validation split only),
    export each as a bundle and pick the operating point. Prints the sweep as JSON."""
    import shutil

    from edgepilot.cloud_trainer.split.data import train_validation
    from edgepilot.cloud_trainer.split.model import CodecConfig
    from edgepilot.cloud_trainer.split import train as T
    from edgepilot.export.split_model import export_bundle

    try:
        lams = [float(v) for v in lambdas.split(",") if v.strip()]
    except ValueError:
        usage_error(f"--lambdas must be comma-separated numbers, got {lambdas!r}")
    if not lams or any(v < 0 for v in lams):
        usage_error("--lambdas needs at least one value, all >= 0")
    try:
        tr, va = train_validation(limit=limit)
    except FileNotFoundError as err:
        usage_error(str(err))
    tc = T.TrainConfig(epochs=epochs, codec_epochs=codec_epochs, threads=threads)
    codec = CodecConfig(split_point=split_point, latent_channels=latent_channels)
    with _progress() as bar:
        task = bar.add_task("base CNN", total=1)

        def progress(stage, step, total, metrics):
            if stage.endswith("-epoch"):
                bar.console.log(f"{stage} {step}/{total} " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                                         for k, v in metrics.items()}))
            else:
                bar.update(task, description=stage, completed=step, total=total)

        if base:
            base_model, base_metrics = T.load_base(base)
        else:
            base_model, base_metrics = T.train_base(tr, va, tc=tc, progress=progress)
            T.save_base(base_model, base_metrics, out / "base.pt")
        points = []
        bar.console.log("head features of the training split (frozen head, computed once)")
        features = T.head_features(base_model, tr, codec.split_point, tc.flip_augment)
        for lam in lams:
            model, metrics = T.train_codec(base_model, tr, va, lam, codec, tc, progress, features)
            ckpt = T.save_codec(model, metrics, out / f"codec_lambda_{lam:g}.pt")
            bdir = export_bundle(model, base_model, out / "bundles" / f"lambda_{lam:g}",
                                 training={"lambda": lam, **{k: v for k, v in metrics.items() if k != "history"},
                                           "base_val_accuracy": base_metrics["val_accuracy"]})
            points.append({**{k: v for k, v in metrics.items() if k != "history"}, "checkpoint": str(ckpt), "bundle": str(bdir)})
    chosen = T.choose_operating_point(points, base_metrics["val_accuracy"], max_drop)
    summary = {"base_val_accuracy": base_metrics["val_accuracy"], "points": points, "chosen": chosen,
               "train_images": len(tr), "validation_images": len(va)}
    T.write_json(summary, out / "sweep.json")
    if install:
        from edgepilot.edge_agent.split.bundle import DEFAULT_BUNDLE

        if DEFAULT_BUNDLE.exists():
            shutil.rmtree(DEFAULT_BUNDLE)
        shutil.copytree(chosen["bundle"], DEFAULT_BUNDLE)
        summary["installed"] = str(DEFAULT_BUNDLE)
    typer.echo(json.dumps(summary, indent=2))


@split_app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="Codec checkpoint (codec_lambda_*.pt)."),
    base: Path = typer.Option(..., help="Base CNN checkpoint (base.pt) for the full model."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write."),
    model_id: str = typer.Option("fmnist-cnn", help="Model id in the manifest."),
    version: str = typer.Option("1", "--model-version", help="Model version in the manifest."),
) -> None:
    """Export a trained codec checkpoint to a split bundle (head / tail / full ONNX + integer CDF tables)."""
    from edgepilot.cloud_trainer.split import train as T
    from edgepilot.export.split_model import export_bundle

    try:
        model, metrics = T.load_codec(checkpoint)
        base_model, base_metrics = T.load_base(base)
    except (FileNotFoundError, ValueError) as err:
        usage_error(str(err))
    training = {**{k: v for k, v in metrics.items() if k != "history"}, "base_val_accuracy": base_metrics["val_accuracy"]}
    path = export_bundle(model, base_model, out, model_id, version, training)
    typer.echo(json.dumps(json.loads((path / "manifest.json").read_text()), indent=2))


@split_app.command("bench")
def bench_cmd(
    bundle: Optional[Path] = typer.Option(None, help="Operating-point bundle; default: the shipped one."),
    sweep: Optional[Path] = typer.Option(None, help="Directory of further bundles (one per lambda) for the rate-accuracy curve."),
    images: int = typer.Option(10000, min=1, max=10000, help="Official test images used (final figures only)."),
    qualities: str = typer.Option("5,10,20,30,50,75,90", help="JPEG / WebP qualities."),
    rates: str = typer.Option("2,5,10,20,50,100,200,500", help="Uplink rates for Fig. 3, KB/s."),
    latency_images: int = typer.Option(10, min=1, help="Requests per method and rate in Fig. 3."),
    rtt_ms: float = typer.Option(5.0, min=0.0, help="Emulated round-trip time, ms."),
    device_slowdown: float = typer.Option(1.0, min=0.01, help="Multiply device compute by this (emulate a slower board)."),
    no_latency: bool = typer.Option(False, "--no-latency", help="Skip Fig. 3."),
    out: Path = typer.Option(Path("results/split"), "--out", "-o", help="Output directory (bench.json, rate_accuracy.png, latency_vs_rate.png)."),
) -> None:
    """Print the paper's Table II for our model (payload bytes and accuracy per method) and Fig. 3
    (latency vs link rate, link emulated, through a real gRPC server on 127.0.0.1); write JSON and PNG."""
    from rich.console import Console
    from rich.table import Table

    from edgepilot.cloud_trainer.split import bench as B
    from edgepilot.cloud_trainer.split.data import load_official
    from edgepilot.edge_agent.server.app import ServerConfig
    from edgepilot.edge_agent.server.split_service import build_split_server
    from edgepilot.edge_agent.split.bundle import SplitBundle

    try:
        qs = [int(q) for q in qualities.split(",") if q.strip()]
        rs = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        usage_error("--qualities and --rates must be comma-separated numbers")
    if any(not 1 <= q <= 100 for q in qs):
        usage_error("--qualities must be in 1..100")
    if any(r <= 0 for r in rs):
        usage_error("--rates must be > 0")
    main = _load_bundle(bundle)
    sweep_bundles = []
    if sweep:
        if not sweep.is_dir():
            usage_error(f"--sweep: {sweep} is not a directory")
        sweep_bundles = [SplitBundle.load(p.parent) for p in sorted(sweep.glob("*/manifest.json"))]
    try:
        test = load_official("test")
    except FileNotFoundError as err:
        usage_error(str(err))
    imgs, labels = test.images[:images], test.labels[:images]
    results = {"bundle": str(main.root), "model_id": main.model_id, "version": main.version,
               "split_point": main.split_point, "latent_shape": list(main.latent_shape)}
    with _progress() as bar:
        task = bar.add_task("Table II", total=1)

        def progress(stage, done, total):
            bar.update(task, description=stage, completed=done, total=total)

        t0 = time.monotonic()
        results["payload"] = B.payload_table(main, sweep_bundles, imgs, labels, qs, progress)
        results["payload"]["seconds"] = time.monotonic() - t0
        if not no_latency:
            server = build_split_server([main], ServerConfig(port=0))
            port = server.start()
            try:
                cfg = B.LatencyConfig(rates_kbps=tuple(rs), rtt_seconds=rtt_ms / 1000, images=latency_images,
                                      device_slowdown=device_slowdown)
                results["latency"] = B.latency_vs_rate(main, f"127.0.0.1:{port}", imgs, cfg, progress)
            finally:
                server.stop(1.0)
    out.mkdir(parents=True, exist_ok=True)
    results["plots"] = [str(p) for p in B.plot(results, out)]
    B.write_json(results, out / "bench.json")

    console = Console(stderr=True)
    table = Table(title=f"Table II — Fashion-MNIST, {results['payload']['images']} test images")
    for col in ("Method", "Cost (bytes/image)", "Accuracy"):
        table.add_column(col)
    for row in results["payload"]["table_ii"]:
        table.add_row(row["method"], f"{row['payload_bytes']:.1f}", f"{100 * row['accuracy']:.2f}%")
    console.print(table)
    p = results["payload"]
    console.print(f"payload ratio PNG / co-inference: {p['payload_ratio_png_over_co_inference']:.1f}x; "
                  f"accuracy drop vs PNG: {p['accuracy_drop_points_vs_png']:.2f} points; "
                  f"curve above JPEG at every rate: {p['curve_above_jpeg_at_every_rate']}")
    if "latency" in results:
        lt = Table(title="Fig. 3 — median end-to-end latency (ms) vs uplink rate (KB/s)")
        lt.add_column("Method")
        for r in rs:
            lt.add_column(f"{r:g}")
        for name, pts in results["latency"]["methods"].items():
            lt.add_row(name, *[f"{1000 * q['latency_seconds_median']:.1f}" for q in pts])
        console.print(lt)
    typer.echo(json.dumps({"json": str(out / "bench.json"), "plots": results["plots"],
                           "table_ii": p["table_ii"],
                           "payload_ratio_png_over_co_inference": p["payload_ratio_png_over_co_inference"],
                           "accuracy_drop_points_vs_png": p["accuracy_drop_points_vs_png"],
                           "curve_above_jpeg_at_every_rate": p["curve_above_jpeg_at_every_rate"]}))


@split_app.command("infer")
def infer_cmd(
    server: str = typer.Option("127.0.0.1:50051", "--server", help="Edge server address, HOST:PORT (edgepilot serve)."),
    bundle: Optional[Path] = typer.Option(None, help="Bundle (head + codec); default: the shipped one."),
    images: int = typer.Option(10, min=1, help="How many validation images to send."),
    tls_ca: Optional[Path] = typer.Option(None, help="CA certificate of the server (enables TLS)."),
    tls_cert: Optional[Path] = typer.Option(None, help="Client certificate (mTLS)."),
    tls_key: Optional[Path] = typer.Option(None, help="Client key (mTLS)."),
) -> None:
    """Device side: run the head, entropy-code the latent, call the edge server; print JSON per request.
    Exit 1 when the server refuses or does not answer a request."""
    import grpc

    from edgepilot.cloud_trainer.split.data import train_validation
    from edgepilot.edge_agent.server.tls import channel_credentials
    from edgepilot.edge_agent.split.client import SplitClient

    b = _load_bundle(bundle)
    creds = channel_credentials(tls_ca, tls_cert, tls_key) if tls_ca else None
    _, va = train_validation()
    correct = 0
    with SplitClient(server, b, creds) as client:
        for i in range(min(images, len(va))):
            try:
                r = client.infer(va.images[i])
            except grpc.RpcError as err:
                failed(f"request {i} to {server}: {err.code().name}: {err.details()}")
            correct += int(r.predicted_class == va.labels[i])
            typer.echo(json.dumps({"request_id": r.request_id, "predicted_class": r.predicted_class,
                                   "label": int(va.labels[i]), "payload_bytes": r.payload_bytes,
                                   "round_trip_seconds": r.round_trip_seconds, "server_total_seconds": r.server.total_seconds,
                                   "batch_size": r.server.batch_size}))
    typer.echo(json.dumps({"images": images, "accuracy": correct / images}))


@split_app.command("dev-certs")
def dev_certs_cmd(out: Path = typer.Option(..., "--out", "-o", help="Directory for ca.pem, server.pem/key, client.pem/key.")) -> None:
    """Write a short-lived development PKI (CA, server cert for 127.0.0.1/localhost, client cert) for TLS / mTLS."""
    from edgepilot.edge_agent.server.tls import write_dev_pki

    typer.echo(json.dumps({k: str(v) for k, v in write_dev_pki(out).items()}, indent=2))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.add_typer(split_app, name="split")
