"""``edgepilot export``, ``edgepilot keys generate``, ``edgepilot bundle sign|verify|inspect``,
``edgepilot profiles list``.

torch / onnx are imported inside ``export`` only: the bundle and profile commands run
on a device with the base install."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from edgepilot.cli.errors import failed, usage_error

keys_app = typer.Typer(help="Ed25519 signing keys for bundles.", no_args_is_help=True)
bundle_app = typer.Typer(help="Sign, verify and inspect policy bundles.", no_args_is_help=True)
profiles_app = typer.Typer(help="Hardware profiles (hardware/profiles/*.yaml).", no_args_is_help=True)


def export_cmd(
    checkpoint: Path = typer.Argument(..., help="TAC / DTAC checkpoint (edgepilot train tac|dtac)."),
    profile: str = typer.Option(..., "--profile", "-p", help="Hardware profile: jetson-nano, jetson-orin-nano, rtx4090-edge-server, laptop, or a YAML path."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Bundle file to write (default: <checkpoint stem>-<profile>.bundle beside the checkpoint)."),
    precisions: Optional[str] = typer.Option(None, "--precisions", help="Comma-separated subset of the profile's precisions (fp32, fp16, int8_dynamic, int8_static); default: all the profile supports."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Scenario for calibration / parity states (default: the checkpoint's own)."),
    states: int = typer.Option(10_000, "--states", min=100, help="Simulator states for the parity check."),
    calibration_states: int = typer.Option(2_000, "--calibration-states", min=100, help="Simulator states for INT8 static calibration."),
    min_agreement: float = typer.Option(0.99, "--min-agreement", min=0.0, max=1.0, help="Fail when a variant's offload or channel decisions agree with torch less than this."),
    on_parity_failure: str = typer.Option("fail", "--on-parity-failure", help="'fail' (no bundle, exit 1), 'drop' (leave failing quantized variants out) or 'warn' (keep them, marked failed; for measuring only)."),
    mixed_precision: bool = typer.Option(True, "--mixed-precision/--no-mixed-precision", help="INT8: keep the fewest Gemm layers in FP32 that reach --min-agreement on the calibration states."),
    signing_key: Optional[Path] = typer.Option(None, "--signing-key", help="Ed25519 private key (edgepilot keys generate) to sign the bundle with."),
    version: Optional[str] = typer.Option(None, "--model-version", help="Model version in the manifest (default: kind-<checkpoint sha256 prefix>)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the parity report JSON here."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulator states."),
) -> None:
    """Export a checkpoint's actor for a hardware profile: ONNX at the profile's opset,
    its precisions, parity against torch on simulator states, TensorRT engines (or the
    trtexec commands that build them), all in one (signed) bundle. Prints the parity
    report as JSON. Exit 1 when the parity gate fails (the report is still printed), 2 on
    bad input."""
    from edgepilot.export.onnx_export import ExportError
    from edgepilot.export.pipeline import ParityError, export_checkpoint
    from edgepilot.hardware.profiles import PRECISIONS, ProfileError, load_profile

    if not checkpoint.is_file():
        usage_error(f"checkpoint not found: {checkpoint}")
    try:
        hw = load_profile(profile)
    except ProfileError as err:
        usage_error(f"--profile: {err}")
    chosen = [p.strip() for p in precisions.split(",") if p.strip()] if precisions else None
    for p in chosen or ():
        if p not in PRECISIONS:
            usage_error(f"--precisions: unknown precision {p!r} (choose from {', '.join(PRECISIONS)})")
        if not hw.supports(p):
            usage_error(f"--precisions: hardware profile {hw.name} does not support {p} (it supports {', '.join(hw.precisions)})")
    if on_parity_failure not in ("fail", "drop", "warn"):
        usage_error(f"--on-parity-failure must be fail, drop or warn, got {on_parity_failure!r}")
    if signing_key is not None and not signing_key.is_file():
        usage_error(f"--signing-key: no such file: {signing_key}")
    out = out or checkpoint.with_name(f"{checkpoint.stem}-{Path(profile).stem}.bundle")

    def progress(msg: str) -> None:
        typer.echo(f"[export] {msg}", err=True)

    try:
        result = export_checkpoint(
            checkpoint, profile, out, precisions=chosen, scenario=scenario, parity_count=states,
            calibration_count=calibration_states, min_agreement=min_agreement, on_parity_failure=on_parity_failure,
            signing_key=signing_key, version=version, seed=seed, mixed_precision=mixed_precision, progress=progress,
        )
    except ParityError as err:
        if report is not None:
            report.write_text(json.dumps(err.report, indent=2))
        typer.echo(json.dumps(err.report, indent=2))
        failed(str(err))
    except ExportError as err:  # the model could not be exported for the profile
        failed(str(err))
    except (ValueError, FileNotFoundError) as err:  # an unreadable checkpoint or signing key (BundleError)
        usage_error(str(err))
    if report is not None:
        report.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps(result, indent=2))
    if not result["signed"]:
        progress(f"bundle is unsigned: sign it with `edgepilot bundle sign {out} --signing-key KEY`")


def keys_generate_cmd(
    out: Path = typer.Option(Path("keys"), "--out", "-o", help="Directory for NAME.key (private, mode 0600) and NAME.pub."),
    name: str = typer.Option("edgepilot", "--name", help="Key file base name."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing key files."),
) -> None:
    """Generate an Ed25519 key pair for signing bundles; prints its key id. Exit 2 when the
    files exist (nothing is overwritten without --force)."""
    from edgepilot.edge_agent.bundle import key_id, load_public_key
    from edgepilot.export.bundle import generate_keypair

    try:
        priv, pub = generate_keypair(out, name, overwrite=force)
    except FileExistsError as err:
        usage_error(str(err))
    typer.echo(json.dumps({"private_key": str(priv), "public_key": str(pub), "key_id": key_id(load_public_key(pub))}))


def bundle_sign_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file."),
    signing_key: Path = typer.Option(..., "--signing-key", help="Ed25519 private key (edgepilot keys generate)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the signed bundle here (default: in place)."),
) -> None:
    """Sign a bundle (after checking its files against its manifest); exit 2 when the
    bundle or the key cannot be used."""
    from edgepilot.edge_agent.bundle import BundleError
    from edgepilot.export.bundle import sign_bundle

    try:
        written, kid = sign_bundle(bundle, signing_key, out)
    except BundleError as err:
        usage_error(str(err))
    typer.echo(json.dumps({"bundle": str(written), "key_id": kid}))


def bundle_verify_cmd(
    bundle: Path = typer.Argument(..., help="Bundle file."),
    trusted_key: List[Path] = typer.Option(..., "--trusted-key", "-T", help="Trusted public key file, or directory of *.pub files (repeatable)."),
) -> None:
    """Verify signature, signer, file hashes and entry names; exit 1 when the bundle is
    refused, 2 when the bundle or a key file is missing."""
    from edgepilot.edge_agent.bundle import BundleError, verify_bundle

    if not bundle.is_file():
        usage_error(f"bundle not found: {bundle}")
    for k in trusted_key:
        if not k.exists():
            usage_error(f"--trusted-key: no such file or directory: {k}")
    try:
        m = verify_bundle(bundle, trusted_key)
    except BundleError as err:
        typer.echo(json.dumps({"bundle": str(bundle), "verified": False, "error": str(err)}))
        failed(str(err))
    typer.echo(json.dumps({"bundle": str(bundle), "verified": True, "key_id": m.key_id, "model": m.data["model"]["kind"],
                           "version": m.version, "target": m.target.get("name"), "files": len(m.files)}))


def bundle_inspect_cmd(bundle: Path = typer.Argument(..., help="Bundle file.")) -> None:
    """Print a bundle's manifest (not verified: use `bundle verify` for that)."""
    from edgepilot.edge_agent.bundle import BundleError, inspect_bundle

    try:
        m = inspect_bundle(bundle)
    except BundleError as err:
        usage_error(str(err))
    typer.echo(json.dumps({"signed_by": m.key_id, "verified": False, "manifest": m.data}, indent=2))


def profiles_list_cmd() -> None:
    """List hardware profiles with their opset, precisions and TensorRT version; also
    the profile detected for this machine."""
    from edgepilot.hardware.profiles import detect_local_profile, list_profiles, load_profile

    rows = []
    for name in list_profiles():
        p = load_profile(name)
        rows.append({"name": p.name, "opset": p.opset, "precisions": list(p.precisions), "preferred": p.preferred_precision,
                     "tensorrt": p.tensorrt_version, "description": p.description})
    typer.echo(json.dumps({"detected": detect_local_profile(), "profiles": rows}, indent=2))


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    keys_app.command("generate")(keys_generate_cmd)
    bundle_app.command("sign")(bundle_sign_cmd)
    bundle_app.command("verify")(bundle_verify_cmd)
    bundle_app.command("inspect")(bundle_inspect_cmd)
    profiles_app.command("list")(profiles_list_cmd)
    app.add_typer(keys_app, name="keys")
    app.add_typer(bundle_app, name="bundle")
    app.add_typer(profiles_app, name="profiles")
