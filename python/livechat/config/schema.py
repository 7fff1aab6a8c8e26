"""The settable fields of ``LiveChatConfig`` by dotted path, and the check of a value against a field's type.

Everything here is derived from the dataclasses of ``livechat.config.model``: a field added there is
at once a TOML key, a ``LIVECHAT_*`` variable and a ``--set`` path, with no table to update.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from livechat.config.model import LiveChatConfig

#: ``LIVECHAT_`` + the dotted path upper-cased with ``_`` for ``.`` names a field's variable.
ENV_PREFIX: Final = "LIVECHAT_"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One settable field: ``path`` is dotted from ``LiveChatConfig`` (``chat.limits.max_text_chars``)."""

    path: str
    hint: Any
    default: Any
    env: str


def _section_fields(cls: type, prefix: str) -> Iterator[tuple[str, Any, Any, bool]]:
    hints = typing.get_type_hints(cls)
    instance = cls()
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        path = prefix + f.name
        is_section = dataclasses.is_dataclass(hint)
        yield path, hint, getattr(instance, f.name), is_section
        if is_section:
            yield from _section_fields(hint, path + ".")


@functools.cache
def _tables() -> tuple[dict[str, FieldInfo], dict[str, type]]:
    fields: dict[str, FieldInfo] = {}
    sections: dict[str, type] = {}
    for path, hint, default, is_section in _section_fields(LiveChatConfig, ""):
        if is_section:
            sections[path] = hint
        else:
            env = ENV_PREFIX + path.replace(".", "_").upper()
            fields[path] = FieldInfo(path, hint, default, env)
    return fields, sections


def config_fields() -> dict[str, FieldInfo]:
    """Every settable field by dotted path, in declaration order."""
    return _tables()[0]


def config_sections() -> dict[str, type]:
    """Every table (``edge``, ``chat.auth``…) and its dataclass."""
    return _tables()[1]


def env_names() -> dict[str, str]:
    """Environment variable -> dotted path."""
    return {info.env: info.path for info in config_fields().values()}


# --- values -----------------------------------------------------------------------------------


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return "a list"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` (as TOML or ``parse_value`` produce it) checked against ``hint`` and converted to the
    dataclass's representation (tuples for lists, float for integral numbers); ValueError names
    ``where`` and the expected type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if optional(hint) and (value is None or value == ""):
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        for option in options:
            try:
                return coerce(value, option, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: expected {_type_name(hint)}, got {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ValueError(f"{where}: expected {_type_name(hint)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected a list of {len(args)} items, got {value!r}")
        return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise ValueError(f"{where}: fields of type {hint!r} cannot be configured")
    raise ValueError(f"{where}: expected {_type_name(hint)}, got {value!r}")


def suggest(path: str) -> str:
    fields = config_fields()
    leaf = path.rpartition(".")[2]
    elsewhere = [p for p in fields if p.rpartition(".")[2] == leaf]
    if elsewhere:
        return f" (did you mean {' or '.join(elsewhere)}?)"
    close = difflib.get_close_matches(path, list(fields) + list(config_sections()), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""
