"""The embedded default's HS256 secret: made once per data directory, so ``livechat serve`` and
``livechat token`` agree with no configuration. A configured ``auth.hmac_secret`` always wins."""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from livechat.config import LiveChatConfig

SECRET_FILE = "hmac-secret"


def secret_path(config: LiveChatConfig) -> Path:
    return Path(config.backends.data_dir) / SECRET_FILE


def load_or_create(config: LiveChatConfig) -> str:
    path = secret_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def with_dev_secret(config: LiveChatConfig) -> LiveChatConfig:
    """``config`` with the data directory's secret filled in when HS256 has no secret configured."""
    auth = config.chat.auth
    if auth.hmac_secret is not None or "HS256" not in auth.algorithms:
        return config
    auth = dataclasses.replace(auth, hmac_secret=load_or_create(config))
    return dataclasses.replace(config, chat=dataclasses.replace(config.chat, auth=auth))
