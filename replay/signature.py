"""A table's signature (named columns with dtype and per-step shape) and the tensor codec.

Everything here is pure: converting NumPy arrays to and from the protocol's ``Tensor``
(dtype + shape + raw little-endian bytes, never pickle) and validating a decoded chunk against
the signature, raising :class:`InvalidChunk` with the offending field named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np

from replay.v1 import replay_pb2 as pb

_DTYPES: Final[dict[int, np.dtype]] = {
    pb.ELEMENT_TYPE_FLOAT32: np.dtype("<f4"),
    pb.ELEMENT_TYPE_FLOAT64: np.dtype("<f8"),
    pb.ELEMENT_TYPE_FLOAT16: np.dtype("<f2"),
    pb.ELEMENT_TYPE_INT8: np.dtype("i1"),
    pb.ELEMENT_TYPE_INT16: np.dtype("<i2"),
    pb.ELEMENT_TYPE_INT32: np.dtype("<i4"),
    pb.ELEMENT_TYPE_INT64: np.dtype("<i8"),
    pb.ELEMENT_TYPE_UINT8: np.dtype("u1"),
    pb.ELEMENT_TYPE_UINT16: np.dtype("<u2"),
    pb.ELEMENT_TYPE_UINT32: np.dtype("<u4"),
    pb.ELEMENT_TYPE_UINT64: np.dtype("<u8"),
    pb.ELEMENT_TYPE_BOOL: np.dtype("?"),
}
_CODES: Final[dict[str, int]] = {dt.str.lstrip("<>|="): code for code, dt in _DTYPES.items()}

SUPPORTED_DTYPES: Final = tuple(dt.name for dt in _DTYPES.values())


class InvalidChunk(ValueError):
    """A chunk or tensor does not match the table; the message names the field."""


def dtype_code(dtype: np.dtype | str) -> int:
    """Protocol element type of a NumPy dtype."""
    dt = np.dtype(dtype)
    key = dt.newbyteorder("<").str.lstrip("<>|=") if dt.byteorder not in ("|", "=") else dt.str.lstrip("<>|=")
    try:
        return _CODES[key]
    except KeyError:
        raise InvalidChunk(f"dtype {dt} is not supported (supported: {', '.join(SUPPORTED_DTYPES)})") from None


def numpy_dtype(code: int, field: str = "dtype") -> np.dtype:
    """NumPy dtype (little-endian) of a protocol element type."""
    try:
        return _DTYPES[code]
    except KeyError:
        raise InvalidChunk(f"{field}: unknown element type {code}") from None


def encode(array: np.ndarray, out: pb.Tensor | None = None) -> pb.Tensor:
    """A ``Tensor`` of ``array`` (converted to little-endian C order)."""
    arr = np.asarray(array)
    code = dtype_code(arr.dtype)
    arr = np.ascontiguousarray(arr, dtype=_DTYPES[code])
    tensor = out if out is not None else pb.Tensor()
    tensor.dtype = code  # type: ignore[assignment]
    tensor.shape[:] = arr.shape
    tensor.data = arr.tobytes()
    return tensor


def decode(tensor: pb.Tensor, field: str = "tensor") -> np.ndarray:
    """A read-only array viewing a ``Tensor``'s bytes; a size mismatch raises InvalidChunk."""
    dtype = numpy_dtype(tensor.dtype, f"{field}.dtype")
    shape = tuple(int(s) for s in tensor.shape)
    if any(s < 0 for s in shape):
        raise InvalidChunk(f"{field}.shape: negative dimension in {shape}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise InvalidChunk(
            f"{field}.data: {len(tensor.data)} bytes, but shape {shape} of {dtype.name} needs {expected}"
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """One column: name, dtype, per-step shape, and whether it is part of the observation."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    observation: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.startswith("next_"):
            raise ValueError(f"column name {self.name!r}: must be an identifier not starting with 'next_'")
        dtype_code(self.dtype)
        if any(int(s) < 0 for s in self.shape):
            raise ValueError(f"column {self.name}: negative dimension in {self.shape}")

    @property
    def np_dtype(self) -> np.dtype:
        return numpy_dtype(dtype_code(self.dtype))

    @property
    def step_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.np_dtype.itemsize

    def to_proto(self) -> pb.ColumnSpec:
        spec = pb.ColumnSpec(name=self.name, shape=list(self.shape), observation=self.observation)
        spec.dtype = dtype_code(self.dtype)  # type: ignore[assignment]
        return spec

    @classmethod
    def from_proto(cls, spec: pb.ColumnSpec) -> ColumnSpec:
        return cls(spec.name, numpy_dtype(spec.dtype).name, tuple(int(s) for s in spec.shape), spec.observation)


class Signature:
    """The columns of a table, in order."""

    def __init__(self, columns: Iterable[ColumnSpec]) -> None:
        self.columns = tuple(columns)
        if not self.columns:
            raise ValueError("a signature needs at least one column")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names in {names}")
        self.by_name = {c.name: c for c in self.columns}
        self.observation_columns = tuple(c.name for c in self.columns if c.observation)

    @property
    def step_bytes(self) -> int:
        """Bytes of one step across all columns."""
        return sum(c.step_bytes for c in self.columns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and self.columns == other.columns

    def __hash__(self) -> int:
        return hash(self.columns)

    def to_mapping(self) -> list[dict[str, object]]:
        """Plain data (for JSON)."""
        return [dataclasses.asdict(c) | {"shape": list(c.shape)} for c in self.columns]

    @classmethod
    def from_mapping(cls, data: Iterable[Mapping[str, object]]) -> Signature:
        columns = []
        for entry in data:
            shape = entry.get("shape", ())
            if not isinstance(shape, list | tuple):
                raise ValueError(f"column {entry.get('name')!r}: shape must be a list")
            columns.append(
                ColumnSpec(
                    name=str(entry["name"]),
                    dtype=str(entry["dtype"]),
                    shape=tuple(int(s) for s in shape),
                    observation=bool(entry.get("observation", False)),
                )
            )
        return cls(columns)

    def validate(self, columns: Mapping[str, np.ndarray], field: str = "columns") -> int:
        """Check decoded chunk columns; returns the row count T or raises InvalidChunk."""
        unknown = sorted(set(columns) - set(self.by_name))
        if unknown:
            raise InvalidChunk(f"{field}: unknown column {unknown[0]!r} (signature: {', '.join(self.by_name)})")
        missing = [name for name in self.by_name if name not in columns]
        if missing:
            raise InvalidChunk(f"{field}: missing column {missing[0]!r}")
        rows: int | None = None
        first = ""
        for spec in self.columns:
            arr = columns[spec.name]
            where = f"{field}[{spec.name}]"
            if arr.dtype != spec.np_dtype:
                raise InvalidChunk(f"{where}.dtype: expected {spec.np_dtype.name}, got {arr.dtype.name}")
            if arr.ndim != len(spec.shape) + 1 or tuple(arr.shape[1:]) != spec.shape:
                raise InvalidChunk(f"{where}.shape: expected (T, {', '.join(map(str, spec.shape))}), got {arr.shape}")
            if rows is None:
                rows, first = arr.shape[0], spec.name
            elif arr.shape[0] != rows:
                raise InvalidChunk(f"{where}.shape: {arr.shape[0]} rows, but column {first!r} has {rows}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise InvalidChunk(f"{where}: contains NaN or Inf")
        assert rows is not None
        if rows == 0:
            raise InvalidChunk(f"{field}: a chunk needs at least one step")
        return rows
