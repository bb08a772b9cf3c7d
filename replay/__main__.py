"""The replay service's own entry point: ``python -m replay serve`` runs one shard.

It knows tables by their :class:`~replay.signature.Signature` only (``--signature``: a JSON or YAML
file listing columns), so any producer of trajectories can run it; ``graspfleet replay serve`` is
the same command with the grasp cell's signature and a training config's shard settings filled in.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from replay.config import ShardConfig
from replay.signature import Signature

MIB = 1024 * 1024
DEFAULTS = ShardConfig()


def load_signature(path: Path) -> Signature:
    """A signature from a JSON/YAML file: a list of columns (name, dtype, shape, observation), or a
    mapping whose ``columns`` is that list. Raises ``ValueError`` naming what was wrong."""
    if not path.is_file():
        raise ValueError(f"--signature: {path} is not a file")
    data = yaml.safe_load(path.read_text())
    columns = data.get("columns") if isinstance(data, dict) else data
    if not isinstance(columns, list):
        raise ValueError(f"{path}: expected a list of columns (name, dtype, shape, observation)")
    try:
        return Signature.from_mapping(columns)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def serve_parser() -> argparse.ArgumentParser:
    """The options of ``serve``; their defaults are :class:`ShardConfig`'s."""
    p = argparse.ArgumentParser(
        prog="python -m replay serve", description="Serve one replay shard until SIGINT/SIGTERM."
    )
    p.add_argument("--port", type=int, default=50051, help="gRPC port (0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind")
    p.add_argument("--signature", type=Path, help="JSON/YAML file of the table's columns")
    p.add_argument("--capacity", type=int, default=DEFAULTS.capacity, help="steps held before the oldest go")
    p.add_argument("--sampler", default=DEFAULTS.sampler, choices=("uniform", "prioritized"))
    p.add_argument("--priority-exponent", type=float, default=DEFAULTS.priority_exponent, help="α of P(i) ∝ p_i^α")
    p.add_argument("--importance-exponent", type=float, default=DEFAULTS.importance_exponent, help="β of the weights")
    p.add_argument("--min-size", type=int, default=DEFAULTS.min_size_to_sample, help="steps before sampling starts")
    p.add_argument("--samples-per-insert", type=float, default=DEFAULTS.samples_per_insert, help="0: no ratio")
    p.add_argument("--error-buffer", type=float, default=DEFAULTS.error_buffer, help="slack of the ratio")
    p.add_argument("--checkpoint-dir", type=Path, help="where checkpoints go; restored at start")
    p.add_argument("--checkpoint-interval", type=float, default=DEFAULTS.checkpoint_interval, help="seconds")
    p.add_argument("--metrics-port", type=int, help="port of the Prometheus /metrics endpoint")
    p.add_argument("--max-message-mb", type=int, default=DEFAULTS.max_message_bytes // MIB, help="largest message")
    p.add_argument("--max-chunk-mb", type=int, default=DEFAULTS.max_chunk_bytes // MIB, help="largest chunk")
    return p


def serve_main(argv: Sequence[str], signature: Signature | None = None) -> int:
    """Parse ``serve``'s options and run the shard; ``signature`` stands in for ``--signature``.
    Returns the exit status (2 with a message on standard error for bad options)."""
    parser = serve_parser()
    args = parser.parse_args(list(argv))
    try:
        if signature is None:
            if args.signature is None:
                parser.error("--signature is required")
            signature = load_signature(args.signature)
        config = ShardConfig(
            capacity=args.capacity,
            sampler=args.sampler,
            priority_exponent=args.priority_exponent,
            importance_exponent=args.importance_exponent,
            min_size_to_sample=args.min_size,
            samples_per_insert=args.samples_per_insert,
            error_buffer=args.error_buffer,
            checkpoint_interval=args.checkpoint_interval,
            max_message_bytes=args.max_message_mb * MIB,
            max_chunk_bytes=args.max_chunk_mb * MIB,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from replay.server import serve  # grpc and the generated code, only once the options are good

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        serve(signature, config, args.port, args.host, args.checkpoint_dir, args.metrics_port)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "serve":
        print("usage: python -m replay serve [options]  (python -m replay serve --help)", file=sys.stderr)
        return 2
    return serve_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
