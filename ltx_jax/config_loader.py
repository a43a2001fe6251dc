"""Raw nested dicts and YAML -> frozen, keyword-only dataclasses, with closest-key errors.

Generic over the schema: a section is a dataclass field whose type is a dataclass, a leaf is a
scalar, `Literal`, `Optional`/union, tuple, list or dict annotation. An unknown key or a value of
the wrong type is a `ConfigError` naming the dotted key and the closest valid one. Dotted
`key=value` overrides (`model.num_layers=4`, `optim.lr=3e-4`) apply on top of the file.

`variants` maps a dataclass to a table of named rows (`{DiTConfig: DIT_VARIANTS}`): for such a
class the row named by its `variant` field is applied first and explicit keys win over it. The
schema module (`ltx_jax.config`) passes its table; this module knows no schema.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import numbers
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

# Dataclass -> {variant name -> field values applied before the explicit keys}.
VariantTables = Mapping[type, Mapping[str, Mapping[str, Any]]]


class ConfigError(ValueError):
    """A config file or override does not fit the schema; the message names the dotted key."""


# ---------------------------------------------------------------------------------------------
# Loading: raw nested dicts -> frozen dataclasses.


def load(
    path_or_dict: str | os.PathLike | Mapping[str, Any],
    schema: type,
    overrides: Sequence[str] = (),
    variants: VariantTables | None = None,
) -> Any:
    """Reads a YAML file (or takes a dict), applies `key=value` overrides and validates it.

    Args:
      path_or_dict: a YAML file (read with `yaml.safe_load`) or an already parsed mapping.
      overrides: dotted `a.b.c=value` strings, applied in order after the file; each value is
        parsed with `yaml.safe_load` (`3e-4`, `true`, `[1, 2]`, `null`), except that a field typed
        `str` keeps the text as written (`name=001` is the string '001').
      schema: the top-level dataclass.
      variants: dataclass -> named rows of field values (see the module docstring).

    Returns:
      An instance of `schema`, with nested dataclasses for its sections.

    Raises:
      ConfigError: an unknown key (naming the closest valid one), a value of the wrong type, an
        unknown variant or a malformed override.
    """
    if isinstance(path_or_dict, Mapping):
        source, raw = (
            "config",
            config_to_dict(path_or_dict),
        )  # a copy: never mutate the caller's dict
    else:
        source = os.fspath(path_or_dict)
        with open(source, encoding="utf-8") as f:
            try:
                raw = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ConfigError(f"{source}: not valid YAML: {e}") from None
        if raw is None:  # an empty file is an all-defaults config
            raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    try:
        for item in overrides:
            keys, value = _override(schema, item, variants)
            _set_nested(raw, keys, value, item)
        return _build(schema, raw, "", variants)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if source != "config" else str(e)) from None


def build(cls: type, raw: Mapping[str, Any], variants: VariantTables | None = None) -> Any:
    """A type-checked `cls` instance from a raw mapping (its variant row first, if it has one)."""
    return _build(cls, raw, "", variants)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`['a.b=1', 'a.c=x']` -> `{'a': {'b': 1, 'c': 'x'}}`, values parsed with `yaml.safe_load`.

    Schema-free: to validate against a schema (and keep `str` fields as written), pass the list to
    `load(..., overrides=items)` instead.
    """
    out: dict[str, Any] = {}
    for item in items:
        keys, text = _split_override(item)
        _set_nested(out, keys, _yaml_value(text, item), item)
    return out


def _split_override(item: str) -> tuple[list[str], str]:
    key, eq, text = item.partition("=")
    keys = key.strip().split(".")
    if not eq or not all(k.strip() for k in keys):
        raise ConfigError(
            f"override {item!r} is not of the form dotted.key=value (e.g. model.num_layers=4)"
        )
    return [k.strip() for k in keys], text.strip()


def _yaml_value(text: str, item: str) -> Any:
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from None


def _override(schema: type, item: str, variants: VariantTables | None) -> tuple[list[str], Any]:
    """Walks the schema along an override's keys; returns the keys and the value, type-checked."""
    keys, text = _split_override(item)
    value = _yaml_value(text, item)
    tp, path = schema, ""
    for key in keys:
        cls = _dataclass_of(tp)
        if cls is None:
            raise ConfigError(f"override {item!r}: {path!r} is a value, not a section with keys")
        fields = _fields(cls)
        path = f"{path}.{key}" if path else key
        if key not in fields:
            raise ConfigError(f"override {item!r}: {_unknown_key_message(path, key, fields)}")
        tp = fields[key]
    # Check here, naming the override, rather than after merging. A field that takes str takes the
    # text as written when the YAML value does not fit (`name=001`, `run_dir=2024`).
    for candidate in (value, text) if str in _scalar_types(tp) else (value,):
        try:
            _coerce(tp, candidate, path, variants)
            return keys, candidate
        except ConfigError as e:
            error = e
    raise ConfigError(f"override {item!r}: {error}") from None


