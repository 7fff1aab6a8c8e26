"""The configuration a process runs with: defaults < TOML file < environment < command-line flags.

- **Defaults** are the dataclasses of ``livechat.config.model``, nothing else.
- **File**: one TOML document (``--config PATH``, or the path in ``LIVECHAT_CONFIG``), read by
  ``livechat.config.files``.
- **Environment**: ``LIVECHAT_<SECTION>_<KEY>``, the dotted path upper-cased with ``_`` for
  ``.``: ``LIVECHAT_EDGE_PORT``, ``LIVECHAT_CHAT_AUTH_HMAC_SECRET``, ``LIVECHAT_EDGE_ID``. Values
  are read like ``--set`` values (``livechat.config.overrides``: JSON lists, ``true``/``false``,
  ``none``); ``""`` unsets an optional field. A ``LIVECHAT_EDGE_*``, ``LIVECHAT_CHAT_*``,
  ``LIVECHAT_BACKENDS_*`` or ``LIVECHAT_OPS_*`` variable that names no field is an error.
- **Flags**: the command's options (``--port``, ``--data-dir``…) and ``--set PATH=VALUE``.

Every problem found is reported at once (``ConfigError.problems``), each naming where it came from.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from livechat.config.files import read_file
from livechat.config.model import LiveChatConfig
from livechat.config.overrides import parse_assignment, read_env
from livechat.config.schema import ConfigError, coerce, config_fields, config_sections

#: Names the config file when ``--config`` is not given.
CONFIG_ENV: Final = "LIVECHAT_CONFIG"


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
