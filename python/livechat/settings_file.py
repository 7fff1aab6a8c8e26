"""The configuration a process runs with: defaults < TOML file < environment < command-line flags.

- **Defaults** are the dataclasses of ``livechat.config``, nothing else.
- **File**: one TOML document (``--config PATH``, or the path in ``LIVECHAT_CONFIG``). Its tables
  mirror ``LiveChatConfig``: ``edge_id`` at the top, then ``[edge]``, ``[chat]``, ``[chat.auth]``,
  ``[chat.limits]``, ``[chat.sampling]``, ``[chat.moderation]``, ``[chat.rooms]``, ``[backends]``
  and ``[ops]``. A key that is not a field is an error naming it (a typo never falls back to a
  default silently); a value of the wrong type is an error naming key and type. An optional
  field (``str | None``) is unset with ``""``.
- **Environment**: ``LIVECHAT_<SECTION>_<KEY>``, the dotted path upper-cased with ``_`` for
  ``.``: ``LIVECHAT_EDGE_PORT``, ``LIVECHAT_CHAT_AUTH_HMAC_SECRET``, ``LIVECHAT_EDGE_ID``. Values
  are read like ``--set`` values (``livechat.overrides.parse_value``: JSON lists, ``true``/``false``,
  ``none``); ``""`` unsets an optional field. A ``LIVECHAT_EDGE_*``, ``LIVECHAT_CHAT_*``,
  ``LIVECHAT_BACKENDS_*`` or ``LIVECHAT_OPS_*`` variable that names no field is an error.
- **Flags**: the command's options (``--port``, ``--data-dir``…) and ``--set PATH=VALUE``.

Every problem found is reported at once (``ConfigError.problems``), each naming where it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from livechat.config import LiveChatConfig
from livechat.overrides import parse_value

ENV_PREFIX: Final = "LIVECHAT_"
#: Names the config file when ``--config`` is not given.
CONFIG_ENV: Final = "LIVECHAT_CONFIG"
#: Printed redacted by ``to_toml`` (``livechat check-config``).
SECRET_PATHS: Final = frozenset({"chat.auth.hmac_secret"})
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


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


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` (as TOML or ``parse_value`` produce it) checked against ``hint`` and converted to the
    dataclass's representation (tuples for lists, float for integral numbers); ValueError names
    ``where`` and the expected type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if _optional(hint) and (value is None or value == ""):
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


def parse_text(text: str, info: FieldInfo, where: str) -> Any:
    """A value written as text (environment, ``--set``), read like ``livechat.overrides`` does."""
    if text == "" and _optional(info.hint):
        return None
    return coerce(parse_value(text, info.hint, where), info.hint, where)


# --- layers -----------------------------------------------------------------------------------


def _suggest(path: str) -> str:
    fields = config_fields()
    leaf = path.rpartition(".")[2]
    elsewhere = [p for p in fields if p.rpartition(".")[2] == leaf]
    if elsewhere:
        return f" (did you mean {' or '.join(elsewhere)}?)"
    close = difflib.get_close_matches(path, list(fields) + list(config_sections()), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _walk(
    table: Mapping[str, Any], prefix: str, where: str, out: dict[str, Any], problems: list[str]
) -> None:
    fields = config_fields()
    sections = config_sections()
    for key, value in table.items():
        path = prefix + key
        if path in sections:
            if isinstance(value, dict):
                _walk(value, path + ".", where, out, problems)
            else:
                problems.append(f"{where}: {path} must be a table ([{path}]), got {value!r}")
        elif path in fields:
            try:
                out[path] = coerce(value, fields[path].hint, f"{where}: {path}")
            except ValueError as exc:
                problems.append(str(exc))
        else:
            problems.append(f"{where}: unknown key {path!r}{_suggest(path)}")


def read_file(path: str | Path) -> dict[str, Any]:
    """The values a TOML file sets, by dotted path. ConfigError lists every problem in it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"config file {path}: cannot read it: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"config file {path}: not UTF-8"]) from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path}: not valid TOML: {exc}"]) from None
    out: dict[str, Any] = {}
    problems: list[str] = []
    _walk(table, "", f"config file {path}", out, problems)
    if problems:
        raise ConfigError(problems)
    return out


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
        raise ValueError(f"--set {path}: no such configuration field{_suggest(path)}")
    return path, parse_text(text, info, f"--set {path}")


