"""The TOML configuration file, both ways: ``read_file`` (values by dotted path, every problem
reported) and ``to_toml`` (a whole configuration printed so that ``read_file`` reads it back).

The file's tables mirror ``LiveChatConfig``: ``edge_id`` at the top, then ``[edge]``, ``[chat]``,
``[chat.auth]``, ``[chat.limits]``, ``[chat.sampling]``, ``[chat.moderation]``, ``[chat.rooms]``,
``[backends]``, ``[ops]`` and ``[server]``. A key that is not a field is an error naming it (a typo
never falls back to a default silently); a value of the wrong type is an error naming key and type.
An optional field (``str | None``) is unset with ``""``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from livechat.config.model import LiveChatConfig
from livechat.config.schema import ConfigError, coerce, config_fields, config_sections, suggest

#: Printed redacted by ``to_toml`` (``livechat check-config``).
SECRET_PATHS: Final = frozenset({"chat.auth.hmac_secret"})
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


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
            problems.append(f"{where}: unknown key {path!r}{suggest(path)}")


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