def _set_nested(raw: dict, keys: list[str], value: Any, item: str) -> None:
    node = raw
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            where = ".".join(keys[: i + 1])
            raise ConfigError(
                f"override {item!r}: {where!r} holds {child!r}, not a section with keys"
            )
        node = child
    node[keys[-1]] = value


def _unknown_key_message(path: str, key: str, valid: Sequence[str]) -> str:
    prefix = path[: len(path) - len(key)]
    close = difflib.get_close_matches(key, list(valid), n=1)
    if close:
        return f"unknown key {path!r}; did you mean {prefix + close[0]!r}?"
    return f"unknown key {path!r}; valid keys here: {sorted(valid)}"


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    """Init field name -> resolved type annotation (string annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _build(cls: type, raw: Any, path: str, variants: VariantTables | None) -> Any:
    """A `cls` instance from a raw mapping, applying the variant row first where `cls` has one."""
    if raw is None:  # `model:` with nothing under it
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"bad value for {path or 'the top level'!r}: "
            f"expected a mapping of {cls.__name__} keys, got {raw!r}"
        )
    fields = _fields(cls)
    for key in raw:
        if not isinstance(key, str) or key not in fields:
            full = f"{path}.{key}" if path else str(key)
            raise ConfigError(_unknown_key_message(full, str(key), fields))
    table = (variants or {}).get(cls)
    if table is not None:
        vpath = f"{path}.variant" if path else "variant"
        variant = raw.get("variant", _default(cls, "variant"))
        if not isinstance(variant, str) or variant not in table:
            close = difflib.get_close_matches(str(variant), list(table), n=3, cutoff=0.3)
            raise ConfigError(
                f"unknown variant {variant!r} for {vpath!r}; "
                f"closest: {close}; valid: {sorted(table)}"
            )
        raw = {**table[variant], **raw, "variant": variant}
    kwargs = {}
    for name, tp in fields.items():
        key_path = f"{path}.{name}" if path else name
        if name in raw:
            kwargs[name] = _coerce(tp, raw[name], key_path, variants)
        elif _default(cls, name) is dataclasses.MISSING:
            raise ConfigError(f"missing required key {key_path!r} ({_type_name(tp)})")
    return cls(**kwargs)


def _default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _union_args(tp: Any) -> tuple | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass a section field holds (also through Optional), else None."""
    for arm in _union_args(tp) or (tp,):
        if isinstance(arm, type) and dataclasses.is_dataclass(arm):
            return arm
    return None


def _scalar_types(tp: Any) -> set:
    """Leaf types accepted by `tp` (Literal counts as its values' types)."""
    if typing.get_origin(tp) is Literal:
        return {type(a) for a in typing.get_args(tp)}
    args = _union_args(tp)
    if args is not None:
        return set().union(*(_scalar_types(a) for a in args))
    return {tp} if isinstance(tp, type) else set()


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _type_error(tp: Any, value: Any, path: str) -> ConfigError:
    return ConfigError(
        f"bad value for {path!r}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})"
    )


def _coerce(tp: Any, value: Any, path: str, variants: VariantTables | None) -> Any:
    """Checks `value` against the annotation `tp`; converts int->float and list->tuple."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    cls = _dataclass_of(tp)
    if cls is not None and _union_args(tp) is None:
        return value if isinstance(value, cls) else _build(cls, value, path, variants)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # Optional[X]: X's own, more precise error
            return _coerce(arms[0], value, path, variants)
        for arm in arms:
            try:
                return _coerce(arm, value, path, variants)
            except ConfigError:
                pass
        raise _type_error(tp, value, path)
    if origin is Literal:
        for choice in args:
            if type(value) is type(choice) and value == choice:
                return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=3, cutoff=0.3)
        raise ConfigError(
            f"bad value for {path!r}: {value!r} is not one of {list(args)}; closest: {close}"
        )
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(tp, value, path)
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _type_error(tp, value, path)
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `3e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _type_error(tp, value, path)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _type_error(tp, value, path)
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            raise _type_error(tp, value, path)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(
                    f"bad value for {path!r}: expected {_type_name(tp)}, got {value!r}"
                )
            item_types = args
        else:
            item_types = (args[0] if args else Any,) * len(value)
        items = tuple(
            _coerce(t, v, f"{path}[{i}]", variants)
            for i, (t, v) in enumerate(zip(item_types, value))
        )
        return list(items) if origin is list else items
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            raise _type_error(tp, value, path)
        kt, vt = args or (Any, Any)
        return {
            _coerce(kt, k, path, variants): _coerce(vt, v, f"{path}.{k}", variants)
            for k, v in value.items()
        }
    raise TypeError(f"config schema: unsupported annotation {tp!r} at {path!r}")


# ---------------------------------------------------------------------------------------------
# Writing.


def config_to_dict(cfg: Any) -> Any:
    """Plain nested dicts/lists/scalars of a config dataclass (tuples become lists), field order."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {
            f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init
        }
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def dump_config(cfg: Any, path: str | os.PathLike) -> None:
    """Writes the resolved config as YAML, atomically; loading it back gives an equal `cfg`."""
    path = os.fspath(path)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("# Resolved config written by ltx_jax.config.dump_config.\n" + text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
