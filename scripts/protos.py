"""Regenerate the committed Python stubs from ``proto/**/*.proto``.

``python scripts/protos.py`` (``make protos``) runs grpcio-tools' protoc with ``-I proto`` over every
``.proto`` file under ``proto/`` and writes ``*_pb2.py``, ``*_pb2_grpc.py`` and ``*.pyi``
into the package tree (``proto/edgepilot/v1/x.proto`` -> ``edgepilot/v1/x_pb2.py``), so
generated imports read ``from edgepilot.v1 import common_pb2``. The generated files are
committed; ``tests/test_proto_stubs.py`` fails when regenerating would change them.

The generator version is pinned in ``pyproject.toml`` (``grpcio-tools==1.70.0``): its stubs
are protobuf gencode 5.29 and need grpcio >= 1.70, so they import on Python 3.8's last
protobuf (5.29) and grpcio (1.70) as well as on protobuf 6 and 7 (a runtime newer than the
gencode is accepted; an older one is not).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Every .proto under ``proto_root``, sorted (paths relative to it)."""
    return sorted(p.relative_to(proto_root) for p in proto_root.rglob("*.proto"))


def generate(out_root: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc into ``out_root``; return the generated files relative to it."""
    from grpc_tools import protoc  # dev dependency, imported only when generating

    import grpc_tools

    files = proto_files(proto_root)
    if not files:
        raise SystemExit(f"no .proto files under {proto_root}")
    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    out_root.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--pyi_out={out_root}",
        *[str(f) for f in files],
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"protoc failed (exit {rc}): {' '.join(args)}")
    return sorted(p.relative_to(out_root) for p in out_root.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def committed_stubs(package_root: Path = REPO_ROOT) -> list[Path]:
    """Generated-looking files currently in the package tree for the proto packages."""
    found = []
    for rel in proto_files():
        pkg_dir = package_root / rel.parent
        found.extend(p.relative_to(package_root) for p in pkg_dir.glob("*") if p.name.endswith(GENERATED_SUFFIXES))
    return sorted(set(found))


def main(argv: list[str] | None = None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_root = Path(tmp)
        generated = generate(tmp_root)
        for rel in committed_stubs():  # drop stubs whose .proto is gone
            if rel not in generated:
                (REPO_ROOT / rel).unlink()
                print(f"removed stale {rel}")
        for rel in generated:
            dest = REPO_ROOT / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            init = dest.parent / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated protobuf / gRPC stubs (see scripts/protos.py)."""\n')
            shutil.copyfile(tmp_root / rel, dest)
            print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
