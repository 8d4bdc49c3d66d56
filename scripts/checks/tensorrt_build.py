"""Build a real TensorRT engine from the reference DTAC actor; run it on a machine with TensorRT.

TensorRT cannot be installed on the machines edgepilot is developed on, so this check is
not part of `make test` (which would only skip it). On a Jetson or an RTX edge server:

    python scripts/checks/tensorrt_build.py --profile rtx4090-edge-server --precision fp16

It exports the reference checkpoint to ONNX, builds the engine with the TensorRT Python
API (the same `EnginePlan` the trtexec commands come from) and prints the engine's size.
Exit status 0: engine built; 2: TensorRT is not installed here."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="rtx4090-edge-server", help="hardware profile name")
    parser.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)

    from edgepilot.export.tensorrt import TensorRTUnavailable, build_engine, plan_engine, tensorrt_available
    from edgepilot.hardware.profiles import load_profile

    version = tensorrt_available()
    if version is None:
        print("TensorRT is not installed here (import tensorrt failed); nothing was built", file=sys.stderr)
        return 2
    from edgepilot.cloud_trainer.checkpoint import load_actor
    from edgepilot.export.onnx_export import export_actor
    from tests.helpers.export_fixtures import reference_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        actor, _ = load_actor(reference_checkpoint(tmp_path))
        onnx_path = export_actor(actor, "dtac", tmp_path / f"dtac_{args.precision}.onnx", args.opset)
        plan = plan_engine("dtac", load_profile(args.profile), args.precision, onnx_path, tmp_path / "dtac.plan")
        try:
            engine = build_engine(plan)
        except TensorRTUnavailable as err:
            print(err, file=sys.stderr)
            return 2
        print(f"TensorRT {version}: built {engine.name} for {args.profile} ({args.precision}), "
              f"{engine.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
