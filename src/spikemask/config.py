"""Typed configs: dataclasses <- YAML <- ``--set a.b=value``.

Every config in spikemask is a keyword-only dataclass. This module turns plain dicts (from YAML,
the command line, or a checkpoint) into those dataclasses and back, and refuses anything it does
not understand: an unknown key names the valid ones, a wrong type names the expected one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

__all__ = [
    "ConfigError",
    "Bounds",
    "bounded",
    "check_bounds",
    "from_dict",
    "to_dict",
    "load_yaml",
    "parse_overrides",
    "apply_overrides",
    "merge",
    "close_matches_hint",
]

C = TypeVar("C")


class ConfigError(ValueError):
    """A config value or key is invalid; the message says which and what is accepted."""


def close_matches_hint(name: str, valid: typing.Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` when ``name`` looks like a typo of a valid name, else ``""``."""
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The valid range of a numeric config field (``None``: no bound on that side)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def contains(self, v: float) -> bool:
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def describe(self) -> str:
        """``"> 0"``, ``"<= 1"``, ``"in [0, 1)"``; ``"finite"`` when there is no bound."""
        def num(v: float) -> str:
            return str(int(v)) if float(v).is_integer() else f"{v:g}"

        low, high = (self.ge, "[") if self.ge is not None else (self.gt, "("), \
            (self.le, "]") if self.le is not None else (self.lt, ")")
        if low[0] is not None and high[0] is not None:
            return f"in {low[1]}{num(low[0])}, {num(high[0])}{high[1]}"
        if low[0] is not None:
            return f"{'>=' if low[1] == '[' else '>'} {num(low[0])}"
        if high[0] is not None:
            return f"{'<=' if high[1] == ']' else '<'} {num(high[0])}"
        return "finite"


def bounded(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field whose numeric value :func:`check_bounds` keeps in range (None always passes)."""
    return dataclasses.field(default=default, metadata={"bounds": Bounds(ge=ge, gt=gt, le=le, lt=lt)})


def check_bounds(obj: Any, section: str) -> None:
    """Refuse any :func:`bounded` field of dataclass ``obj`` that is out of range or not finite.

    ``section`` is the dotted prefix the user writes (``optim``), so the message names the key as typed
    in a YAML file or a ``--set``: ``optim.lr must be > 0, got -1.0``.
    """
    for f in dataclasses.fields(obj):
        bounds = f.metadata.get("bounds")
        value = getattr(obj, f.name)
        if bounds is None or value is None:
            continue
        key = f"{section}.{f.name}" if section else f.name
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                wanted = "a finite number" if bounds == Bounds() else f"a number {bounds.describe()}"
                raise ConfigError(f"{key} must be {wanted}, got {value!r}")
            if not math.isfinite(v):
                raise ConfigError(f"{key} must be a finite number, got {value!r}")
            if not bounds.contains(v):
                raise ConfigError(f"{key} must be {bounds.describe()}, got {value!r}")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; convert where the conversion is lossless."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(repr(c) for c in choices)}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: tuple[float, float]
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected a list of {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_tp, val_tp = get_args(tp) or (Any, Any)

        def key(k: Any) -> Any:  # JSON and checkpoints store mapping keys as strings: "0" -> 0 for int keys
            if key_tp is int and isinstance(k, str) and k.lstrip("-").isdigit():
                return int(k)
            return _coerce(k, key_tp, where)

        return {key(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(number):  # no config value means anything as NaN or infinity
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[C], data: dict[str, Any] | None, *, where: str = "") -> C:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise :class:`ConfigError`.

    ``where`` is the dotted prefix used in messages (``model.mask``).
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        full = f"{where}.{key}" if where else key
        raise ConfigError(
            f"unknown config key {full!r}.{close_matches_hint(key, fields)} "
            f"Valid keys{' under ' + repr(where) if where else ''}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    except ConfigError:
        raise
    except ValueError as exc:  # a check in __post_init__; its message names the key
        raise ConfigError(str(exc)) from None


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict of builtins (tuples become lists), safe for YAML/JSON/``weights_only``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {str(path)!r} is a directory; give a YAML file (e.g. {str(path / 'config.yaml')!r})")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {exc.start}): "
                          "save it as UTF-8 YAML") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        one_line = " ".join(str(exc).split())
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {one_line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def parse_overrides(items: typing.Sequence[str]) -> list[tuple[list[str], Any]]:
    """``["a.b=1", "c=[x, y]"]`` -> ``[(["a", "b"], 1), (["c"], ["x", "y"])]`` (values parsed as YAML)."""
    parsed = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. model.mask.ratio=0.5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        parsed.append((key.strip().split("."), value))
    return parsed


def apply_overrides(data: dict[str, Any], items: typing.Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.path=value`` set (intermediate mappings created)."""
    out = merge({}, data)
    for path, value in parse_overrides(items):
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"cannot set {'.'.join(path)!r}: {part!r} holds a value, not a section")
            node = child
        node[path[-1]] = value
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of two plain dicts (``update`` wins); neither input is modified."""
    out = {k: (merge({}, v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif isinstance(value, dict):
            out[key] = merge({}, value)
        else:
            out[key] = value
    return out


def flatten(d: typing.Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (dotted keys, as ``--set`` writes them; empty sections kept)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, typing.Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
