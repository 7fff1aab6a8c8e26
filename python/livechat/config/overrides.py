"""Configuration values written as text: ``LIVECHAT_<SECTION>_<KEY>`` environment variables and
``--set PATH=VALUE`` flags, each read as the type its ``LiveChatConfig`` field declares.

int, float, str, bool (``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``),
``none`` for an optional field, a ``Literal`` member, and JSON for tuples (lists become tuples,
nested too; element types are checked). A value that does not fit is a ``ValueError`` naming where
it came from, so a typo never starts a server with a value the operator did not mean.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from livechat.config.schema import (
    ENV_PREFIX,
    ConfigError,
    FieldInfo,
    coerce,
    config_fields,
    config_sections,
    env_names,
    optional,
    suggest,
)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _check_tuple(value: Any, hint: Any, where: str) -> None:
    """Element types of a JSON-read tuple against ``tuple[X, ...]`` / ``tuple[X, Y]``."""
    if not isinstance(value, tuple):
        raise ValueError(f"{where}: expected a JSON list, got {value!r}")
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
        expected = [args[0]] * len(value)
    elif args:
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
        expected = list(args)
    else:
        return
    for item, item_hint in zip(value, expected, strict=True):
        if typing.get_origin(item_hint) is tuple:
            _check_tuple(item, item_hint, where)
        elif item_hint is float and isinstance(item, int) and not isinstance(item, bool):
            continue
        elif isinstance(item_hint, type) and not isinstance(item, item_hint):
            raise ValueError(f"{where}: {item!r} is not a {item_hint.__name__}")


def parse_value(text: str, hint: Any, where: str) -> Any:
    """``text`` read as a value of type ``hint`` (a resolved annotation)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if text.lower() == "none" and len(options) < len(typing.get_args(hint)):
            return None
        errors = []
        for option in options:
            try:
                return parse_value(text, option, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin is typing.Literal:
        if text not in typing.get_args(hint):
            raise ValueError(f"{where}: {text!r} is not one of {typing.get_args(hint)}")
        return text
    if origin is tuple or hint is tuple:
        try:
            value = _tupled(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc}): {text!r}") from None
        _check_tuple(value, hint, where)
        return value
    if hint is bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{where}: {text!r} is not a boolean")
    if hint in (int, float, str):
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"{where}: {text!r} is not a {hint.__name__}") from None
    raise ValueError(f"{where}: fields of type {hint!r} cannot be set from the command line")


def parse_text(text: str, info: FieldInfo, where: str) -> Any:
    """A value written as text (environment, ``--set``), read by ``parse_value``."""
    if text == "" and optional(info.hint):
        return None
    return coerce(parse_value(text, info.hint, where), info.hint, where)


def _env_section_prefixes() -> tuple[str, ...]:
    return tuple(ENV_PREFIX + s.upper() + "_" for s in config_sections() if "." not in s)


def read_env(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """Dotted path -> (value, variable name) for every ``LIVECHAT_*`` variable naming a field."""
    names = env_names()
    fields = config_fields()
    sections = _env_section_prefixes()
    out: dict[str, tuple[Any, str]] = {}
    problems: list[str] = []
    for name, text in sorted(env.items()):
        path = names.get(name)
        if path is None:
            if name.startswith(sections):
                guess = difflib.get_close_matches(name, list(names), n=1, cutoff=0.75)
                hint = f" (did you mean {guess[0]}?)" if guess else ""
                problems.append(f"environment {name}: names no configuration field{hint}")
            continue
        try:
            out[path] = (parse_text(text, fields[path], f"environment {name}"), name)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(problems)
    return out


def parse_assignment(assignment: str) -> tuple[str, Any]:
    """``PATH=VALUE`` (``--set``) -> (path, value); ValueError names what is wrong."""
    path, sep, text = assignment.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ValueError(f"--set takes PATH=VALUE, got {assignment!r}")
    info = config_fields().get(path)
    if info is None:
        raise ValueError(f"--set {path}: no such configuration field{suggest(path)}")
    return path, parse_text(text, info, f"--set {path}")
