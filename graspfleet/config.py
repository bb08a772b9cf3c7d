"""Typed configuration: strict construction from mappings, YAML files and CLI overrides.

Every component has one frozen dataclass config validated at construction. This module
turns plain data (YAML, ``--set key=value`` overrides) into those dataclasses and refuses
anything it does not understand: an unknown key, a value of the wrong type, or an empty
range raises :class:`ConfigError` naming the dotted path of the offending field.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import math
import re
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

T = TypeVar("T")
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
"""A decimal number, scientific notation included (what a float key accepts when YAML left it a string)."""


class ConfigError(ValueError):
    """A configuration value is unknown, malformed or out of range; the message names it."""


@dataclasses.dataclass(frozen=True)
class Range:
    """A closed interval ``[low, high]`` of a physical quantity, sampled uniformly.

    ``low == high`` is a fixed value; ``low > high`` is an empty range and is refused.
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"range {name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"range {name} must be finite, got {value!r}")
        if self.low > self.high:
            raise ConfigError(f"empty range: low={self.low} > high={self.high}")

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low

    def contains(self, value: float | np.ndarray) -> bool:
        """Whether every element of ``value`` lies in ``[low, high]``."""
        arr = np.asarray(value)
        return bool(np.all((arr >= self.low) & (arr <= self.high)))

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...] | None = None) -> Any:
        """Draw uniformly from the range (a float, or an array of ``size``)."""
        if self.low == self.high:
            return self.low if size is None else np.full(size, self.low)
        return rng.uniform(self.low, self.high, size)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Convert plain data ``value`` to the annotated type ``tp`` or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if tp is Range and isinstance(value, Sequence) and not isinstance(value, str):
            if len(value) != 2:
                raise ConfigError(f"{path}: a range is [low, high], got {list(value)!r}")
            value = {"low": value[0], "high": value[1]}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_mapping(tp, value, path)
    if origin in (tuple, Sequence) or tp is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item_tp = args[0] if args else Any
        return tuple(_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        key_tp, val_tp = args if args else (Any, Any)
        return {_convert(k, key_tp, f"{path}.{k}"): _convert(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        # YAML 1.1 reads a mantissa without a dot (1e-4) as a string: take it as the number it spells
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported config type {_type_name(tp)}")


def from_mapping(cls: type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and wrong types.

    Fields missing from ``data`` keep their defaults. Errors from the dataclass's own
    validation are re-raised with the dotted ``path`` prepended. A dataclass may name keys it no
    longer has in a ``MOVED_KEYS`` class attribute (old key → new dotted path): such a key is
    refused with its new path.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{path}." if path else ""
    moved: Mapping[str, str] = getattr(cls, "MOVED_KEYS", {})
    for key, value in data.items():
        # a moved key may share its old name with a section now (``actors`` → ``actors.count``)
        is_section = key in fields and dataclasses.is_dataclass(hints[key]) and hints[key] is not Range
        if key in moved and (key not in fields or (is_section and not isinstance(value, Mapping))):
            raise ConfigError(f"config key {prefix}{key} has moved: it is {prefix}{moved[key]} now")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]} (known keys of {cls.__name__}: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _convert(value, hints[name], f"{prefix}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if path and not str(exc).startswith(path):
            raise ConfigError(f"{path}: {exc}") from None
        raise


def to_mapping(obj: Any) -> Any:
    """Plain-data form of a config dataclass (ranges as ``[low, high]``), YAML-serializable."""
    if isinstance(obj, Range):
        return [obj.low, obj.high]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    return key.strip().split("."), yaml.safe_load(raw)


def refuse_owned_overrides(overrides: Sequence[str], owned: Mapping[str, str]) -> None:
    """Refuse any ``key.path=value`` override of a key in ``owned`` (key → what to do instead),
    or of a section holding one: a program that sets those keys itself would otherwise drop the
    override without a word."""
    for text in overrides:
        key = ".".join(parse_override(text)[0])
        for owned_key, instead in owned.items():
            if owned_key == key or owned_key.startswith(key + "."):
                raise ConfigError(f"--set {key}: this program sets {owned_key} itself; {instead}")


def load_owning(cls: type[T], overrides: Sequence[str], owned: Mapping[str, tuple[Any, str]]) -> T:
    """``cls`` with ``key.path=value`` ``overrides`` applied, then each dotted key of ``owned``
    (key → its value and what to use instead of overriding it) set to its value; an override of
    an owned key is refused with that advice (:func:`refuse_owned_overrides`)."""
    refuse_owned_overrides(overrides, {key: instead for key, (_, instead) in owned.items()})
    return replace_keys(load(cls, None, overrides), {key: value for key, (value, _) in owned.items()})


def merge_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to nested plain data (returns a new dict)."""
    merged: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    for text in overrides:
        keys, value = parse_override(text)
        node = merged
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {key} is not a section")
            node = child
        node[keys[-1]] = value
    return merged


def replace_keys(obj: T, changes: Mapping[str, Any]) -> T:
    """Config dataclass ``obj`` with the values of dotted keys changed (``{"learning.batch_size":
    64}``), validated as :func:`from_mapping` validates a file: a key it does not have is refused."""
    data = to_mapping(obj)
    for key, value in changes.items():
        *sections, leaf = key.split(".")
        node = data
        for section in sections:
            if not isinstance(node.get(section), dict):
                raise ConfigError(f"{key}: {section} is not a section of {type(obj).__name__}")
            node = node[section]
        node[leaf] = to_mapping(value)
    return from_mapping(type(obj), data)


def load(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from an optional YAML file, then apply ``key.path=value`` overrides; an error
    that the file alone has is prefixed with its path."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded
    try:
        return from_mapping(cls, merge_overrides(data, overrides))
    except ConfigError:
        if path is None:
            raise
        try:  # is the file itself at fault (then its error names it), or an override?
            from_mapping(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        raise  # an override's error


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of dataclass ``cls`` (a string literal right after
    a field's annotation), by field name; fields without one are left out."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for field, following in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[field.target.id] = " ".join(following.value.value.split())
    return docs


def describe(obj: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Every leaf key of config dataclass ``obj`` as ``(dotted key, value, docstring)``, nested
    configs expanded: what ``--set key=value`` accepts, with what each key means."""
    rows: list[tuple[str, Any, str]] = []
    cls: type = type(obj)
    docs = field_docs(cls)
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, Range):
            rows += describe(value, f"{key}.")
        else:
            rows.append((key, to_mapping(value), docs.get(field.name, "")))
    return rows


def _comment(text: str, indent: str, width: int = 100) -> list[str]:
    wrapped = textwrap.wrap(text, max(40, width - len(indent) - 2), break_long_words=False, break_on_hyphens=False)
    return [f"{indent}# {line}" for line in wrapped]


def commented_yaml(obj: Any, indent: str = "") -> str:
    """Config dataclass ``obj`` as YAML that :func:`load` reads back to ``obj``, each section
    headed by its class docstring and each key by its field docstring, as comments: a config file
    that documents itself."""
    lines: list[str] = []
    cls: type = type(obj)
    docs = field_docs(cls)
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, Range):
            summary = (inspect.getdoc(type(value)) or "").split("\n\n")[0]
            lines += ["", *_comment(" ".join(summary.split()), indent), f"{indent}{field.name}:"]
            lines.append(commented_yaml(value, indent + "  ").rstrip("\n"))
            continue
        if field.name in docs:
            lines += _comment(docs[field.name], indent)
        flow = yaml.safe_dump(to_mapping(value), default_flow_style=True, width=10**6).strip()
        lines.append(f"{indent}{field.name}: {flow.removesuffix('...').strip()}")
    return "\n".join(lines).lstrip("\n") + "\n"
