"""Generates the replay service's Python protocol code from ``protos/`` (``python -m replay.codegen``).

The protocol's source of truth is ``protos/graspfleet/replay/v1/replay.proto`` (package
``graspfleet.replay.v1``). protoc names generated imports after the proto's package path; replay
owns its generated code under ``replay/v1/``, so the one import between the generated modules is
rewritten to that place. Nothing generated is committed; ``make protos`` and the images run this.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO = Path("graspfleet/replay/v1/replay.proto")
"""The proto, relative to the protos root."""
PROTO_PACKAGE = "graspfleet.replay.v1"
TARGET_PACKAGE = "replay.v1"
GENERATED = ("replay_pb2.py", "replay_pb2.pyi", "replay_pb2_grpc.py")


def generate(protos: Path, out: Path) -> list[Path]:
    """Generate the modules of ``protos/PROTO`` into ``out`` (the ``replay/v1`` folder); returns them."""
    from grpc_tools import protoc  # a build-time dependency, not needed to run the service

    source = protos / PROTO
    if not source.is_file():
        raise FileNotFoundError(f"{source}: the replay protocol is missing")
    with tempfile.TemporaryDirectory() as staging:
        args = ["protoc", f"-I{protos}", f"--python_out={staging}", f"--grpc_python_out={staging}"]
        if protoc.main([*args, f"--pyi_out={staging}", str(source)]) != 0:
            raise RuntimeError(f"protoc failed on {source}")
        generated = Path(staging) / PROTO.parent
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED:
            text = (generated / name).read_text()
            text = text.replace(f"from {PROTO_PACKAGE} import", f"from {TARGET_PACKAGE} import")
            target = out / name
            target.write_text(text)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(prog="python -m replay.codegen", description=__doc__.splitlines()[0])
    parser.add_argument("--protos", type=Path, default=here.parent / "protos", help="the protos root")
    parser.add_argument("--out", type=Path, default=here / "v1", help="where the modules go")
    args = parser.parse_args(argv)
    for path in generate(args.protos, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
