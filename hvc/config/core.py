"""YAML files and ``key=value`` overrides -> typed dataclasses (why not OmegaConf: docs/design.md). A schema is a
(nested) dataclass whose fields carry the defaults (``configs/`` files list only changes); a bad key, type or override
is a :class:`ConfigError` naming the key, and the schema's ``validate()`` (value ranges) runs once loaded."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import sys
import types
import typing
from typing import Any, Callable, Iterable, Literal, TypeVar, Union, get_args, get_origin

import yaml

from hvc.errors import UsageError

T = TypeVar("T")
_UNIONS = (Union, getattr(types, "UnionType", Union))  # Optional[X] and X | None, the one union schemas use
# scalar field type -> (what the error says it expected, the Python types it accepts)
_SCALARS = {bool: ("true or false", bool), int: ("an integer", int), float: ("a number", (int, float)),
            str: ("a string", str)}
# Config files are a few kB; a larger one is refused before parsing, and so are YAML aliases
# (no config needs them, and an alias chain makes a file of a few lines expand exponentially).
MAX_CONFIG_BYTES = 1 << 20


class ConfigError(UsageError, ValueError):
    """A configuration file or override is invalid."""


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader without aliases: what a config file cannot do, it cannot make us do."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"line {event.start_mark.line + 1}: YAML aliases (*name) are not allowed in configs")
        return super().compose_node(parent, index)


def parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed with the alias-free safe loader; errors as one-line ConfigErrors naming ``where``."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({' '.join(str(exc).split())})") from None


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it converted where lossless (``bool`` is a real boolean;
    ``float`` takes ints and "1e-3")."""
    origin = get_origin(tp)
    if origin in _UNIONS:
        if value is None and type(None) in get_args(tp):
            return None
        return _coerce(value, next(a for a in get_args(tp) if a is not type(None)), where)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        fixed = origin is tuple and args[-1] is not Ellipsis  # tuple[X, Y]: a type per item; list[X]: one for all
        if fixed and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        items = [_coerce(v, args[i] if fixed else args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _from_dict(tp, value, where)
    if tp in _SCALARS:
        expected, kinds = _SCALARS[tp]
        if isinstance(value, kinds) and (tp is bool or not isinstance(value, bool)):  # True is no number
            return float(value) if tp is float else value
        if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                return float(value)
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    raise ConfigError(f"{where}: unsupported field type {getattr(tp, '__name__', None) or tp}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _from_dict(cls: type[T], data: dict, where: str) -> T:
    types_ = _field_types(cls)
    prefix = f"{where}." if where else ""
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(prefix + str(k) for k in unknown)}; "
                          f"valid keys{' of ' + where if where else ''}: {', '.join(types_)}")
    return cls(**{name: _coerce(value, types_[name], prefix + name) for name, value in data.items()})


def check_fields(cfg: Any, key: Callable[[str], str] = str, path: str = "") -> None:
    """Type-check every field of the dataclass instance ``cfg`` as :func:`load_config` checks files, for configs
    built in code (``impl="fast"``); an error names the field at dotted ``path`` as ``key(path)`` (``prop.impl``)."""
    for name, tp in _field_types(type(cfg)).items():
        dotted = f"{path}.{name}" if path else name
        value = getattr(cfg, name)
        if dataclasses.is_dataclass(tp) and isinstance(value, tp):
            check_fields(value, key, dotted)
        else:
            _coerce(value, tp, key(dotted))


def to_dict(cfg: Any) -> Any:
    """Plain nested dict of a config (tuples become lists), e.g. for YAML/JSON dumps."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(x) for x in cfg]
    return cfg


def _override_value(text: str, tp: Any, key: str) -> Any:
    """The right-hand side of ``key=value``: as typed for string fields and choices (``run.amp=off``), else YAML."""
    if get_origin(tp) in _UNIONS:
        if text.strip().lower() in ("null", "none", "~"):
            return None
        tp = next(a for a in get_args(tp) if a is not type(None))
    if tp is str or get_origin(tp) is Literal:
        return text
    return parse_yaml(text, f"override {key}={text}")


def _apply_overrides(data: dict, cls: type, overrides: Iterable[str]) -> dict:
    """A copy of the raw dict ``data`` with the ``a.b=value`` strings merged in."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, eq, text = item.partition("=")
        if not eq:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key = key.strip()
        *sections, last = key.split(".")
        tp, node = cls, data
        for i, part in enumerate([*sections, last]):  # the field's type, and the dict that holds its value
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"override {key}: {'.'.join(sections[:i])} is not a section")
            types_ = _field_types(tp)
            if part not in types_:
                section = ".".join(sections[:i]) or "the top level"
                raise ConfigError(f"unknown key {key}; valid keys of {section}: {', '.join(types_)}")
            tp = types_[part]
            if i < len(sections):
                node[part] = node[part] if isinstance(node.get(part), dict) else {}
                node = node[part]
        node[last] = _override_value(text, tp, key)
    return data


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> T:
    """Build ``cls`` from its defaults, then the YAML file at ``path``, then ``overrides``, and validate it."""
    data: dict = {}
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        if os.path.getsize(path) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {os.path.getsize(path)} bytes, more than a config file holds "
                              f"(at most {MAX_CONFIG_BYTES})")
        with open(path) as f:
            loaded = parse_yaml(f.read(), str(path))
        data = {} if loaded is None else loaded
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
    data = _apply_overrides(data, cls, overrides)
    try:
        cfg = _from_dict(cls, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None
    if callable(getattr(cfg, "validate", None)):
        cfg.validate()  # value ranges, before any caller writes anything
    return cfg


def dump_yaml(cfg: Any) -> str:
    """YAML text of a resolved config (loadable again by :func:`load_config`)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
