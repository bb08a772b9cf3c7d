"""Policy weights as versioned safetensors blobs: what the learner publishes and actors load.

safetensors is a flat header (JSON) plus raw tensor bytes: loading it never unpickles, so a
weights blob from the control plane cannot run code in an actor.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import NamedTuple

import torch
from safetensors.torch import load, save

VERSION_KEY = "graspfleet.version"


class Weights(NamedTuple):
    version: int
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]


def split_policy_tensors(
    tensors: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The encoder's and the policy's state dicts from a published set (``encoder.*``, ``policy.*``)."""
    encoder = {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}
    policy = {k.removeprefix("policy."): v for k, v in tensors.items() if k.startswith("policy.")}
    return encoder, policy


def serialize(tensors: Mapping[str, torch.Tensor], version: int, metadata: Mapping[str, str] | None = None) -> bytes:
    """A safetensors blob of ``tensors`` with the version (and string metadata) in its header."""
    if version < 0:
        raise ValueError(f"version: must be >= 0, got {version}")
    meta = {**(metadata or {}), VERSION_KEY: str(version)}
    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)


def read_metadata(blob: bytes) -> dict[str, str]:
    """The header metadata of a safetensors blob (checks the framing, never unpickles)."""
    if len(blob) < 8:
        raise ValueError("weights: blob too short for a safetensors header")
    (length,) = struct.unpack("<Q", blob[:8])
    if length > len(blob) - 8:
        raise ValueError(f"weights: header of {length} bytes exceeds the blob of {len(blob)}")
    header = json.loads(blob[8 : 8 + length])
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict):
        raise ValueError("weights: malformed metadata")
    return {str(k): str(v) for k, v in metadata.items()}


def deserialize(blob: bytes) -> Weights:
    """Tensors, version and metadata of a blob made by :func:`serialize`."""
    metadata = read_metadata(blob)
    if VERSION_KEY not in metadata:
        raise ValueError(f"weights: the blob has no {VERSION_KEY!r} metadata")
    return Weights(int(metadata[VERSION_KEY]), dict(load(blob)), metadata)