# --- resolution -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """The configuration and, for every field not left at its default, where its value came from
    (``config file PATH``, ``environment NAME``, ``flag --port``, ``--set``)."""

    config: LiveChatConfig
    sources: dict[str, str]
    file: Path | None


def _build(cls: type, prefix: str, values: Mapping[str, Any]) -> Any:
    sections = config_sections()
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        if path in sections:
            kwargs[f.name] = _build(sections[path], path + ".", values)
        elif path in values:
            kwargs[f.name] = values[path]
    return cls(**kwargs)


def resolve(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, tuple[Any, str]] | None = None,
    assignments: Sequence[str] = (),
    fixed: Mapping[str, Any] | None = None,
) -> Resolved:
    """Layer defaults < ``config_file`` (else ``$LIVECHAT_CONFIG``) < ``env`` (``os.environ`` when
    None) < ``flags`` (path -> (value, flag name)) < ``assignments`` (``--set``).

    ``fixed`` holds values the command itself decides (``edge.mode``): a file or environment value
    that disagrees is an error, not silently replaced.
    """
    env = os.environ if env is None else env
    if config_file is None and env.get(CONFIG_ENV):
        config_file = env[CONFIG_ENV]
    fields = config_fields()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    path = Path(config_file) if config_file is not None else None
    if path is not None:
        try:
            for key, value in read_file(path).items():
                values[key] = value
                sources[key] = f"config file {path}"
        except ConfigError as exc:
            problems.extend(exc.problems)
    try:
        for key, (value, name) in read_env(env).items():
            values[key] = value
            sources[key] = f"environment {name}"
    except ConfigError as exc:
        problems.extend(exc.problems)
    for key, (value, flag) in (flags or {}).items():
        try:
            values[key] = coerce(value, fields[key].hint, flag)
            sources[key] = f"flag {flag}"
        except ValueError as exc:
            problems.append(str(exc))
    for assignment in assignments:
        try:
            key, value = parse_assignment(assignment)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        values[key] = value
        sources[key] = "--set"
    for key, value in (fixed or {}).items():
        if key in values and values[key] != value:
            problems.append(
                f"{sources[key]}: {key} = {values[key]!r}, but this command runs with {key} = {value!r}"
            )
        values[key] = value
    if problems:
        raise ConfigError(problems)
    config: LiveChatConfig = _build(LiveChatConfig, "", values)
    return Resolved(config, sources, path)


# --- printing ---------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (the inverse of what ``read_file`` accepts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes; DEL must be escaped in TOML too.
        return json.dumps(value).replace("\x7f", "\\u007f")
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def redact(path: str, value: Any) -> str | None:
    """What to print instead of a secret, or None when ``value`` may be printed as it is."""
    if path in SECRET_PATHS and value is not None:
        return f"(set, {len(str(value))} characters, not shown)"
    if isinstance(value, str) and _URL_PASSWORD.search(value):
        return toml_value(_URL_PASSWORD.sub(r"\1***@", value)) + "  (password hidden)"
    return None


def to_toml(config: LiveChatConfig, sources: Mapping[str, str] | None = None) -> str:
    """Every field of ``config`` as a TOML document that ``read_file`` reads back, with the source of
    each value not at its default as a comment. Secrets and URL passwords are commented out."""
    sources = sources or {}
    lines: list[str] = []

    def emit(obj: Any, prefix: str) -> None:
        nested: list[tuple[str, Any]] = []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            path = prefix + f.name
            if dataclasses.is_dataclass(value):
                nested.append((path, value))
                continue
            note = f"  # {sources[path]}" if path in sources else ""
            hidden = redact(path, value)
            if hidden is not None:
                lines.append(f"# {f.name} = {hidden}{note}")
            elif value is None:
                lines.append(f"# {f.name} is unset{note}")
            else:
                lines.append(f"{f.name} = {toml_value(value)}{note}")
        for path, section in nested:
            lines.append("")
            lines.append(f"[{path}]")
            emit(section, path + ".")

    emit(config, "")
    return "\n".join(lines) + "\n"
