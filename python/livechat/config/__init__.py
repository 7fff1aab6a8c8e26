"""Configuration: the dataclasses with every default, and how a process gets its values.

| module      | job                                                                              |
|-------------|----------------------------------------------------------------------------------|
| ``model``   | the frozen dataclasses, every default once (``DEFAULTS`` for use elsewhere)       |
| ``schema``  | the settable fields by dotted path, a value checked against a field's type        |
| ``files``   | the TOML file: read (every problem named), printed so that it reads back          |
| ``overrides`` | ``LIVECHAT_<SECTION>_<KEY>`` variables and ``--set PATH=VALUE``, read from text |
| ``resolve`` | the layers: defaults < file < environment < flags < ``--set``                     |
| ``check``   | what start-up would refuse, found without opening anything (``check-config``)    |

Every public name of these modules but ``check`` is importable from ``livechat.config`` itself;
``check`` asks the code that will use each section (the edge, the token verifier, the sampler),
which itself imports ``livechat.config``.
"""

from livechat.config.files import SECRET_PATHS, read_file, redact, to_toml, toml_value
from livechat.config.model import (
    DEFAULTS,
    AuthConfig,
    BackendConfig,
    ChatConfig,
    ClientConfig,
    EdgeConfig,
    EdgeMode,
    LimitsConfig,
    LiveChatConfig,
    LoadTestConfig,
    ModerationConfig,
    OpsConfig,
    RoomConfig,
    SamplingConfig,
    ServerConfig,
)
from livechat.config.overrides import parse_assignment, parse_text, parse_value, read_env
from livechat.config.resolve import CONFIG_ENV, Resolved, resolve
from livechat.config.schema import (
    ENV_PREFIX,
    ConfigError,
    FieldInfo,
    coerce,
    config_fields,
    config_sections,
    env_names,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULTS",
    "ENV_PREFIX",
    "SECRET_PATHS",
    "AuthConfig",
    "BackendConfig",
    "ChatConfig",
    "ClientConfig",
    "ConfigError",
    "EdgeConfig",
    "EdgeMode",
    "FieldInfo",
    "LimitsConfig",
    "LiveChatConfig",
    "LoadTestConfig",
    "ModerationConfig",
    "OpsConfig",
    "Resolved",
    "RoomConfig",
    "SamplingConfig",
    "ServerConfig",
    "coerce",
    "config_fields",
    "config_sections",
    "env_names",
    "parse_assignment",
    "parse_text",
    "parse_value",
    "read_env",
    "read_file",
    "redact",
    "resolve",
    "to_toml",
    "toml_value",
]
